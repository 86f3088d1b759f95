"""What a pruning run is asked to do, validated before any model is touched.

A target is the fraction of a cost that REMAINS: ``macs=0.5`` keeps 50% of the
multiply-accumulates (2x fewer), ``params=0.7`` keeps 70% of the parameters,
``latency=0.6`` keeps 60% of the latency predicted by a measured per-layer latency
table (the table comes from ``profiler.latency_table``; the core only reads it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mobile_compress import targets
from mobile_compress.errors import UserError
from mobile_compress.pruning.criteria import CRITERIA
from mobile_compress.targets import Target

METRICS = ("macs", "params", "latency")
ALLOCATIONS = ("global", "uniform")


def parse_target(text: Any, source: str = "--target") -> Target:
    """``"macs=0.5"`` -> Target("macs", 0.5), with this compressor's metrics (METRICS)."""
    return targets.parse_target(text, METRICS, source)


@dataclass
class PruneConfig:
    """How to prune.

    ``criterion``: the name of a registered criterion (``CRITERIA``; add one with
    ``register_criterion``): l1 / l2 filter norm, bn_scale (|gamma| of the BatchNorm on the
    channel; L1 where a channel has none, as in SqueezeNet), taylor (first-order
    Taylor, |sum of weight * gradient| squared, from ``taylor_batches`` of data).
    ``allocation``: global (greedy across all layers: remove the least important
    channels per unit of cost saved, until the target is met) or uniform (the same
    fraction of every layer). ``multiple``: kept channel counts are multiples of it
    (or the layer's full width), never below it. ``protect``: layer-name patterns
    (fnmatch, e.g. ``features.0.*``) whose channels are never removed.
    ``min_keep``: the fraction of every group's original channels that stays (0 = no floor),
    like Torch-Pruning's max_pruning_ratio. Raw filter norms are not comparable across
    layers, and the global greedy prefers high-resolution layers (many MACs per channel)
    that XNNPACK runs least efficiently when thin: a floor guards against both (on CIFAR-10
    at 2x fewer MACs, 0.3 gave better accuracy and latency on ResNet-56, MobileNetV2 and
    ShuffleNetV2; benchmarks/prune_cifar10.py).
    """

    target: Target
    criterion: str = "l1"
    allocation: str = "global"
    multiple: int = 8
    protect: tuple[str, ...] = ()
    min_keep: float = 0.0
    taylor_batches: int = 8
    verify: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.target, str):
            self.target = parse_target(self.target)
        self.protect = tuple(self.protect)
        if self.criterion not in CRITERIA:
            raise UserError(f"pruning config: criterion {self.criterion!r} is unknown",
                            hint=f"use one of {', '.join(CRITERIA)}")
        if self.allocation not in ALLOCATIONS:
            raise UserError(f"pruning config: allocation {self.allocation!r} is unknown",
                            hint=f"use one of {', '.join(ALLOCATIONS)}")
        if isinstance(self.multiple, bool) or not isinstance(self.multiple, int) or self.multiple < 1:
            raise UserError(f"pruning config: multiple {self.multiple!r} must be an integer >= 1",
                            hint="8 suits most mobile kernels; 1 disables rounding")
        if isinstance(self.min_keep, bool) or not isinstance(self.min_keep, (int, float)) or not 0 <= self.min_keep < 1:
            raise UserError(f"pruning config: min_keep {self.min_keep!r} must be a fraction in [0, 1)",
                            hint="0.5 keeps at least half of every layer's channels; 0 sets no floor")
        self.min_keep = float(self.min_keep)
        if isinstance(self.taylor_batches, bool) or not isinstance(self.taylor_batches, int) or self.taylor_batches < 1:
            raise UserError(f"pruning config: taylor_batches {self.taylor_batches!r} must be an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = str(self.target)
        d["protect"] = list(self.protect)
        return d
