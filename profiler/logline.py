"""The two lexical facts every benchmark_model reader shares: the level prefix and the number format."""
from __future__ import annotations

import re

# Integers, decimals and the scientific notation C++ streams switch to past 6 digits ("1.04176e+06").
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# benchmark_model logs through TFLITE_LOG, which prefixes the level since TF ~2.3; older builds print bare lines.
_LEVEL = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG): ?")


def strip_level(line: str) -> str:
    """The message of a log line without its ``INFO: `` style prefix or surrounding blanks."""
    return _LEVEL.sub("", line.strip(), count=1).strip()


def is_error(line: str) -> bool:
    return line.lstrip().startswith("ERROR:")
