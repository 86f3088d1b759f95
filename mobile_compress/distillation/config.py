"""What to distil and how strongly: ``DistillConfig``, validated when it is made.

Layer pairs are written ``"student_module:teacher_module"`` with the modules' dotted names
(as in ``model.named_modules()``); left out, they are chosen per architecture (see ``layers.py``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

from mobile_compress.errors import UserError

LOSSES = ("logit", "hint", "at", "rkd")
#: Losses whose teacher outputs are small vectors per image, so they can be cached.
CACHEABLE = ("logit", "rkd")

LayerPair = tuple[str, str]


@dataclass
class DistillConfig:
    """Which losses (``kd``) and their weights.

    ``alpha`` shares the class loss between soft targets and labels:
    ``(1 - alpha) * CE(labels) + alpha * T^2 * KL`` (logit KD only). The feature terms are added:
    ``hint_weight * sum(MSE)``, ``at_weight / 2 * sum(AT)``, ``rkd_distance_weight * D + rkd_angle_weight * A``.
    ``cache_teacher`` keeps the teacher's logits (and RKD embeddings) of each training image after
    the first epoch; it needs un-augmented training inputs (see ``cache.py``).
    ``teacher_input_size`` resizes the batch for a teacher trained at another resolution.
    """

    kd: tuple[str, ...] = ("logit",)
    temperature: float = 4.0
    alpha: float = 0.9
    hint_weight: float = 1.0
    at_weight: float = 1000.0
    rkd_distance_weight: float = 25.0
    rkd_angle_weight: float = 50.0
    hint_layers: list[LayerPair] | None = None
    at_layers: list[LayerPair] | None = None
    rkd_layers: LayerPair | None = None
    cache_teacher: bool = False
    teacher_input_size: int | None = None
    where: str = field(default="distillation config", repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Normalise the values and raise a UserError naming the first bad field."""
        self.kd = parse_losses(self.kd, self.where)
        self.temperature = self._number("temperature", self.temperature, low_open=0.0, allowed="a number > 0")
        self.alpha = self._number("alpha", self.alpha, low=0.0, high=1.0, allowed="a number in [0, 1]")
        for name in ("hint_weight", "at_weight", "rkd_distance_weight", "rkd_angle_weight"):
            setattr(self, name, self._number(name, getattr(self, name), low=0.0, allowed="a number >= 0"))
        self.hint_layers = self._pairs("hint_layers", self.hint_layers)
        self.at_layers = self._pairs("at_layers", self.at_layers)
        if self.rkd_layers is not None:
            pair = parse_pair(self.rkd_layers)
            if pair is None:
                raise self._error("rkd_layers", self.rkd_layers, "one 'student_module:teacher_module' pair")
            self.rkd_layers = pair
        if not isinstance(self.cache_teacher, bool):
            raise self._error("cache_teacher", self.cache_teacher, "true or false")
        if self.teacher_input_size is not None:
            v = self.teacher_input_size
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise self._error("teacher_input_size", v, "an image side in pixels >= 1, or null")
        if self.cache_teacher and not set(self.kd) <= set(CACHEABLE):
            heavy = [k for k in self.kd if k not in CACHEABLE]
            raise UserError(f"{self.where}: cache_teacher is on with kd {', '.join(heavy)}, whose teacher feature "
                            "maps are too large to cache",
                            hint=f"cache only with kd among {', '.join(CACHEABLE)}, or turn cache_teacher off")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("where")
        d["kd"] = list(self.kd)
        for name in ("hint_layers", "at_layers"):
            if d[name] is not None:
                d[name] = [f"{s}:{t}" for s, t in d[name]]
        if d["rkd_layers"] is not None:
            d["rkd_layers"] = "{}:{}".format(*d["rkd_layers"])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "distillation config") -> "DistillConfig":
        """From a mapping (a recipe); unknown keys are an error naming them and ``where``."""
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: expected a mapping of field: value, got {type(data).__name__}")
        known = [f.name for f in fields(cls) if f.name != "where"]
        unknown = sorted(set(map(str, data)) - set(known))
        if unknown:
            raise UserError(f"{where}: unknown field(s) {', '.join(unknown)}", hint=f"allowed: {', '.join(known)}")
        return cls(**dict(data), where=where)

    # ------------------------------------------------------------------ helpers

    def _error(self, name: str, value: Any, allowed: str) -> UserError:
        return UserError(f"{self.where}: {name} = {value!r} is not valid; allowed: {allowed}")

    def _number(self, name: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: float | None = None, allowed: str = "a number") -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self._error(name, value, allowed)
        if (low is not None and value < low) or (high is not None and value > high) or \
                (low_open is not None and value <= low_open):
            raise self._error(name, value, allowed)
        return float(value)

    def _pairs(self, name: str, value: Any) -> list[LayerPair] | None:
        if value is None:
            return None
        items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, Sequence) or not items:
            raise self._error(name, value, "a list of 'student_module:teacher_module' pairs")
        pairs = []
        for item in items:
            pair = parse_pair(item)
            if pair is None:
                raise self._error(name, item, "'student_module:teacher_module' (dotted names from named_modules())")
            pairs.append(pair)
        return pairs


def parse_pair(item: Any) -> LayerPair | None:
    """``"features.13:layer3"`` or ``("features.13", "layer3")`` -> the pair; None when malformed."""
    if isinstance(item, str):
        parts = [p.strip() for p in item.split(":")]
    elif isinstance(item, (list, tuple)):
        parts = [p.strip() if isinstance(p, str) else "" for p in item]
    else:
        return None
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def parse_losses(value: Any, where: str = "distillation config") -> tuple[str, ...]:
    """``"logit,hint"`` or ``["logit", "hint"]`` -> a tuple in canonical order; unknown names are an error."""
    names = [v.strip().lower() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n for n in names):
        raise UserError(f"{where}: kd = {value!r} is not valid; allowed: a list of {', '.join(LOSSES)}",
                        hint="e.g. kd: [logit, at] (or --kd logit,at)")
    bad = [n for n in names if n not in LOSSES]
    if bad:
        raise UserError(f"{where}: kd names unknown loss(es) {', '.join(map(repr, bad))}",
                        hint=f"choose among {', '.join(LOSSES)}")
    return tuple(n for n in LOSSES if n in names)
