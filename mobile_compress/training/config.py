"""Training settings, validated up front.

Every value is checked when the config is made, so a typo in a recipe or on the
command line fails before any data is read, with a message that names the field
and what it may be.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

import torch

from mobile_compress.errors import UserError

OPTIMIZERS = ("sgd", "adamw")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class DefaultRule:
    """How the defaults of batch size, learning rate and warm-up follow the training set's size.

    Measured on the built-in digits (1,438 training images, 32 px, 2 epochs): with 64-image
    batches a run has 46 steps, too few for the weights and for BatchNorm's running statistics,
    and MobileNetV2 x0.5 ends at 16 % top-1; with 16-image batches (180 steps) it reaches 94 %,
    and AdamW did worse than SGD at every rate tried. So small sets get smaller batches (at least ``min_steps_per_epoch`` steps per epoch, never
    below ``min_batch``); sets of ``max_batch * min_steps_per_epoch`` images or more (CIFAR-10,
    ImageNet) keep ``max_batch``. The warm-up is ``warmup_fraction`` of all steps with a floor
    of ``min_warmup_steps``, and never more than a quarter of the run. BatchNorm layers whose
    momentum is too low to forget their initial statistics within one epoch get a higher one for
    the run (``bn_momentum``; large sets never need it).
    """

    max_batch: int = 64
    min_batch: int = 16
    min_steps_per_epoch: int = 100
    lr: Mapping[str, float] = field(default_factory=lambda: {"sgd": 0.05, "adamw": 0.002})
    warmup_fraction: float = 0.02
    min_warmup_steps: int = 20
    bn_memory: float = 0.01
    max_bn_momentum: float = 0.1  # torch's own default: a run of a few steps must not adopt one batch's statistics

    def batch_size(self, train_images: int) -> int:
        """The largest power of two <= max_batch giving min_steps_per_epoch steps, but at least min_batch."""
        batch = self.max_batch
        while batch > self.min_batch and train_images < batch * self.min_steps_per_epoch:
            batch //= 2
        return batch

    def warmup_steps(self, total_steps: int) -> int:
        return min(max(self.min_warmup_steps, round(self.warmup_fraction * total_steps)), total_steps // 4)

    def bn_momentum(self, steps_per_epoch: int) -> float:
        """The least BatchNorm momentum at which the running statistics keep under ``bn_memory`` of their
        start after one epoch (MobileNetV3's 0.01 keeps 40 % after 90 steps and evaluates at chance), capped at
        ``max_bn_momentum`` (a one-step QAT run at 0.99 replaced the calibrated statistics with one batch's)."""
        return min(self.max_bn_momentum, 1.0 - self.bn_memory ** (1.0 / max(1, steps_per_epoch)))

    def describe(self) -> str:
        """The rule in one sentence, for help texts."""
        return (f"batch {self.max_batch}, halved down to {self.min_batch} until an epoch has "
                f"{self.min_steps_per_epoch} steps; lr {self.lr['sgd']:g} (sgd) or {self.lr['adamw']:g} (adamw); "
                f"warm-up {100 * self.warmup_fraction:g}% of the steps, at least {self.min_warmup_steps} steps")


DEFAULT_RULE = DefaultRule()


@dataclass
class TrainConfig:
    """How to train: optimiser, schedule, budget and reproducibility settings.

    ``lr`` is the peak learning rate reached after ``warmup_epochs`` of linear
    warm-up; it then follows a per-step cosine down to ``min_lr``.
    ``batch_size``, ``lr`` and ``warmup_epochs`` left at None follow the rule of
    ``resolve`` (``DEFAULT_RULE``), which sizes them to the training set; a value
    given here always wins.
    ``precision='bf16'`` runs the forward pass and loss under bfloat16 autocast
    (weights, gradients and the optimiser stay fp32): about twice the training
    throughput on CPUs with AVX512-BF16 or AMX, and on recent GPUs.
    ``max_minutes`` is a wall-clock budget for one ``fit`` call: training stops
    after the epoch that crosses it and the result says it stopped early.
    """

    epochs: int = 10
    batch_size: int | None = None
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float | None = None
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
        if self.batch_size is not None:
            self.batch_size = _int("batch_size", self.batch_size, minimum=1)
        self.optimizer = _choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.lr is not None:
            self.lr = _float("lr", self.lr, low=0.0, low_open=True, allowed="a number > 0, or None for the default rule")
        self.momentum = _float("momentum", self.momentum, low=0.0, high=1.0, high_open=True, allowed="a number in [0, 1)")
        self.nesterov = _bool("nesterov", self.nesterov)
        self.weight_decay = _float("weight_decay", self.weight_decay, low=0.0, allowed="a number >= 0")
        if self.warmup_epochs is not None:
            self.warmup_epochs = _float("warmup_epochs", self.warmup_epochs, low=0.0,
                                        allowed="a number >= 0, or None for the default rule")
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
        if self.warmup_epochs is not None and self.warmup_epochs > self.epochs:
            raise UserError(
                f"training config: warmup_epochs ({self.warmup_epochs:g}) is longer than epochs ({self.epochs})",
                hint="use warmup_epochs <= epochs (typically 1-5% of the run)",
            )
        peak = self.lr if self.lr is not None else DEFAULT_RULE.lr[self.optimizer]
        if self.min_lr > peak:
            raise UserError(
                f"training config: min_lr ({self.min_lr:g}) is above lr ({peak:g}"
                + ("" if self.lr is not None else ", the default") + ")",
                hint="min_lr is where the cosine schedule ends; use a value between 0 and lr",
            )
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise UserError(
                "training config: nesterov=True needs momentum > 0 with optimizer 'sgd'",
                hint="set momentum (e.g. 0.9) or nesterov=False",
            )

    def resolve(self, train_images: int) -> "TrainConfig":
        """This config with ``DEFAULT_RULE`` filling the fields left at None, for a training set this size.

        ``train_images`` counts the images one process trains on per epoch (its share under torchrun).
        """
        rule = DEFAULT_RULE
        batch = self.batch_size if self.batch_size is not None else rule.batch_size(train_images)
        lr = self.lr if self.lr is not None else rule.lr[self.optimizer]
        warmup = self.warmup_epochs
        if warmup is None:
            steps_per_epoch = max(1, math.ceil(train_images / batch))
            warmup = rule.warmup_steps(self.epochs * steps_per_epoch) / steps_per_epoch
        return replace(self, batch_size=batch, lr=lr, warmup_epochs=warmup)

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
