"""Per-channel mean/std normalization, and the named constants in one place.

The training engine stores ``Normalization.to_dict()`` in each checkpoint, so
conversion and app export apply exactly the preprocessing the model was trained
with. Keep every named constant here and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mobile_compress.data.errors import DataError


def _triple(name: str, value: Any) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"normalization {name} must be 3 numbers (R, G, B), got {value!r}") from None
    if len(vals) != 3 or not all(np.isfinite(vals)):
        raise DataError(f"normalization {name} must be 3 finite numbers (R, G, B), got {value!r}")
    return vals  # type: ignore[return-value]


@dataclass(frozen=True)
class Normalization:
    """``x = (pixel / 255 - mean) / std`` per RGB channel."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _triple("mean", self.mean))
        object.__setattr__(self, "std", _triple("std", self.std))
        if any(s <= 0 for s in self.std):
            raise DataError(f"normalization std must be positive, got {self.std}")

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form stored in checkpoints."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Normalization":
        """Inverse of ``to_dict``; a broken checkpoint entry gives a DataError."""
        if not isinstance(data, Mapping) or "mean" not in data or "std" not in data:
            raise DataError(
                f"normalization must be a mapping with 'mean' and 'std' (3 numbers each), got {data!r}",
                hint="re-save the checkpoint, or pass the mean/std the model was trained with",
            )
        return cls(mean=data["mean"], std=data["std"])


def compute_normalization(images: np.ndarray, batch: int = 4096) -> Normalization:
    """Mean/std per channel of uint8 images (N, H, W, 3), in float64, batch by batch."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, H, W, 3) array, got shape {images.shape}")
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for start in range(0, images.shape[0], batch):
        x = np.asarray(images[start:start + batch], dtype=np.float64).reshape(-1, 3) / 255.0
        total += x.sum(axis=0)
        total_sq += (x * x).sum(axis=0)
        count += x.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return Normalization(tuple(mean.round(4)), tuple(std.round(4)))  # type: ignore[arg-type]


#: ImageNet statistics (the torchvision convention); the default for pretrained models.
IMAGENET = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

#: CIFAR-10 training-set statistics (per-pixel std over the 50,000 training images).
CIFAR10 = Normalization(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))

#: The built-in ``digits`` dataset (mobile_compress.data.builtin). Computed once with
#: ``compute_normalization`` on its train split (1,438 images, 32x32 bicubic upscale,
#: gray copied to R, G and B) and recorded here; tests/test_data.py recomputes it and
#: fails if the built-in pipeline changes without this constant being updated.
DIGITS = Normalization(mean=(0.3095, 0.3095, 0.3095), std=(0.3489, 0.3489, 0.3489))

NAMED: dict[str, Normalization] = {"imagenet": IMAGENET, "cifar10": CIFAR10, "digits": DIGITS}
