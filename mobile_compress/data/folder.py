"""ImageFolder reader: ``root/<class>/<image>`` decoded to RGB through the image cache.

Listing and validation happen here (with errors that show the expected layout);
pixels are decoded once by ``cache.ImageCache`` and stored at a square storage size.
Undecodable files are skipped, warned about once and listed in ``skipped``.
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from mobile_compress.data import cache as _cache
from mobile_compress.data.errors import FOLDER_LAYOUT, DataError, DataWarning
from mobile_compress.data.transforms import eval_resize

log = logging.getLogger(__name__)

#: Largest accepted image size and storage size, in pixels.
MAX_IMAGE_SIZE = 4096
#: Image size used when the caller gives none and the images differ in size.
DEFAULT_IMAGE_SIZE = 224
#: Uniform square images are stored at their native size unless that is more than
#: this factor above what the image size needs (500 px photos for a 64 px model).
MAX_NATIVE_FACTOR = 2
#: Names of the subfolders of a split dataset, in order of preference per split.
SPLIT_DIRS = {"train": ("train",), "test": ("test", "val"), "val": ("val", "test")}


#: Raster formats we list as images (those this Pillow build can open are used).
#: Pillow also registers stubs and vector formats (.h5, .grib, .eps, .wmf, .mpeg)
#: that need external handlers; files with those extensions are ignored.
_RASTER = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".tif", ".tiff",
           ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k", ".jpx", ".jpf",
           ".avif", ".qoi", ".pcx", ".sgi", ".rgb", ".ras", ".dds", ".psd"}


def _image_extensions() -> frozenset[str]:
    Image.init()
    openable = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset(openable & _RASTER)


IMAGE_EXTENSIONS = _image_extensions()
#: Pillow format tried first for each extension: identifying a file by trying every
#: plugin costs more than decoding a 32x32 JPEG.
_FORMAT_OF = {ext: fmt for ext, fmt in Image.registered_extensions().items() if ext in IMAGE_EXTENSIONS}


def open_image(path: str, data: bytes | None = None) -> Image.Image:
    """``Image.open`` trying the format the extension names first (a misnamed file still opens)."""
    fp = io.BytesIO(data) if data is not None else path
    fmt = _FORMAT_OF.get(os.path.splitext(path)[1].lower())
    if fmt is not None:
        try:
            return Image.open(fp, formats=[fmt])
        except UnidentifiedImageError:
            fp = io.BytesIO(data) if data is not None else path
    return Image.open(fp)


def check_size(name: str, value: int | None, flag: str) -> int | None:
    """Validate a user-given pixel size (image_size, storage_size): an int in 1..4096."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be a whole number of pixels, got {value!r}", hint=f"pass e.g. {flag} 32 or 224")
    if not 1 <= value <= MAX_IMAGE_SIZE:
        raise DataError(f"{name} must be between 1 and {MAX_IMAGE_SIZE} pixels, got {value}",
                        hint=f"pass e.g. {flag} 32 (small images) or 224 (photos)")
    return int(value)


@dataclass
class FolderListing:
    """The image files of one ImageFolder, sorted by (class, relative path)."""

    root: Path
    classes: list[str]
    files: list[str]
    labels: list[int]
    stats: list[tuple[int, int]]
    _key: str | None = None

    def paths(self) -> list[str]:
        return [str(self.root / f) for f in self.files]

    def contents_key(self) -> str:
        """Hash of what decides the decoded pixels, except the storage size."""
        if self._key is None:
            self._key = _cache.digest(
                [_cache.CACHE_VERSION, str(self.root), self.classes, self.files, self.labels, self.stats])
        return self._key


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _walk_images(folder: Path, rel: str, out: list[tuple[str, int, int]], other: Counter[str]) -> None:
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if _is_hidden(e.name):
            continue
        if e.is_dir():
            _walk_images(Path(e.path), f"{rel}/{e.name}", out, other)
        elif e.is_file():
            dot = e.name.rfind(".")
            ext = e.name[dot:].lower() if dot > 0 else ""
            if ext in IMAGE_EXTENSIONS:
                st = e.stat()
                out.append((f"{rel}/{e.name}", st.st_size, st.st_mtime_ns))
            else:
                other[ext or "(no extension)"] += 1


