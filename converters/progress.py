"""The converters' progress account: one numbered line per step on stderr, ``[2/6] exporting ONNX ...``."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, TextIO


class Progress:
    """Numbered step lines; ``step`` also times its step (``timings``, for the report).

    ``total`` is what the run plans; ``section`` keeps it true when a branch ends early or adds
    steps nobody planned (a fallback). ``stream``: stderr at the time of printing by default.
    """

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.enabled, self.stream, self.index = total, enabled, stream, 0
        self.timings: dict[str, float] = {}

    def line(self, text: str) -> None:
        """The next step's line."""
        self.index += 1
        if self.enabled:
            print(f"[{self.index}/{self.total}] {text}", file=self.stream or sys.stderr, flush=True)

    @contextmanager
    def step(self, key: str, text: str) -> Iterator[None]:
        """The next step, timed as ``timings[key]``."""
        self.line(f"{text} ...")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = time.perf_counter() - start
            if self.enabled:
                print(f"      {key} took {self.timings[key]:.1f} s", file=self.stream or sys.stderr, flush=True)

    @contextmanager
    def section(self, steps: int, planned: bool = True) -> Iterator[None]:
        """A run of up to ``steps`` steps (in ``total`` already unless ``planned`` is False); those it does
        not reach (a failure, an exception) leave the total."""
        if not planned:
            self.total += steps
        start = self.index
        try:
            yield
        finally:
            self.total -= steps - (self.index - start)


__all__ = ["Progress"]
