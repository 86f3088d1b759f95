"""A cheap look at a .tflite before it travels to a phone: a corrupt file fails here, clearly."""
from __future__ import annotations

from pathlib import Path

# A TFLite flatbuffer carries the file identifier "TFL3" at bytes 4-8.
TFLITE_IDENTIFIER = b"TFL3"


def check_tflite(path: Path) -> str | None:
    """None if ``path`` looks like a TFLite model, else what is wrong with it."""
    if not path.is_file():
        return f"model file {path} does not exist"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        return (f"model file {path} is not a TFLite flatbuffer (no 'TFL3' identifier at byte 4): the file is "
                f"corrupt or not a .tflite; convert it again with `mobile-compress convert`")
    return None