def _subdirs(root: Path) -> list[str]:
    with os.scandir(root) as it:
        return sorted(e.name for e in it if e.is_dir() and not _is_hidden(e.name))


def check_folder(root: Path) -> None:
    """DataError unless ``root`` is an existing directory."""
    if not root.exists():
        raise DataError(f"dataset folder not found: {root}", hint=FOLDER_LAYOUT)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder", hint=FOLDER_LAYOUT + ", or a .npz file")


def split_dirs(root: Path) -> dict[str, Path] | None:
    """``{"train": ..., "test": ...}`` when ``root`` holds train/ (+ test/ or val/) subfolders.

    A train/ without class subfolders is still a split when test/ or val/ sits beside it (its
    listing then says so); read as a flat folder, "train" and "test" would be the two classes.
    """
    train = root / "train"
    if not train.is_dir():
        return None
    if not _subdirs(train) and not any((root / name).is_dir() for name in ("test", "val")):
        return None  # a flat folder with a class called "train"
    found = {"train": train}
    for split in ("test", "val"):
        for name in SPLIT_DIRS[split]:
            if (root / name).is_dir():
                found[split] = root / name
                break
    return found


def list_image_folder(root: str | os.PathLike[str], classes: Sequence[str] | None = None) -> FolderListing:
    """List ``root/<class>/**/<image>``; ``classes`` fixes the class order (e.g. train's, for test/)."""
    root = Path(root).expanduser().resolve()
    check_folder(root)
    try:
        return _list_image_folder(root, classes)
    except PermissionError as exc:
        raise DataError(f"cannot read {exc.filename or root}: permission denied",
                        hint="make the dataset folder readable (chmod -R a+rX) or copy it somewhere readable") from None


def _list_image_folder(root: Path, classes: Sequence[str] | None) -> FolderListing:
    names = _subdirs(root)
    if not names:
        loose = [e for e in os.listdir(root) if not _is_hidden(e)]
        if not loose:
            raise DataError(f"dataset folder {root} is empty", hint=FOLDER_LAYOUT)
        n_img = sum(os.path.splitext(e)[1].lower() in IMAGE_EXTENSIONS for e in loose)
        raise DataError(
            f"{root} has no class subfolders ({n_img} images and {len(loose) - n_img} other files lie directly in it)",
            hint=FOLDER_LAYOUT + "; move the images into one subfolder per class",
        )
    if classes is None:
        class_list = names
    else:
        class_list = list(classes)
        unknown = sorted(set(names) - set(class_list))
        if unknown:
            raise DataError(
                f"{root} has class folders the training split does not have: {', '.join(unknown[:10])}",
                hint="give train/ and test/ (or val/) the same class subfolders",
            )
    index = {c: i for i, c in enumerate(class_list)}
    files: list[str] = []
    labels: list[int] = []
    stats: list[tuple[int, int]] = []
    empty: list[str] = []
    other: Counter[str] = Counter()
    for name in names:
        found: list[tuple[str, int, int]] = []
        _walk_images(root / name, name, found, other)
        if not found:
            empty.append(name)
        for rel, size, mtime in found:
            files.append(rel)
            labels.append(index[name])
            stats.append((size, mtime))
    if not files:
        seen = f" (found only: {', '.join(f'{n} {e}' for e, n in other.most_common(5))})" if other else ""
        raise DataError(f"{root} has class subfolders but no image files{seen}",
                        hint=FOLDER_LAYOUT + "; readable formats: .jpg, .png, .bmp, .gif, .webp, .tiff, .ppm "
                        "and other Pillow formats")
    check_classes(root, class_list, empty)
    missing = [c for c in class_list if c not in names]
    if missing:  # test/ (or val/) lacks some of train/'s classes: allowed, but its accuracy leaves them out
        warnings.warn(f"{root} has no folder for {len(missing)} class(es) of the training split "
                      f"({', '.join(missing[:10])}); accuracy on it does not cover them. Add a folder with "
                      "images for each, or ignore this if it is meant", DataWarning, stacklevel=4)
    if other:
        log.info("%s: ignored %d non-image files (%s)", root, sum(other.values()), dict(other.most_common(5)))
    return FolderListing(root, class_list, files, labels, stats)


