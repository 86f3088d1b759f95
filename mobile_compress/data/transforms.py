"""Image transforms on HWC uint8 numpy arrays (torchvision is not available here).

Training runs on a couple of CPU cores, so the per-sample path stays in numpy:
crops and flips are slices, ``Resize`` returns its input untouched when the size
already matches, and Pillow is only used when pixels really have to be resampled.
Random transforms draw from their own ``numpy.random.Generator`` so a run is
reproducible from a seed; ``reseed`` gives each DataLoader worker its own stream.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from mobile_compress.data.normalization import Normalization

#: Images at most this many pixels wide are "small" (CIFAR-like): pad-and-crop
#: augmentation and no resize-then-crop at evaluation.
SMALL_IMAGE_MAX = 64
#: Evaluation of large images resizes the shorter side to ``image_size / EVAL_CROP``
#: and center-crops ``image_size`` (224 -> 256 -> 224, the ImageNet convention).
EVAL_CROP = 0.875

_INTERP = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "lanczos": Image.LANCZOS, "box": Image.BOX}


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def resample(img: np.ndarray, height: int, width: int, interpolation: str = "bilinear",
             box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Resize ``img`` (or the ``box`` = (left, top, right, bottom) part of it) with Pillow."""
    pil = Image.fromarray(np.ascontiguousarray(img))
    out = pil.resize((width, height), _INTERP[interpolation], box=box)
    return np.asarray(out)


class Transform:
    """Base class: ``__call__(img) -> img``."""

    def __call__(self, img: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "rng")
        return f"{type(self).__name__}({fields})"


class RandomTransform(Transform):
    """A transform with its own generator; ``reseed`` restarts its stream.

    Uniform numbers are drawn from the generator 1,024 at a time: one generator call
    costs microseconds, a list pop tens of nanoseconds, and the sequence is still a
    pure function of the seed.
    """

    _BATCH = 1024

    def __init__(self, rng: np.random.Generator | int | None = None) -> None:
        self.rng = _rng(rng)
        self._buf: list[float] = []

    def reseed(self, seed: int | np.random.SeedSequence) -> None:
        self.rng = np.random.default_rng(seed)
        self._buf = []

    def uniform(self) -> float:
        """Next number in [0, 1) of this transform's stream."""
        if not self._buf:
            self._buf = self.rng.random(self._BATCH).tolist()
        return self._buf.pop()

    def randint(self, n: int) -> int:
        """Uniform integer in [0, n)."""
        return min(int(self.uniform() * n), n - 1)


class Resize(Transform):
    """Shorter side to ``size`` keeping the aspect ratio (int), or exactly (h, w) (tuple).

    An image that already has the target size is returned as is (no Pillow round trip).
    """

    def __init__(self, size: int | tuple[int, int], interpolation: str = "bilinear") -> None:
        if interpolation not in _INTERP:
            raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {interpolation!r}")
        self.size = size if isinstance(size, tuple) else int(size)
        _size2(size)
        self.interpolation = interpolation

    def target(self, h: int, w: int) -> tuple[int, int]:
        if isinstance(self.size, tuple):
            return self.size
        s = self.size
        if h <= w:
            return s, max(1, int(s * w / h))
        return max(1, int(s * h / w)), s

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        th, tw = self.target(h, w)
        if (th, tw) == (h, w):
            return img
        return resample(img, th, tw, self.interpolation)


class CenterCrop(Transform):
    """Central (h, w) window; zero-pads first when the image is smaller (as torchvision)."""

    def __init__(self, size: int | tuple[int, int]) -> None:
        self.size = _size2(size)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        ch, cw = self.size
        h, w = img.shape[:2]
        if (h, w) == (ch, cw):
            return img
        if h < ch or w < cw:
            ph, pw = max(ch - h, 0), max(cw - w, 0)
            pad = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)] + [(0, 0)] * (img.ndim - 2)
            img = np.pad(img, pad)
            h, w = img.shape[:2]
        top = int(round((h - ch) / 2.0))
        left = int(round((w - cw) / 2.0))
        return img[top:top + ch, left:left + cw]


