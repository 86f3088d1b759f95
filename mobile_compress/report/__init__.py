"""Rendering results for people (terminal tables) and for programs (JSON)."""
from mobile_compress.report.table import Column, format_table
from mobile_compress.report.environment import Environment, environment
from mobile_compress.report.jsonio import write_json

__all__ = ["Column", "Environment", "environment", "format_table", "write_json"]
