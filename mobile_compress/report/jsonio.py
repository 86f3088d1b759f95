"""JSON output written atomically, so a killed run never leaves half a file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mobile_compress.report.atomic import atomic_open


def write_json(path: str | os.PathLike, data: Any) -> Path:
    with atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
    return Path(path)
