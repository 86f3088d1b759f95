"""Real images for calibration and parity, preprocessed exactly as in training.

The images go through the checkpoint's own eval transform (``open_dataset`` with
its normalization), so int8 ranges are calibrated on what the model really sees.
Arrays are NCHW float32, already normalized.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converters.config import require_square
from converters.source import Source
from mobile_compress.errors import UserError


@dataclass
class Samples:
    """Calibration images, parity images with their labels, and where they came from."""

    calib: np.ndarray
    parity: np.ndarray
    parity_labels: np.ndarray
    data: str
    calib_split: str
    parity_split: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def load_samples(source: Source, data: str | None, calib_count: int, parity_count: int,
                 cache_dir: str | None = None) -> Samples:
    """Take ``calib_count`` training images and ``parity_count`` held-out images, spread over the set."""
    from mobile_compress.data import open_dataset

    data = data or source.data
    if not data:
        raise UserError(f"no data to calibrate and check {source.path} on",
                        hint="pass --calib DATA (an image folder, an .npz file or 'builtin'), "
                             "preprocessed as in training")
    require_square(source.input_size)  # a source's own size (a .pt2 or .onnx with a fixed one)
    h = source.input_size[0]
    if source.channels != 3:
        raise UserError(f"the model takes {source.channels} channels; the data readers give RGB images",
                        hint="conversion with calibration data supports 3-channel models")
    calib_set = open_dataset(data, "train", h, train=False, normalization=source.normalization,
                             cache_dir=cache_dir)
    try:
        parity_set, parity_split = open_dataset(data, "test", h, train=False,
                                                normalization=calib_set.normalization, cache_dir=cache_dir), "test"
    except UserError:
        parity_set, parity_split = calib_set, "train"
    calib, _ = _take(calib_set, calib_count)
    parity, labels = _take(parity_set, parity_count)
    norm = calib_set.normalization
    return Samples(calib, parity, labels, str(data), "train", parity_split, tuple(norm.mean), tuple(norm.std))


def _take(dataset, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` items evenly spaced over the dataset (every class appears; no randomness)."""
    n = len(dataset)
    index = np.unique(np.linspace(0, n - 1, num=min(count, n)).round().astype(int))
    images, labels = [], []
    for i in index:
        image, label = dataset[int(i)]
        images.append(np.asarray(image, dtype=np.float32))
        labels.append(int(label))
    return np.stack(images), np.asarray(labels)
