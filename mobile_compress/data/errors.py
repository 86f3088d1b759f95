"""Errors and warnings of the data layer.

``DataError`` is a ``UserError``: the CLI prints it without a traceback. Every
message names the file or folder, says what is wrong and how to fix it.
"""
from __future__ import annotations

from mobile_compress.errors import UserError

#: The layout every folder message repeats, so the fix is always on screen.
FOLDER_LAYOUT = (
    "expected an ImageFolder: <root>/<class>/<image>.jpg (one subfolder per class), "
    "optionally split as <root>/train/<class>/... and <root>/test/<class>/... (or val/)"
)


class DataError(UserError):
    """A dataset the user pointed at cannot be used as given."""


class DataWarning(UserWarning):
    """Something in the data was skipped or adjusted; training can go on."""
