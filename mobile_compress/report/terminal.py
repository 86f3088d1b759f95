"""Text for the terminal that cannot drive it.

Error messages and tables carry values from files and devices (model names, paths, a
phone's output). A control character in one (ESC ``[31m``, a carriage return that
overwrites the line, a C1 CSI) would recolour or rewrite the user's terminal, so each is
shown as its escape (``\\x1b``) instead. Newlines and tabs are layout and stay.
"""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character except newline and tab shown as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
