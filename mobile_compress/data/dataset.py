"""``ImageDataset`` and ``open_dataset``, the one entry point the CLI and trainer use."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from torch.utils.data import Dataset, get_worker_info

from mobile_compress.data.builtin import SPLIT_SEED, load_builtin, stratified_split
from mobile_compress.data.errors import FOLDER_LAYOUT, DataError
from mobile_compress.data.folder import (
    _subdirs, check_size, fit_square, load_image_folder,
    resolve_sizes, split_dirs,
)
from mobile_compress.data.normalization import DIGITS, IMAGENET, Normalization
from mobile_compress.data.npz import read_npz
from mobile_compress.data.transforms import eval_transform, reseed, train_transform

SPLITS = ("train", "test", "val", "all")
#: Share of a dataset without its own test split that is held out for test/val.
HOLDOUT_FRACTION = 0.1


class ImageDataset(Dataset):
    """Images (uint8 N x H x W x 3, possibly memory-mapped) with labels and a transform.

    ``rows`` selects which images of the array belong to this dataset, so splits share
    one (cached) array without copying it. ``dataset[i]`` is ``(transform(image), label)``.
    In a DataLoader worker the random transforms are reseeded once per worker from the
    worker's torch seed, so workers do not repeat each other's augmentation.
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int] | np.ndarray, classes: Sequence[str],
                 transform: Callable[[np.ndarray], Any] | None = None,
                 normalization: Normalization = IMAGENET, image_size: int | None = None,
                 rows: np.ndarray | Sequence[int] | None = None,
                 skipped: Sequence[tuple[str, str]] = (), source: str = "", split: str = "all",
                 train: bool = False) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
        self.images = images
        self._array = np.asarray(images)  # plain ndarray view: indexing a np.memmap is several times slower
        self.rows = np.arange(images.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        self.labels: np.ndarray = labels[self.rows]
        self.classes: list[str] = list(classes)
        self.transform = transform
        self.normalization = normalization
        self.image_size: int = int(image_size if image_size is not None else min(images.shape[1:3]))
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.source = source
        self.split = split
        self.train = train
        self._seeded_for: tuple[int, int] | None = None
        self._label_list: list[int] = self.labels.tolist()
        self._row_list: list[int] = self.rows.tolist()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def storage_size(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self._row_list)

    def image(self, index: int) -> np.ndarray:
        """The stored uint8 image (H, W, 3) before any transform."""
        return self._array[self._row_list[index]]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if self.transform is not None:
            info = get_worker_info()
            if info is not None and self._seeded_for != (info.id, info.seed):
                reseed(self.transform, info.seed % 2**63)
                self._seeded_for = (info.id, info.seed)
            return self.transform(self._array[self._row_list[index]]), self._label_list[index]
        return self.image(index), self._label_list[index]

    def reseed(self, seed: int) -> None:
        """Restart the augmentation stream (in this process) from ``seed``.

        A trainer calls this at each epoch start with a seed derived from (run seed,
        epoch, rank): a resumed run then repeats the same augmentation, and ranks of a
        distributed run do not share one stream. DataLoader workers reseed from their
        torch worker seed instead (see ``__getitem__``).
        """
        if self.transform is not None:
            reseed(self.transform, seed)
        self._seeded_for = None

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))

    def with_transform(self, transform: Callable[[np.ndarray], Any] | None,
                       train: bool | None = None) -> "ImageDataset":
        """Same images and rows, another transform (e.g. eval preprocessing of the train split)."""
        ds = ImageDataset.__new__(ImageDataset)
        ds.__dict__.update(self.__dict__)
        ds.transform = transform
        ds.train = self.train if train is None else train
        ds._seeded_for = None
        return ds

    # A memory-mapped array is re-opened, not copied, when the dataset is pickled (spawn workers).
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_array"]
        if isinstance(self.images, np.memmap) and self.images.filename and self.images.mode == "r":
            state["images"] = ("__memmap__", self.images.filename)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        images = state["images"]
        if isinstance(images, tuple) and images[0] == "__memmap__":
            state["images"] = np.load(images[1], mmap_mode="r")
        state["_array"] = np.asarray(state["images"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f"ImageDataset({self.source!r}, split={self.split!r}, {len(self)} images, "
                f"{len(self.classes)} classes, image_size={self.image_size}, storage={self.storage_size}px)")


def _holdout(labels: np.ndarray, split: str) -> np.ndarray:
    """Positions (into ``labels``) of ``split`` in the fixed 90/10 stratified holdout."""
    train_idx, test_idx = stratified_split(labels, HOLDOUT_FRACTION, seed=SPLIT_SEED)
    return train_idx if split == "train" else test_idx


def _fit_array(images: np.ndarray, where: str, image_size: int | None,
               storage_size: int | None) -> tuple[np.ndarray, int]:
    """Validate sizes for in-memory images; resize them only on an explicit ``storage_size``."""
    h, w = images.shape[1:3]
    probe = {"uniform": [w, h], "max_short": min(h, w)}
    image_size, storage = resolve_sizes(Path(where), probe, image_size, storage_size)
    if storage_size is not None and (h, w) != (storage_size, storage_size):
        out = np.empty((images.shape[0], storage_size, storage_size, 3), dtype=np.uint8)
        for i in range(images.shape[0]):
            out[i] = fit_square(images[i], storage_size)
        images = out
    return images, image_size


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'", hint=f"use one of: {', '.join(SPLITS)}")
    return split


def check_source(source: str | os.PathLike[str]) -> None:
    """Refuse a data source that cannot be opened (missing, a non-.npz file, not a file or folder) without reading
    it, so a command can check ``--data``/``--calib`` before it loads a model."""
    src = os.fspath(source)
    if src == "builtin" or src.startswith("builtin:"):
        return
    path = Path(src).expanduser()
    if path.is_dir():
        return
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DataError(f"{path} is a file but not a .npz archive",
                            hint="pass an ImageFolder directory, a .npz file or 'builtin'; " + FOLDER_LAYOUT)
        return
    if not path.exists():
        raise DataError(f"dataset not found: {path}",
                        hint="pass an ImageFolder directory, a .npz file or 'builtin'; " + FOLDER_LAYOUT)
    raise DataError(f"{path} is neither a regular file nor a folder",
                    hint="pass an ImageFolder directory, a .npz file or 'builtin'")


def open_dataset(source: str | os.PathLike[str], split: str = "train", image_size: int | None = None,
                 train: bool | None = None, normalization: Normalization | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, seed: int = 0, *,
                 storage_size: int | None = None, workers: int | None = None) -> ImageDataset:
    """Open ``source`` as an ``ImageDataset`` with the train or eval transform.

    ``source``: ``builtin`` / ``builtin:digits``; a ``.npz`` file; or an ImageFolder
    directory. ``split``: ``train``, ``test``, ``val`` (the test images when there is no
    val/ folder) or ``all``. A folder with ``train/`` and ``test/`` (or ``val/``)
    subfolders uses them; any other folder or .npz is split 90/10 per class with a
    fixed seed. ``train`` (default: split == "train") picks augmentation.
    ``normalization`` defaults to the built-in dataset's constants for ``builtin`` and
    to IMAGENET otherwise (the trainer passes the checkpoint's). ``seed`` seeds the
    augmentation only, never the split. ``storage_size`` asks for an explicit resize of
    every image to that square size (needed to upscale images smaller than
    ``image_size``). ``workers``: processes for the first decode (default: all cores).
    """
    split = _check_split(split)
    image_size = check_size("image size", image_size, "--image-size")
    storage_size = check_size("storage size", storage_size, "--resize")
    if normalization is not None and not isinstance(normalization, Normalization):
        raise TypeError(f"normalization must be a Normalization, got {type(normalization).__name__}")
    if train is None:
        train = split == "train"
    src = os.fspath(source)
    skipped: list[tuple[str, str]] = []
    rows: np.ndarray | None = None
    default_norm = IMAGENET
    flip = True

    if src == "builtin" or src.startswith("builtin:"):
        name = src.partition(":")[2] or "digits"
        data = load_builtin(name, split, max(image_size or 0, storage_size or 0))
        images, image_size = _fit_array(data.images, src, image_size, storage_size)
        labels, classes = data.labels, data.classes
        default_norm = DIGITS
        flip = False  # a mirrored digit is no digit: flips cost the 2-epoch tour ~10 points of top-1
        where = src
    else:
        path = Path(src).expanduser()
        where = str(path)
        check_source(path)
        if path.is_dir():
            images, labels, classes, rows, image_size, skipped = _open_folder(
                path, split, image_size, storage_size, cache_dir, workers)
        else:
            data = read_npz(path, split)
            images, image_size = _fit_array(data.images, where, image_size, storage_size)
            labels, classes = data.labels, data.classes
            if not data.has_split and split != "all":
                rows = _holdout(labels, split)

    if rows is not None and len(rows) == 0:
        raise DataError(f"split '{split}' of {where} is empty: {HOLDOUT_FRACTION:.0%} per class is held out "
                        "for test, and every class has fewer than 2 usable images",
                        hint="add images (at least 2 per class, better dozens), or provide train/ and test/ folders")
    norm = normalization or default_norm
    transform = train_transform(image_size, norm, seed, flip=flip) if train else eval_transform(image_size, norm)
    return ImageDataset(images, labels, classes, transform, norm, image_size, rows=rows, skipped=skipped,
                        source=where, split=split, train=train)


def _open_folder(path: Path, split: str, image_size: int | None, storage_size: int | None,
                 cache_dir: str | os.PathLike[str] | None, workers: int | None
                 ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, int, list[tuple[str, str]]]:
    layout = split_dirs(path)
    classes = None
    folder, holdout = path, True
    if layout is not None:
        if split == "all":
            raise DataError(f"{path} is already split into {', '.join(sorted({p.name for p in layout.values()}))}/",
                            hint="open split 'train' or 'test' (or pass one subfolder itself)")
        classes = _subdirs(layout["train"])  # test/ labels follow train/'s class order
        if split == "train":
            folder, holdout = layout["train"], "test" not in layout
        elif split in layout:
            folder, holdout = layout[split], False
        else:  # only train/: hold out 10% of it
            folder, holdout = layout["train"], True
    data = load_image_folder(folder, image_size, storage_size, cache_dir, classes=classes, workers=workers)
    rows = data.rows
    if holdout and split != "all":
        rows = rows[_holdout(data.labels[rows], split)]
    return data.images, data.labels, data.classes, rows, data.image_size, data.skipped

