"""``--target METRIC=FRACTION``: how much of a model a compressor keeps, parsed in one place."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mobile_compress.errors import UserError


@dataclass(frozen=True)
class Target:
    """Keep ``fraction`` (in (0, 1]) of the whole model's ``metric`` (macs, params or latency)."""

    metric: str
    fraction: float

    def __str__(self) -> str:
        return f"{self.metric}={self.fraction:g}"


def parse_target(text: Any, metrics: tuple[str, ...], source: str = "--target") -> Target:
    """``"macs=0.5"`` -> Target("macs", 0.5); a UserError naming ``source`` says what is wrong and how to write it."""
    if isinstance(text, Target):
        text = str(text)
    metric, sep, value = str(text).partition("=")
    metric = metric.strip().lower()
    example = ", ".join(f"{m}=0.5" for m in metrics)
    hint = f"write METRIC=FRACTION_KEPT with METRIC one of {', '.join(metrics)}, e.g. {example} (0.5 keeps half)"
    if not sep or metric not in metrics:
        raise UserError(f"{source} {text!r}: unknown or missing metric (one of {', '.join(metrics)})", hint=hint)
    try:
        fraction = float(value)
    except ValueError:
        raise UserError(f"{source} {text!r}: {value.strip()!r} is not a number", hint=hint) from None
    if not math.isfinite(fraction) or not 0.0 < fraction <= 1.0:
        raise UserError(f"{source} {text!r}: the fraction kept must be in (0, 1], got {value.strip()}",
                        hint="0.5 keeps half; for '50% fewer' write 0.5, for '70% fewer' write 0.3")
    return Target(metric, fraction)