def check_classes(root: Path, classes: Sequence[str], empty: Sequence[str]) -> None:
    """What every ImageFolder must be, flat or each split of train/ + test/: no class folder without
    images (an empty class can be neither learnt nor tested) and at least 2 classes (one class
    scores 100 % while learning nothing)."""
    if empty:
        raise DataError(
            f"class folder(s) without images in {root}: {', '.join(empty[:10])}",
            hint="add images to them or remove them; every class folder must hold at least one image",
        )
    if len(classes) < 2:
        raise DataError(
            f"{root} has a single class folder ({', '.join(classes)}); a classifier needs at least 2 classes",
            hint="add a folder of images for each other class, or point at the dataset root (the folder that "
                 "contains the class folders); " + FOLDER_LAYOUT,
        )


def probe_image(path: str) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding pixels; None if unreadable."""
    try:
        with open_image(path) as im:
            return im.size
    except Exception:
        return None


def _fit_pil(im: Image.Image, size: int) -> np.ndarray:
    w, h = im.size
    if (w, h) == (size, size):
        return np.asarray(im)
    short = min(w, h)
    left, top = (w - short) / 2.0, (h - short) / 2.0
    im = im.resize((size, size), Image.BILINEAR, box=(left, top, left + short, top + short))
    return np.asarray(im)


def decode_image(path: str, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode to RGB fitted to ``size`` x ``size`` (shorter side resized, center crop); also the original (w, h).

    An image that is already ``size`` x ``size`` is not resampled. Large JPEGs are
    decoded at a reduced DCT scale first (Pillow ``draft``), which is much faster.
    The file is read in one call: Pillow's many small reads cost more than decoding
    a 32x32 JPEG.
    """
    with open(path, "rb") as f:
        data = f.read()
    with open_image(path, data) as im:
        original = im.size
        if original != (size, size):
            im.draft("RGB", (size, size))
        if im.mode != "RGB":
            im = im.convert("RGB")
        else:
            im.load()
        return _fit_pil(im, size), original


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """The same fit as ``decode_image`` for an HWC uint8 array already in memory."""
    if image.shape[:2] == (size, size):
        return image
    return _fit_pil(Image.fromarray(np.ascontiguousarray(image)), size)


@dataclass
class FolderData:
    """Decoded folder: ``images[rows]`` are the usable images, ``labels[rows]`` their classes."""

    images: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    classes: list[str]
    files: list[str]
    skipped: list[tuple[str, str]]
    image_size: int
    storage_size: int
    root: Path
    from_cache: bool


#: Headers read before the first decode to guess the storage size; the decode pass then
#: records every image's size and the guess is checked (and the cache rebuilt if wrong).
PROBE_SAMPLE = 32


