"""Reader for datasets stored as numpy ``.npz`` archives.

Accepted keys: images under ``x`` or ``images`` and labels under ``y`` or ``labels``
(or per split: ``x_train``/``y_train``, ``x_test``/``y_test``, as Keras saves them),
optional ``classes`` (one name per label). Images are uint8, (N, H, W, 3), (N, H, W),
(N, H, W, 1) or (N, 3, H, W); they come back as (N, H, W, 3).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobile_compress.data.errors import DataError

IMAGE_KEYS = ("x", "images")
LABEL_KEYS = ("y", "labels")
EXPECTED = ("expected images under 'x' or 'images' (uint8, N x H x W x 3, N x H x W or N x 3 x H x W) "
            "and integer labels under 'y' or 'labels' (N,), optionally 'classes' (names), "
            "or per split 'x_train'/'y_train' and 'x_test'/'y_test'")


@dataclass
class NpzData:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    classes: list[str]
    has_split: bool     # True when the file had per-split keys and ``split`` picked them


def _split_key(keys: list[str], names: tuple[str, ...], split: str) -> str | None:
    suffixes = {"train": ("train",), "test": ("test", "val", "valid"), "val": ("val", "valid", "test")}.get(split, ())
    for suffix in suffixes:
        for name in names:
            if f"{name}_{suffix}" in keys:
                return f"{name}_{suffix}"
    return None


def to_hwc3(images: np.ndarray, where: str) -> np.ndarray:
    """(N,H,W) / (N,H,W,1) / (N,3,H,W) / (N,H,W,3) uint8 -> (N,H,W,3) uint8."""
    if images.dtype != np.uint8:
        raise DataError(
            f"{where} has dtype {images.dtype}; images must be uint8 in 0..255",
            hint="save them as np.uint8, e.g. (x * 255).round().astype(np.uint8) for floats in [0, 1]",
        )
    if images.ndim == 3:
        return np.repeat(images[..., None], 3, axis=-1)
    if images.ndim == 4:
        if images.shape[-1] == 3:
            return images
        if images.shape[-1] == 1:
            return np.repeat(images, 3, axis=-1)
        if images.shape[1] == 3:
            return np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        if images.shape[1] == 1:
            return np.ascontiguousarray(np.repeat(images, 3, axis=1).transpose(0, 2, 3, 1))
    raise DataError(f"{where} has shape {images.shape}; expected (N, H, W, 3), (N, H, W) or (N, 3, H, W)",
                    hint=EXPECTED)


def _read_arrays(archive: np.lib.npyio.NpzFile, path: Path, split: str
                 ) -> tuple[str, str, bool, np.ndarray, np.ndarray, np.ndarray | None]:
    keys = list(archive.files)
    xk = _split_key(keys, IMAGE_KEYS, split)
    yk = _split_key(keys, LABEL_KEYS, split)
    has_split = xk is not None
    if xk is None:
        if any(k.startswith(("x_", "y_", "images_", "labels_")) for k in keys) and not any(
                k in keys for k in IMAGE_KEYS):
            raise DataError(f"{path} has per-split keys {sorted(keys)} but none for split '{split}'",
                            hint="use split 'train' or 'test', or " + EXPECTED)
        xk = next((k for k in IMAGE_KEYS if k in keys), None)
        yk = next((k for k in LABEL_KEYS if k in keys), None)
    if xk is None or yk is None:
        missing = "images ('x' or 'images')" if xk is None else "labels ('y' or 'labels')"
        raise DataError(f"{path} has no {missing}; it contains the keys {sorted(keys)}", hint=EXPECTED)
    try:
        images = archive[xk]
        labels = archive[yk]
        classes_arr = archive["classes"] if "classes" in keys else None
    except ValueError as exc:  # object arrays need pickle, which we never enable
        raise DataError(f"{path}: an array could not be read without pickle ({exc})",
                        hint="store class names as a string array: np.array(names, dtype=str)") from None
    return xk, yk, has_split, images, labels, classes_arr


def read_npz(path: str | os.PathLike[str], split: str = "all") -> NpzData:
    """Read and validate ``path``; ``split`` selects ``x_<split>`` keys when the file has them."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f".npz dataset not found: {path}", hint=EXPECTED)
    with open(path, "rb") as fh:  # our handle: closed even when numpy fails half-way
        try:
            archive = np.load(fh, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path} is not a readable .npz archive ({exc})",
                            hint="write it with np.savez(path, x=images, y=labels)") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path} holds a single array, not an .npz archive of named arrays", hint=EXPECTED)
        with archive:
            xk, yk, has_split, images, labels, classes_arr = _read_arrays(archive, path, split)
    images = to_hwc3(images, f"{path} key '{xk}'")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        if labels.ndim == 2 and labels.shape[0] == images.shape[0] and labels.shape[1] > 1 \
                and np.isin(labels, (0, 1)).all() and (labels.sum(1) == 1).all():
            labels = labels.argmax(1)  # one-hot
        else:
            raise DataError(f"{path} key '{yk}' has shape {labels.shape} and dtype {labels.dtype}; "
                            "expected integer class indices of shape (N,)", hint=EXPECTED)
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{path}: '{xk}' has {images.shape[0]} images but '{yk}' has {labels.shape[0]} labels",
                        hint="give exactly one label per image")
    if images.shape[0] == 0:
        raise DataError(f"{path} key '{xk}' holds no images", hint=EXPECTED)
    if labels.min() < 0:
        raise DataError(f"{path} key '{yk}' has negative labels (min {labels.min()})",
                        hint="labels must be class indices 0..K-1")
    n_classes = int(labels.max()) + 1
    if classes_arr is not None:
        classes = [str(c) for c in np.asarray(classes_arr).reshape(-1)]
        if len(classes) < n_classes:
            raise DataError(f"{path} key 'classes' has {len(classes)} names but the labels go up to {n_classes - 1}",
                            hint="give one class name per label index")
        if len(set(classes)) != len(classes):
            raise DataError(f"{path} key 'classes' has duplicate names", hint="class names must be unique")
    else:
        classes = [str(i) for i in range(n_classes)]
    return NpzData(images=images, labels=labels.astype(np.int64), classes=classes, has_split=has_split)
