"""User-facing errors.

A ``UserError`` is a mistake the user can fix (a missing folder, an unknown model
name, a bad option). The CLI prints its message and exits with status 2, never a
traceback. Anything else is a bug in mobile-compress and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, with a message that says how to fix it."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")
