"""The built-in ``digits`` dataset: real images that need no download.

scikit-learn ships 1,797 real 8x8 handwritten digits (UCI optdigits, 10 classes) in
its wheel. They are upscaled to 32x32 with Pillow (bicubic), or straight from 8x8 to a
larger requested size (so 224-pixel models can calibrate and be checked offline), copied to R, G and B,
and split once, stratified 80/20 with a fixed seed, so every run everywhere sees the
same train and test images. Its normalization is ``normalization.DIGITS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from mobile_compress.data.errors import DataError

NAMES = ("digits",)
DIGITS_SIZE = 32
DIGITS_TEST_FRACTION = 0.2
#: Fixed: the split must not depend on any user seed, or train and test could overlap.
SPLIT_SEED = 0


@dataclass(frozen=True)
class BuiltinData:
    images: np.ndarray  # (N, 32, 32, 3) uint8, read-only
    labels: np.ndarray  # (N,) int64
    classes: list[str]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, test_indices), both sorted; each class contributes round(n * fraction) test items.

    A class with at least 2 items always keeps at least one item on each side.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        else:
            n_test = 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def upscale_digits(raw: np.ndarray, size: int = DIGITS_SIZE) -> np.ndarray:
    """(N, 8, 8) values 0..16 -> (N, size, size, 3) uint8 via Pillow bicubic."""
    gray = np.clip(np.round(raw * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    out = np.empty((gray.shape[0], size, size, 3), dtype=np.uint8)
    for i, g in enumerate(gray):
        big = np.asarray(Image.fromarray(g).resize((size, size), Image.BICUBIC))
        out[i] = big[:, :, None]
    return out


@lru_cache(maxsize=2)
def load_digits_all(size: int = DIGITS_SIZE) -> BuiltinData:
    """All 1,797 digits, upscaled to ``size`` (computed once per process and size, ~0.1 s at 32)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = upscale_digits(d.images, size)
    images.setflags(write=False)
    labels = d.target.astype(np.int64)
    labels.setflags(write=False)
    return BuiltinData(images, labels, [str(i) for i in range(10)])


def load_builtin(name: str, split: str, size: int = DIGITS_SIZE) -> BuiltinData:
    """Split ``train``, ``test`` (``val`` is the same images) or ``all`` of the built-in dataset ``name``.

    ``size`` above 32 renders the digits at that size from their 8x8 originals; smaller sizes give 32.
    """
    if name not in NAMES:
        raise DataError(f"unknown built-in dataset '{name}'",
                        hint=f"available: {', '.join('builtin:' + n for n in NAMES)} (or just 'builtin')")
    data = load_digits_all(max(size, DIGITS_SIZE))
    if split == "all":
        return data
    train_idx, test_idx = stratified_split(data.labels, DIGITS_TEST_FRACTION)
    idx = train_idx if split == "train" else test_idx
    return BuiltinData(data.images[idx], data.labels[idx], data.classes)
