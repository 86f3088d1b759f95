"""Views of a profile's RunRecords: terminal table, CSV and an HTML page with inline SVG plots."""
from profiler.reports.csv_report import write_csv
from profiler.reports.html_report import write_html
from profiler.reports.table import format_runs
from profiler.reports.html_report import bar_svg, environment_line, latency_svg, page_head
from profiler.reports.rows import flat, refused_note

__all__ = ["bar_svg", "environment_line", "flat", "format_runs", "latency_svg", "page_head", "refused_note",
           "write_csv", "write_html"]
