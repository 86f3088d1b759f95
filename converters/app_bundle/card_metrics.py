"""Figures measured on the bundled .tflite: top-1 on the user's images, and host latency."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobile_compress.errors import UserError


@dataclass
class Accuracy:
    """Top-1 of the .tflite (LiteRT) and of the PyTorch checkpoint on the same ``samples`` images."""

    data: str
    split: str
    samples: int
    tflite_top1: float
    pytorch_top1: float
    top1_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def eval_images(data: str, size: int, normalization: Any, limit: int | None,
                cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Held-out images (NCHW float, normalised as in training), their labels, and the split used."""
    from mobile_compress.data import open_dataset

    try:
        dataset, split = open_dataset(data, "test", size, train=False, normalization=normalization,
                                      cache_dir=cache_dir), "test"
    except UserError:
        dataset, split = open_dataset(data, "train", size, train=False, normalization=normalization,
                                      cache_dir=cache_dir), "train"
    n = len(dataset) if limit is None else min(limit, len(dataset))
    index = np.unique(np.linspace(0, len(dataset) - 1, num=n).round().astype(int))
    images, labels = zip(*(dataset[int(i)] for i in index))
    return np.stack([np.asarray(x, np.float32) for x in images]), np.asarray(labels), split


def accuracy(tflite: Path, module: Any, data: str, size: int, normalization: Any, tflite_normalization: Any,
             limit: int | None, cache_dir: str | None = None) -> Accuracy:
    """``normalization``: the checkpoint's; ``tflite_normalization``: what the .tflite takes (they differ when folded)."""
    from converters.app_bundle.fold import renormalize
    from converters.parity import run_tflite, run_torch

    images, labels, split = eval_images(data, size, normalization, limit, cache_dir)
    lite = run_tflite(tflite, renormalize(images, normalization, tflite_normalization), "nhwc").argmax(1)
    torch_top = run_torch(module, images).argmax(1)
    return Accuracy(str(data), split, len(labels), float(np.mean(lite == labels)),
                    float(np.mean(torch_top == labels)), float(np.mean(lite == torch_top)))


def latency(tflite: Path, runs: int) -> dict[str, Any]:
    """Host LiteRT latency, XNNPACK, one thread (the shared timing loop)."""
    from mobile_compress.litert import time_model
    from mobile_compress.report import environment

    timing = time_model(tflite, num_threads=1, xnnpack=True, warmup=5, runs=runs, min_seconds=0.5)
    out = timing.to_dict()
    out.pop("path", None)
    out["machine"] = environment().cpu
    return out
