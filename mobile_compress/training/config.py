"""Training settings, validated up front.

Every value is checked when the config is made, so a typo in a recipe or on the
command line fails before any data is read, with a message that names the field
and what it may be.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch

from mobile_compress.errors import UserError

OPTIMIZERS = ("sgd", "adamw")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """How to train: optimiser, schedule, budget and reproducibility settings.

    ``lr`` is the peak learning rate reached after ``warmup_epochs`` of linear
    warm-up; it then follows a per-step cosine down to ``min_lr``.
    ``precision='bf16'`` runs the forward pass and loss under bfloat16 autocast
    (weights, gradients and the optimiser stay fp32): about twice the training
    throughput on CPUs with AVX512-BF16 or AMX, and on recent GPUs.
    ``max_minutes`` is a wall-clock budget for one ``fit`` call: training stops
    after the epoch that crosses it and the result says it stopped early.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    max_minutes: float | None = None
    eval_every: int = 1
    progress: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a UserError naming the first bad field and its allowed values."""
        self.epochs = _int("epochs", self.epochs, minimum=1)
        self.batch_size = _int("batch_size", self.batch_size, minimum=1)
        self.optimizer = _choice("optimizer", self.optimizer, OPTIMIZERS)
        self.lr = _float("lr", self.lr, low=0.0, low_open=True, allowed="a number > 0")
        self.momentum = _float("momentum", self.momentum, low=0.0, high=1.0, high_open=True, allowed="a number in [0, 1)")
        self.nesterov = _bool("nesterov", self.nesterov)
        self.weight_decay = _float("weight_decay", self.weight_decay, low=0.0, allowed="a number >= 0")
        self.warmup_epochs = _float("warmup_epochs", self.warmup_epochs, low=0.0, allowed="a number >= 0")
        self.min_lr = _float("min_lr", self.min_lr, low=0.0, allowed="a number >= 0")
        self.label_smoothing = _float(
            "label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True, allowed="a number in [0, 1)"
        )
        self.seed = _int("seed", self.seed, minimum=0, maximum=2**32 - 1)
        self.num_workers = _int("num_workers", self.num_workers, minimum=0)
        self.device = _device(self.device)
        if self.max_minutes is not None:
            self.max_minutes = _float("max_minutes", self.max_minutes, low=0.0, low_open=True,
                                      allowed="a number of minutes > 0, or None for no limit")
        self.eval_every = _int("eval_every", self.eval_every, minimum=1)
        self.progress = _bool("progress", self.progress)
        self.precision = _choice("precision", self.precision, PRECISIONS)
        if self.warmup_epochs > self.epochs:
            raise UserError(
                f"training config: warmup_epochs ({self.warmup_epochs:g}) is longer than epochs ({self.epochs})",
                hint="use warmup_epochs <= epochs (typically 1-5% of the run)",
            )
        if self.min_lr > self.lr:
            raise UserError(
                f"training config: min_lr ({self.min_lr:g}) is above lr ({self.lr:g})",
                hint="min_lr is where the cosine schedule ends; use a value between 0 and lr",
            )
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise UserError(
                "training config: nesterov=True needs momentum > 0 with optimizer 'sgd'",
                hint="set momentum (e.g. 0.9) or nesterov=False",
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (used in recipes, reports and train_state.pt)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping (e.g. a YAML recipe); unknown keys are an error, missing keys take defaults."""
        if not isinstance(data, Mapping):
            raise UserError(f"training config must be a mapping of field: value, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise UserError(
                f"training config: unknown field(s) {', '.join(map(str, unknown))}",
                hint=f"allowed fields: {', '.join(known)}",
            )
        return cls(**dict(data))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """Turn 'auto'/'cpu'/'cuda'/'cuda:N' into a torch.device, failing clearly when CUDA is absent."""
    name = _device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"training config: device '{name}' was requested but CUDA is not available on this machine",
                hint="use device 'cpu' or 'auto'",
            )
        if name == "cuda":
            return torch.device("cuda", local_rank)
    return torch.device(name)


def _fail(name: str, value: Any, allowed: str) -> UserError:
    return UserError(f"training config: {name} = {value!r} is not valid; allowed: {allowed}")


def _int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    allowed = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    if maximum is not None:
        allowed += f" and <= {maximum}"
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _fail(name, value, allowed)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _fail(name, value, allowed)
    return value


def _float(name: str, value: Any, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, allowed: str = "a number") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(name, value, allowed)
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise _fail(name, value, allowed)
    if high is not None and (value > high or (high_open and value == high)):
        raise _fail(name, value, allowed)
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, "true or false")
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise _fail(name, value, " | ".join(repr(c) for c in choices))
    return value.lower()


def _device(value: Any) -> str:
    allowed = "'auto' | 'cpu' | 'cuda' | 'cuda:N'"
    if not isinstance(value, str):
        raise _fail("device", value, allowed)
    v = value.lower()
    if v in DEVICES:
        return v
    if v.startswith("cuda:") and v[5:].isdigit():
        return v
    raise _fail("device", value, allowed)
