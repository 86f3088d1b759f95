"""Rendering results for people (terminal tables) and for programs (JSON, CSV), written atomically."""
from mobile_compress.report.numbers import format_bytes, format_field, format_fields, format_number, format_value
from mobile_compress.report.table import Column, format_table
from mobile_compress.report.environment import Environment, environment, package_versions
from mobile_compress.report.atomic import atomic_open, write_bytes, write_text
from mobile_compress.report.csvio import safe_cell, write_csv_rows
from mobile_compress.report.jsonio import write_json
from mobile_compress.report.terminal import printable
from mobile_compress.report.numbers import field_label

__all__ = ["atomic_open", "Column", "Environment", "environment", "field_label", "format_bytes", "format_field",
           "format_fields", "format_number", "format_table", "format_value", "package_versions", "printable", "safe_cell",
           "write_bytes", "write_csv_rows", "write_json", "write_text"]
