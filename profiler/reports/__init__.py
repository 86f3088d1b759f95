"""Views of a profile's RunRecords: terminal table, CSV and an HTML page with inline SVG plots."""
from profiler.reports.csv_report import write_csv
from profiler.reports.html_report import write_html
from profiler.reports.table import format_runs

__all__ = ["format_runs", "write_csv", "write_html"]