def size_summary(sizes: Sequence[tuple[int, int] | None]) -> dict[str, object]:
    """What the size decisions need: the shared (w, h) if all readable images have one,
    the median and largest shorter side, the count of readable images."""
    ok = [tuple(s) for s in sizes if s is not None]
    distinct = set(ok)
    shorts = sorted(min(s) for s in ok)
    return {
        "uniform": list(next(iter(distinct))) if len(distinct) == 1 else None,
        "median_short": shorts[len(shorts) // 2] if shorts else 0,
        "max_short": shorts[-1] if shorts else 0,
        "readable": len(ok),
    }


def sample_sizes(listing: FolderListing, count: int = PROBE_SAMPLE) -> dict[str, object]:
    """``size_summary`` of the headers of ``count`` files spread evenly over the listing."""
    n = len(listing.files)
    picks = sorted(set(np.linspace(0, n - 1, min(n, count)).round().astype(int).tolist()))
    return size_summary([probe_image(str(listing.root / listing.files[i])) for i in picks])


def resolve_sizes(root: Path, probe: dict[str, object], image_size: int | None,
                  storage_size: int | None) -> tuple[int, int]:
    """(image_size, storage_size) for a dataset, or a DataError if its images are too small.

    Uniform square images are stored at their native size (CIFAR: 32) unless that is
    over twice what is needed; others are fitted to the evaluation resize of the
    image size (224 -> 256, 32 -> 32).
    Images too small for ``image_size`` (median shorter side below it) need an
    explicit ``storage_size``: upscaling is a choice the user makes, not a default.
    """
    uniform = probe["uniform"]
    native = uniform[0] if isinstance(uniform, list) and uniform[0] == uniform[1] else None
    if image_size is None:
        reference = storage_size or native
        image_size = reference if reference is not None and reference <= DEFAULT_IMAGE_SIZE else DEFAULT_IMAGE_SIZE
    if storage_size is not None:
        if storage_size < image_size:
            raise DataError(
                f"storage size {storage_size} px is smaller than the image size {image_size} px (for {root})",
                hint="the storage size is the resolution images are decoded to; make it at least the image size",
            )
        return image_size, storage_size
    typical = int(probe.get("median_short", probe["max_short"]))  # type: ignore[call-overload]
    if probe.get("readable", 1) and typical < image_size:
        what = f"{native}x{native} px" if native else f"typically {typical} px on the shorter side"
        raise DataError(
            f"the images in {root} are {what}, smaller than the requested image size {image_size} px",
            hint=(f"use an image size of at most {typical} px, or ask for an explicit upscale "
                  f"(storage_size={image_size}, CLI --resize {image_size}) if you really want {image_size} px inputs"),
        )
    wanted = eval_resize(image_size)
    if native is not None and native <= MAX_NATIVE_FACTOR * wanted:
        return image_size, native
    return image_size, wanted


def warn_skipped(where: object, skipped: Sequence[tuple[str, str]], total: int) -> None:
    """One warning per open listing the first few unreadable files (all are in ``.skipped``)."""
    if not skipped:
        return
    shown = "; ".join(f"{p} ({r})" for p, r in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    warnings.warn(
        f"{where}: skipped {len(skipped)} of {total} image files that could not be decoded: {shown}{more}. "
        "The dataset's .skipped lists them all; delete or re-save them to silence this warning.",
        DataWarning, stacklevel=3,
    )
    for p, r in skipped:
        log.debug("skipped %s: %s", p, r)


def load_image_folder(root: str | os.PathLike[str], image_size: int | None = None,
                      storage_size: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
                      classes: Sequence[str] | None = None, workers: int | None = None) -> FolderData:
    """List, validate and decode (or load from cache) an ImageFolder."""
    image_size = requested = check_size("image size", image_size, "--image-size")
    storage_size = check_size("storage size", storage_size, "--resize")
    listing = list_image_folder(root, classes)
    store = _cache.ImageCache(cache_dir)
    probe_prefix = f"sizes-{_cache.digest(str(listing.root), 12)}-"
    probe_name = probe_prefix + listing.contents_key()
    if storage_size is not None:  # explicit resize: the image sizes do not matter
        probe: dict[str, object] | None = {"uniform": None, "max_short": 0}
        exact = True
    else:
        probe = store.get_json(probe_name)
        exact = probe is not None
        if probe is None:
            probe = sample_sizes(listing)
    image_size, size = resolve_sizes(listing.root, probe, image_size, storage_size)
    while True:
        prefix = f"img-{_cache.digest([str(listing.root), size], 12)}-"
        name = prefix + _cache.digest([listing.contents_key(), size])
        entry = store.load(name)
        from_cache = entry is not None
        if entry is None:
            entry = store.build(
                name, files=listing.files, paths=listing.paths(), labels=listing.labels, classes=listing.classes,
                size=size, decode=decode_image, workers=workers, replaces=prefix,
                meta={"root": str(listing.root)}, desc=f"decoding {listing.root.name}",
            )
        if exact or storage_size is not None:
            break
        # First decode: every size is known now. Record it, and check the guess from the sample.
        summary = size_summary(entry.infos or [])
        store.put_json(probe_name, summary)
        store.remove_old(probe_prefix, keep=probe_name)
        exact = True
        if not summary["readable"]:
            break
        image_size, right = resolve_sizes(listing.root, summary, requested, None)
        if right == size:
            break
        log.info("%s: images differ in size; re-decoding at %d px instead of %d px", listing.root, right, size)
        store.remove(name)
        size = right
    warn_skipped(listing.root, entry.skipped, len(entry.files))
    if len(entry.rows) == 0:
        raise DataError(f"none of the {len(entry.files)} image files in {listing.root} can be decoded",
                        hint="check that they are real images (open one in an image viewer)")
    return FolderData(
        images=entry.images, labels=entry.labels, rows=entry.rows, classes=entry.classes, files=entry.files,
        skipped=[(str(listing.root / p), r) for p, r in entry.skipped], image_size=image_size,
        storage_size=size, root=listing.root, from_cache=from_cache,
    )
