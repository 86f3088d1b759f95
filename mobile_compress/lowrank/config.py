"""What a factorisation is asked to do (``FactorizeConfig``), checked before any weight is touched.

Every message names the option as the user typed it (``--energy``, ``--target``, ...)
and as the Python field, since the same config serves the CLI and the API.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mobile_compress.counting import InputSize, normalize_input_size
from mobile_compress import targets
from mobile_compress.errors import UserError
from mobile_compress.targets import Target

TARGET_METRICS = ("macs", "params")
DEFAULT_MULTIPLE = 8


def parse_target(text: Any, source: str = "--target") -> Target:
    """``"macs=0.5"`` -> Target("macs", 0.5), with this compressor's metrics (TARGET_METRICS)."""
    return targets.parse_target(text, TARGET_METRICS, source)


@dataclass
class FactorizeConfig:
    """How to factorise a model.

    ``input_size``: the model's input (side or (C, H, W)), to count MACs per layer; the
    factorize job fills it in from the checkpoint.
    Exactly one of ``energy`` (per layer: keep this fraction of the squared singular
    values, per mode for Tucker-2) and ``target`` (``"macs=0.5"``: ranks allocated
    across layers until the whole model keeps that share) is given.
    ``multiple``: ranks are rounded up to a multiple of this (mobile kernels like 8).
    ``include`` / ``exclude``: fnmatch patterns on module names (``layer3.*``, ``fc``);
    no include means every eligible layer. ``hooi_iterations`` refine Tucker-2 after
    its HOSVD start.
    """

    input_size: InputSize | None = None
    energy: float | None = None
    target: Target | str | None = None
    multiple: int = DEFAULT_MULTIPLE
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    hooi_iterations: int = 2

    def __post_init__(self) -> None:
        self.include = _patterns(self.include)
        self.exclude = _patterns(self.exclude)

    def validate(self, need_input_size: bool = True) -> None:
        """Raise a UserError naming the first bad option and how to fix it.

        ``need_input_size=False`` checks the rest before the input size is known (from a checkpoint).
        """
        if self.input_size is None and need_input_size:
            raise UserError("input_size is not set: factorisation counts MACs per layer at the model's input size",
                            hint="pass input_size (e.g. 32, or (3, 224, 224)); the factorize command takes it "
                                 "from the checkpoint")
        try:
            if self.input_size is not None:
                normalize_input_size(self.input_size)
        except ValueError as err:
            raise UserError(f"input_size: {err}", hint="pass the model's input side (e.g. 32) or (C, H, W)") from None
        if (self.energy is None) == (self.target is None):
            raise UserError("give exactly one of --energy (energy) and --target (target)",
                            hint="e.g. --energy 0.9 (per-layer threshold) or --target macs=0.5 (whole model)")
        if self.energy is not None:
            e = self.energy
            if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or not 0.0 < e <= 1.0:
                raise UserError(f"--energy (energy) is {e!r}: it must be in (0, 1], the fraction of each layer's "
                                "squared singular values to keep", hint="typical values are 0.8 to 0.99")
            self.energy = float(e)
        if self.target is not None:
            self.target = parse_target(self.target)
        if isinstance(self.multiple, bool) or not isinstance(self.multiple, int) or self.multiple < 1:
            raise UserError(f"--multiple (multiple) is {self.multiple!r}: ranks are rounded up to a multiple "
                            "of this integer >= 1", hint="use 8 (the default) for mobile kernels, 1 for no rounding")
        if (isinstance(self.hooi_iterations, bool) or not isinstance(self.hooi_iterations, int)
                or self.hooi_iterations < 0):
            raise UserError(f"--hooi-iterations (hooi_iterations) is {self.hooi_iterations!r}: expected an "
                            "integer >= 0", hint="0 keeps the HOSVD start; 2 to 5 refine it")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = None if self.target is None else str(self.target)
        d["include"], d["exclude"] = list(self.include), list(self.exclude)
        return d


def _patterns(value: Any) -> tuple[str, ...]:
    """A pattern, a comma-separated string or a sequence of them -> a tuple of non-empty patterns."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(p.strip() for item in items for p in str(item).split(",") if p.strip())