class RandomCrop(RandomTransform):
    """Random (h, w) window of the image zero-padded by ``padding`` on every side.

    The padded image is never built: the window is a slice when it lies inside the
    image, otherwise the overlap is copied into a zero array.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0,
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.size = _size2(size)
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def params(self, h: int, w: int) -> tuple[int, int]:
        """Top-left corner of the window in padded coordinates."""
        ch, cw = self.size
        p = self.padding
        if h + 2 * p < ch or w + 2 * p < cw:
            raise ValueError(f"RandomCrop of {self.size} does not fit a {h}x{w} image padded by {p}")
        return self.randint(h + 2 * p - ch + 1), self.randint(w + 2 * p - cw + 1)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        top, left = self.params(h, w)
        return crop_padded(img, top - self.padding, left - self.padding, *self.size)


def crop_padded(img: np.ndarray, y0: int, x0: int, ch: int, cw: int) -> np.ndarray:
    """Window [y0, y0+ch) x [x0, x0+cw) of ``img``; pixels outside it are zero."""
    h, w = img.shape[:2]
    if y0 >= 0 and x0 >= 0 and y0 + ch <= h and x0 + cw <= w:
        return img[y0:y0 + ch, x0:x0 + cw]
    out = np.zeros((ch, cw) + img.shape[2:], dtype=img.dtype)
    sy0, sy1 = max(y0, 0), min(y0 + ch, h)
    sx0, sx1 = max(x0, 0), min(x0 + cw, w)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out


class RandomResizedCrop(RandomTransform):
    """Crop a random area/aspect window and resize it to (h, w) (the torchvision algorithm)."""

    def __init__(self, size: int | tuple[int, int], scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), interpolation: str = "bilinear",
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.size = _size2(size)
        if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"bad scale {scale} or ratio {ratio}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.interpolation = interpolation

    def params(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, left, crop_h, crop_w): 10 random tries, then a ratio-clamped center crop."""
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * self.uniform())
            aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * self.uniform())
            cw = int(round(math.sqrt(target_area * aspect)))
            ch = int(round(math.sqrt(target_area / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = self.randint(h - ch + 1)
                left = self.randint(w - cw + 1)
                return top, left, ch, cw
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            ch, cw = h, w
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        top, left, ch, cw = self.params(h, w)
        if (ch, cw) == self.size:
            return img[top:top + ch, left:left + cw]
        return resample(img, self.size[0], self.size[1], self.interpolation, box=(left, top, left + cw, top + ch))


class RandomHorizontalFlip(RandomTransform):
    """Mirror left-right with probability ``p`` (a view, no copy)."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if self.uniform() < self.p:
            return img[:, ::-1]
        return img


class ToTensor(Transform):
    """HWC uint8 array -> float32 CHW tensor in [0, 1]."""

    def __call__(self, img: np.ndarray) -> torch.Tensor:
        if img.ndim == 2:
            img = img[:, :, None]
        x = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
        x *= np.float32(1.0 / 255.0)
        return torch.from_numpy(x)


class Normalize(Transform):
    """``(x - mean) / std`` per channel of a CHW tensor (or array)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        self._mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        self._inv_std = (1.0 / np.asarray(self.std, dtype=np.float32))[:, None, None]

    @classmethod
    def of(cls, normalization: Normalization) -> "Normalize":
        return cls(normalization.mean, normalization.std)

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        if isinstance(x, torch.Tensor):
            return (x - torch.from_numpy(self._mean)) * torch.from_numpy(self._inv_std)
        return (x - self._mean) * self._inv_std


class _ToNormalizedTensor(Transform):
    """``Normalize(ToTensor(img))`` in one numpy pass (what Compose runs for that pair)."""

    def __init__(self, normalize: Normalize) -> None:
        self._scale = (normalize._inv_std / 255.0).astype(np.float32)
        self._shift = (normalize._mean * normalize._inv_std).astype(np.float32)

    def __call__(self, img: np.ndarray) -> torch.Tensor:
        if img.ndim == 2:
            img = img[:, :, None]
        x = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
        x *= self._scale
        x -= self._shift
        return torch.from_numpy(x)


class Compose(Transform):
    """Apply transforms in order; ToTensor followed by Normalize runs fused."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)
        steps: list[Callable[[Any], Any]] = []
        i = 0
        while i < len(self.transforms):
            t = self.transforms[i]
            nxt = self.transforms[i + 1] if i + 1 < len(self.transforms) else None
            if type(t) is ToTensor and type(nxt) is Normalize:
                steps.append(_ToNormalizedTensor(nxt))
                i += 2
                continue
            steps.append(t)
            i += 1
        self._steps = steps

    def __call__(self, img: Any) -> Any:
        for t in self._steps:
            img = t(img)
        return img

    def reseed(self, seed: int | np.random.SeedSequence) -> None:
        """Give every random transform inside an independent stream derived from ``seed``."""
        reseed(self, seed)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])"


def random_transforms(transform: Any) -> list[RandomTransform]:
    """All RandomTransforms in ``transform`` (nested Composes included), in order."""
    if isinstance(transform, RandomTransform):
        return [transform]
    if isinstance(transform, Compose):
        return [r for t in transform.transforms for r in random_transforms(t)]
    return []


def reseed(transform: Any, seed: int | np.random.SeedSequence) -> None:
    """Reseed every random transform in ``transform`` from one seed (independent children)."""
    found = random_transforms(transform)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    for t, child in zip(found, ss.spawn(len(found))):
        t.reseed(child)


def _check_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    return int(image_size)


def crop_padding(image_size: int) -> int:
    """Padding of the small-image random crop: 4 px at 32 and 64 px (CIFAR), less below 32."""
    return min(4, image_size // 8)


def train_transform(image_size: int, normalization: Normalization,
                    seed: int | np.random.Generator | None = None, flip: bool = True) -> Compose:
    """Augmentation for training.

    Small images (<= 64 px): square to ``image_size`` (identity when already that size),
    random crop with padding 4, horizontal flip. Larger: random-resized-crop + flip.
    ``flip=False`` leaves out the flip, for classes that are not mirror-symmetric (digits).
    """
    image_size = _check_size(image_size)
    if isinstance(seed, np.random.Generator):
        ss = np.random.SeedSequence(int(seed.integers(2**63)))
    else:
        ss = np.random.SeedSequence(seed)
    crop_seed, flip_seed = ss.spawn(2)
    if image_size <= SMALL_IMAGE_MAX:
        geometry: list[Transform] = [
            Resize(image_size), CenterCrop(image_size),
            RandomCrop(image_size, padding=crop_padding(image_size), rng=np.random.default_rng(crop_seed)),
        ]
    else:
        geometry = [RandomResizedCrop(image_size, rng=np.random.default_rng(crop_seed))]
    mirror: list[Transform] = [RandomHorizontalFlip(0.5, rng=np.random.default_rng(flip_seed))] if flip else []
    return Compose(geometry + mirror + [ToTensor(), Normalize.of(normalization)])


def eval_resize(image_size: int) -> int:
    """Shorter side before the evaluation center crop."""
    image_size = _check_size(image_size)
    return image_size if image_size <= SMALL_IMAGE_MAX else int(round(image_size / EVAL_CROP))


def eval_transform(image_size: int, normalization: Normalization) -> Compose:
    """Deterministic preprocessing for evaluation (and the export reference).

    Large images: shorter side to ``image_size / 0.875``, center crop. Small images:
    shorter side to ``image_size`` (identity when already that size), center crop.
    """
    return Compose([Resize(eval_resize(image_size)), CenterCrop(image_size),
                    ToTensor(), Normalize.of(normalization)])
