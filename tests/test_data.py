"""Tests for mobile_compress.data: transforms, readers, the cache and open_dataset.

Real images are written with Pillow into tmp_path; the built-in dataset is the real
scikit-learn digits. The slow test reads CIFAR-10 only when MOBILE_COMPRESS_CIFAR10
points at the tarball or the unpacked folder.
"""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mobile_compress.data import (
    CIFAR10, DIGITS, IMAGENET, DataError, DataWarning, Normalization, compute_normalization,
    eval_transform, open_dataset, train_transform,
)
from mobile_compress.data import builtin, cache, folder
from mobile_compress.data import transforms as T
from mobile_compress.errors import UserError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers

def solid(h: int, w: int, color: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A colour-coded image with a little texture (so JPEG has something to encode)."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), dtype=np.int16)
    img[:] = color
    img += rng.integers(-10, 11, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt, quality=95)
    return path


RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


def make_folder(root: Path, per_class: int = 6) -> Path:
    """cat: red JPEGs 30x40 (h x w), dog: blue PNGs 50x50, both real Pillow files."""
    for i in range(per_class):
        save(root / "cat" / f"c{i:02d}.jpg", solid(30, 40, RED, i))
        save(root / "dog" / f"d{i:02d}.png", solid(50, 50, BLUE, i))
    return root


def add_corrupt(root: Path) -> list[Path]:
    good = io.BytesIO()
    Image.fromarray(solid(64, 64, RED)).save(good, format="JPEG")
    truncated = root / "cat" / "truncated.jpg"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    garbage = root / "dog" / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes())
    return [truncated, garbage]


def uniform_folder(root: Path, size: int, classes: dict[str, tuple[int, int, int]], per_class: int,
                   ext: str = "png") -> Path:
    for name, color in classes.items():
        for i in range(per_class):
            save(root / name / f"{i:03d}.{ext}", solid(size, size, color, i))
    return root


class CountingDecode:
    """Wraps folder.decode_image and counts calls (in-process decoding only: workers=1)."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = folder.decode_image

    def __call__(self, path: str, size: int):
        self.calls += 1
        return self.real(path, size)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingDecode:
    c = CountingDecode()
    monkeypatch.setattr(folder, "decode_image", c)
    return c


# --------------------------------------------------------------------------- normalization

def test_normalization_roundtrip_and_validation() -> None:
    n = Normalization((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    d = n.to_dict()
    assert d == {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    assert Normalization.from_dict(d) == n
    assert Normalization.from_dict(IMAGENET.to_dict()) == IMAGENET
    with pytest.raises(DataError, match="std must be positive"):
        Normalization((0, 0, 0), (1, 0, 1))
    with pytest.raises(DataError, match="3 "):
        Normalization((0, 0), (1, 1, 1))
    with pytest.raises(DataError, match="'mean' and 'std'"):
        Normalization.from_dict({"mean": [0, 0, 0]})
    assert issubclass(DataError, UserError)
    assert IMAGENET.mean == (0.485, 0.456, 0.406) and CIFAR10.std[2] == pytest.approx(0.2616)


def test_compute_normalization_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(50, 8, 8, 3), dtype=np.uint8)
    n = compute_normalization(imgs, batch=7)
    x = imgs.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(n.mean, x.mean(0), atol=1e-4)
    np.testing.assert_allclose(n.std, x.std(0), atol=1e-4)


# --------------------------------------------------------------------------- transforms

def grid(h: int, w: int) -> np.ndarray:
    """Pixel (y, x) = (y, x, y + x) so crops can be located exactly."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([y, x, y + x], axis=-1).astype(np.uint8)


def test_resize_shorter_side_exact_and_identity() -> None:
    img = solid(40, 80, RED)
    assert T.Resize(20)(img).shape == (20, 40, 3)
    assert T.Resize(20)(solid(90, 30, RED)).shape == (60, 20, 3)
    assert T.Resize((10, 12))(img).shape == (10, 12, 3)
    same = solid(32, 32, RED)
    assert T.Resize(32)(same) is same  # no Pillow round trip when the size matches
    flat = np.full((10, 20, 3), 77, np.uint8)
    assert (T.Resize(5)(flat) == 77).all()


def test_center_crop_coordinates_and_padding() -> None:
    img = grid(10, 12)
    out = T.CenterCrop(4)(img)
    np.testing.assert_array_equal(out, img[3:7, 4:8])
    out = T.CenterCrop((5, 3))(img)
    np.testing.assert_array_equal(out, img[2:7, 4:7])  # round(2.5) = 2, round(4.5) = 4 (banker's, as torchvision)
    small = np.full((2, 2, 3), 9, np.uint8)
    out = T.CenterCrop(4)(small)
    assert out.shape == (4, 4, 3) and out[0, 0, 0] == 0 and (out[1:3, 1:3] == 9).all()


def test_random_crop_window_matches_params_and_padding_is_zero() -> None:
    img = grid(32, 32)
    crop = T.RandomCrop(24, padding=0, rng=5)
    for _ in range(20):
        out = crop(img)
        top, left = int(out[0, 0, 0]), int(out[0, 0, 1])  # grid pixels carry their coordinates
        assert 0 <= top <= 8 and 0 <= left <= 8
        np.testing.assert_array_equal(out, img[top:top + 24, left:left + 24])
    # padded window at the corner: 4 zero rows/cols then the image
    out = T.crop_padded(img + 1, -4, -4, 32, 32)
    assert (out[:4] == 0).all() and (out[:, :4] == 0).all()
    np.testing.assert_array_equal(out[4:, 4:], (img + 1)[:28, :28])
    # with padding: the window of the zero-padded image (np.pad is the reference)
    img1 = img + 1
    padded = np.pad(img1, ((4, 4), (4, 4), (0, 0)))
    pcrop = T.RandomCrop(32, padding=4, rng=3)
    for _ in range(30):
        out = pcrop(img1)
        matches = [(t, l) for t in range(9) for l in range(9)
                   if np.array_equal(out, padded[t:t + 32, l:l + 32])]
        assert len(matches) == 1
    # all 9 x 9 offsets of a pad-4 crop of 32 occur
    pc = T.RandomCrop(32, padding=4, rng=0)
    seen = {pc.params(32, 32) for _ in range(3000)}
    assert seen == {(t, l) for t in range(9) for l in range(9)}
    with pytest.raises(ValueError, match="does not fit"):
        T.RandomCrop(40)(img)


def test_random_transforms_reproducible_by_seed() -> None:
    img = grid(32, 32)
    ca, cb, cc = T.RandomCrop(32, 4, rng=1), T.RandomCrop(32, 4, rng=1), T.RandomCrop(32, 4, rng=2)
    sa = [ca.params(32, 32) for _ in range(30)]
    assert sa == [cb.params(32, 32) for _ in range(30)]
    assert sa != [cc.params(32, 32) for _ in range(30)]
    t1 = train_transform(32, DIGITS, seed=7)
    t2 = train_transform(32, DIGITS, seed=7)
    t3 = train_transform(32, DIGITS, seed=8)
    o1 = torch.stack([t1(img) for _ in range(10)])
    assert torch.equal(o1, torch.stack([t2(img) for _ in range(10)]))
    assert not torch.equal(o1, torch.stack([t3(img) for _ in range(10)]))
    # reseed restarts the streams deterministically
    t1.reseed(123)
    t2.reseed(123)
    assert torch.equal(t1(img), t2(img))


def test_horizontal_flip() -> None:
    img = grid(4, 6)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(img), img[:, ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(img), img)
    f = T.RandomHorizontalFlip(0.5, rng=0)
    flips = sum(f(img)[0, 0, 1] == 5 for _ in range(2000))
    assert 900 < flips < 1100


def test_random_resized_crop_bounds_and_full_crop() -> None:
    img = grid(60, 80)
    rrc = T.RandomResizedCrop(16, rng=0)
    for _ in range(200):
        top, left, ch, cw = rrc.params(60, 80)
        assert 0 <= top and top + ch <= 60 and 0 <= left and left + cw <= 80
        assert 0.08 * 4800 * 0.7 <= ch * cw <= 4800
        assert 3 / 4 * 0.8 <= cw / ch <= 4 / 3 * 1.25 or (ch, cw) == (60, 80)
    assert rrc(img).shape == (16, 16, 3)
    whole = T.RandomResizedCrop(20, scale=(1.0, 1.0), ratio=(1.0, 1.0), rng=0)
    sq = grid(20, 20)
    np.testing.assert_array_equal(whole(sq), sq)  # the whole image at its own size: unchanged


def test_to_tensor_and_normalize_values() -> None:
    img = np.zeros((2, 3, 3), np.uint8)
    img[1, 2] = (255, 51, 0)
    t = T.ToTensor()(img)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    assert t[0, 1, 2] == 1.0 and t[1, 1, 2] == pytest.approx(0.2) and t[0, 0, 0] == 0
    norm = T.Normalize((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    out = norm(t)
    assert out[0, 1, 2] == pytest.approx(2.0) and out[1, 1, 2] == pytest.approx(-0.6) and out[2, 0, 0] == -0.5
    fused = T.Compose([T.ToTensor(), norm])
    assert fused._steps[0].__class__.__name__ == "_ToNormalizedTensor"
    torch.testing.assert_close(fused(img), out, atol=1e-6, rtol=0)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    n2 = T.Normalize.of(IMAGENET)
    torch.testing.assert_close(T.Compose([T.ToTensor(), n2])(big), n2(T.ToTensor()(big)), atol=1e-6, rtol=0)


def test_presets_small_and_large() -> None:
    small = train_transform(32, CIFAR10, seed=0)
    kinds = [type(t).__name__ for t in small.transforms]
    assert "RandomCrop" in kinds and "RandomResizedCrop" not in kinds
    assert small.transforms[kinds.index("RandomCrop")].padding == 4
    large = train_transform(224, IMAGENET, seed=0)
    assert "RandomResizedCrop" in [type(t).__name__ for t in large.transforms]
    assert large(solid(256, 300, RED)).shape == (3, 224, 224)
    # eval of a large image = shorter side to 256 then center 224
    img = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    ref = T.resample(img, 256, 341)
    ref = ref[16:240, 58:282]
    expect = (torch.from_numpy(ref.transpose(2, 0, 1).astype(np.float32) / 255)
              - torch.tensor(IMAGENET.mean)[:, None, None]) / torch.tensor(IMAGENET.std)[:, None, None]
    torch.testing.assert_close(eval_transform(224, IMAGENET)(img), expect, atol=1e-5, rtol=0)
    # small eval at native size: exactly normalize(pixels)
    px = grid(32, 32)
    out = eval_transform(32, DIGITS)(px)
    assert out[2, 5, 7].item() == pytest.approx(((12 / 255) - DIGITS.mean[2]) / DIGITS.std[2], abs=1e-5)


# --------------------------------------------------------------------------- builtin digits

def test_builtin_digits_real_and_deterministic() -> None:
    from sklearn.datasets import load_digits

    train = open_dataset("builtin", split="train", train=False)
    test = open_dataset("builtin:digits", split="test", train=False)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.classes == [str(i) for i in range(10)] and train.image_size == 32
    assert train.images.shape[1:] == (32, 32, 3)
    assert train.normalization == DIGITS
    x, y = train[0]
    assert x.shape == (3, 32, 32) and isinstance(y, int)
    # labels and pixels are sklearn's: downscaled back to 8x8 they match the originals
    sk = load_digits()
    tr_idx, te_idx = builtin.stratified_split(sk.target, 0.2)
    assert set(tr_idx).isdisjoint(te_idx) and len(tr_idx) == len(train)
    np.testing.assert_array_equal(train.labels, sk.target[tr_idx])
    np.testing.assert_array_equal(test.labels, sk.target[te_idx])
    small = np.stack([np.asarray(Image.fromarray(train.image(i)[:, :, 0]).resize((8, 8), Image.BOX))
                      for i in range(50)]).astype(float)
    corr = np.corrcoef(small.ravel(), sk.images[tr_idx[:50]].ravel())[0, 1]
    assert corr > 0.95
    assert train.images.std() > 50 and len(np.unique(train.images)) > 200  # real, varied pixels
    assert (np.bincount(test.labels) >= 35).all()  # stratified
    again = open_dataset("builtin", split="test", train=False, seed=99)
    np.testing.assert_array_equal(again.labels, test.labels)  # split ignores the augmentation seed


def test_digits_normalization_constant_is_its_train_statistics() -> None:
    train = builtin.load_builtin("digits", "train")
    got = compute_normalization(train.images)
    np.testing.assert_allclose(got.mean, DIGITS.mean, atol=2e-4)
    np.testing.assert_allclose(got.std, DIGITS.std, atol=2e-4)


def test_builtin_errors_and_explicit_resize() -> None:
    with pytest.raises(DataError, match="unknown built-in dataset 'mnist'"):
        open_dataset("builtin:mnist")
    big = open_dataset("builtin", image_size=64, storage_size=64, split="test")
    assert big.images.shape[1:] == (64, 64, 3) and big[0][0].shape == (3, 64, 64)


# --------------------------------------------------------------------------- image folders

def test_folder_reads_jpeg_png_sizes_and_skips_corrupt(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    bad = add_corrupt(root)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".DS_Store.jpg").write_bytes(b"hidden files are ignored")
    save(root / "cat" / "nested" / "deeper.jpg", solid(20, 20, RED))  # subfolders of a class count
    with pytest.warns(DataWarning, match=r"skipped 2 of 15 image files") as rec:
        ds = open_dataset(root, split="all", image_size=24, cache_dir=tmp_path / "cache", train=False, workers=1)
    msg = str(rec[0].message)
    assert "truncated.jpg" in msg and "garbage.jpg" in msg
    assert sorted(Path(p).name for p, _ in ds.skipped) == ["garbage.jpg", "truncated.jpg"]
    assert all(reason for _, reason in ds.skipped)
    assert {str(b) for b in bad} == {p for p, _ in ds.skipped}
    assert ds.classes == ["cat", "dog"] and len(ds) == 13
    assert list(np.bincount(ds.labels)) == [7, 6]
    # mixed sizes: stored square at eval_resize(24) = 24; colours prove label <-> pixels
    assert ds.images.shape[1:] == (24, 24, 3)
    for i in range(len(ds)):
        r, _, b = ds.image(i).reshape(-1, 3).mean(0)
        assert (r > b) == (ds.labels[i] == 0)
    x, y = ds[0]
    assert x.shape == (3, 24, 24)
    with pytest.warns(DataWarning, match="skipped 2 of 15"):  # a cache hit still tells
        again = open_dataset(root, split="all", image_size=24, cache_dir=tmp_path / "cache", workers=1)
    assert again.skipped == ds.skipped


def test_misnamed_and_unusual_images_decode(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save(root / "a" / "png_named.jpg", solid(20, 20, RED), fmt="PNG")  # wrong extension
    save(root / "a" / "gray.png", np.full((20, 20), 200, np.uint8))  # mode L
    rgba = np.dstack([solid(20, 20, RED), np.full((20, 20), 128, np.uint8)])
    save(root / "b" / "alpha.png", rgba)  # mode RGBA
    save(root / "b" / "pal.gif", solid(20, 20, BLUE))  # palette
    ds = open_dataset(root, split="all", cache_dir=tmp_path / "c", workers=1)
    assert not ds.skipped and len(ds) == 4 and ds.images.shape == (4, 20, 20, 3)
    files = folder.list_image_folder(root).files
    px = {f: ds.images[i].reshape(-1, 3).mean(0) for i, f in enumerate(files)}
    assert px["a/png_named.jpg"][0] > 150 and np.allclose(px["a/gray.png"], 200, atol=1)
    assert px["b/alpha.png"][0] > 150 and px["b/pal.gif"][2] > 150


def test_cache_hit_does_not_decode_again(tmp_path: Path, counting: CountingDecode) -> None:
    root = make_folder(tmp_path / "data")
    first = open_dataset(root, split="all", image_size=24, cache_dir=tmp_path / "c", workers=1)
    assert counting.calls == 12
    second = open_dataset(root, split="all", image_size=24, cache_dir=tmp_path / "c", workers=1)
    assert counting.calls == 12  # nothing decoded
    assert isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(np.asarray(first.images), np.asarray(second.images))
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert sum(f.endswith(".npy") for f in files) == 1 and not any(".tmp" in f for f in files)


def test_cache_rebuilt_when_a_file_changes(tmp_path: Path, counting: CountingDecode) -> None:
    root = make_folder(tmp_path / "data")
    target = save(root / "cat" / "z.bmp", solid(30, 40, RED))  # BMP: same byte size after the edit
    kw = dict(split="all", image_size=24, cache_dir=tmp_path / "c", workers=1, train=False)
    a = open_dataset(root, **kw)
    assert counting.calls == 13
    row = folder.list_image_folder(root).files.index("cat/z.bmp")
    assert a.images[row].mean(axis=(0, 1))[0] > 150  # red
    size_before = target.stat().st_size
    save(target, solid(30, 40, GREEN))
    assert target.stat().st_size == size_before  # only the mtime tells
    os.utime(target, ns=(time.time_ns(), target.stat().st_mtime_ns + 10**9))
    b = open_dataset(root, **kw)
    assert counting.calls == 26  # rebuilt
    assert b.images[row].mean(axis=(0, 1))[1] > 150  # now green
    assert len(list((tmp_path / "c").glob("img-*.npy"))) == 1  # the stale entry was removed
    (root / "dog" / "d00.png").unlink()
    c = open_dataset(root, **kw)
    assert len(c) == 12 and counting.calls == 26 + 12
    open_dataset(root, **kw)
    assert counting.calls == 38


def test_cache_env_var_and_pool_matches_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "data", per_class=10)
    monkeypatch.setenv("MOBILE_COMPRESS_CACHE", str(tmp_path / "envcache"))
    assert cache.default_cache_dir() == tmp_path / "envcache" / "images"
    serial = open_dataset(root, split="all", image_size=24, workers=1, train=False)
    assert list((tmp_path / "envcache" / "images").glob("img-*.npy"))
    pooled = open_dataset(root, split="all", image_size=24, workers=2, train=False,
                          cache_dir=tmp_path / "other")
    np.testing.assert_array_equal(np.asarray(serial.images), np.asarray(pooled.images))
    np.testing.assert_array_equal(serial.labels, pooled.labels)
    monkeypatch.delenv("MOBILE_COMPRESS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.default_cache_dir() == tmp_path / "home" / ".cache" / "mobile-compress" / "images"


def test_killed_build_leaves_no_half_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "data")
    real = folder.decode_image
    n = {"calls": 0}

    def dies(path: str, size: int):
        n["calls"] += 1
        if n["calls"] == 5:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of the first decode
        return real(path, size)

    monkeypatch.setattr(folder, "decode_image", dies)
    with pytest.raises(KeyboardInterrupt):
        open_dataset(root, split="all", image_size=24, cache_dir=tmp_path / "c", workers=1)
    leftovers = [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith("img-") or ".tmp" in p.name]
    assert leftovers == []
    monkeypatch.setattr(folder, "decode_image", real)
    ds = open_dataset(root, split="all", image_size=24, cache_dir=tmp_path / "c", workers=1)
    assert len(ds) == 12


def test_crashing_decoder_process_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "data")
    real = folder.decode_image

    def crashes(path: str, size: int):
        if path.endswith("d03.png"):
            os._exit(3)  # what a segfaulting decoder looks like to the pool
        return real(path, size)

    monkeypatch.setattr(folder, "decode_image", crashes)
    with pytest.raises(DataError, match="decoding process died"):
        open_dataset(root, split="all", image_size=24, cache_dir=tmp_path / "c", workers=2)
    assert not list((tmp_path / "c").glob("img-*"))


def test_incomplete_cache_entry_is_a_miss(tmp_path: Path, counting: CountingDecode) -> None:
    root = make_folder(tmp_path / "data")
    open_dataset(root, split="all", image_size=24, cache_dir=tmp_path / "c", workers=1)
    (npy,) = (tmp_path / "c").glob("img-*.npy")
    npy.write_bytes(npy.read_bytes()[:200])  # damaged array
    ds = open_dataset(root, split="all", image_size=24, cache_dir=tmp_path / "c", workers=1)
    assert counting.calls == 24 and len(ds) == 12


def test_uniform_folder_keeps_native_size_and_rejects_upscale(tmp_path: Path) -> None:
    root = uniform_folder(tmp_path / "tiny", 8, {"a": RED, "b": BLUE}, 5)
    with pytest.raises(DataError) as e:
        open_dataset(root, image_size=32, cache_dir=tmp_path / "c")
    assert "8x8" in str(e.value) and "32" in str(e.value) and str(root) in str(e.value)
    assert "storage_size=32" in str(e.value)
    ok = open_dataset(root, split="all", image_size=32, storage_size=32, cache_dir=tmp_path / "c")
    assert ok.images.shape[1:] == (32, 32, 3) and ok[0][0].shape == (3, 32, 32)
    native = open_dataset(root, split="all", cache_dir=tmp_path / "c")
    assert native.storage_size == 8 and native.image_size == 8
    root16 = uniform_folder(tmp_path / "u16", 16, {"a": RED, "b": BLUE}, 3)
    ds = open_dataset(root16, split="all", image_size=12, cache_dir=tmp_path / "c")
    assert ds.storage_size == 16 and ds[0][0].shape == (3, 12, 12)
    far = open_dataset(root16, split="all", image_size=6, cache_dir=tmp_path / "c")
    assert far.storage_size == 6  # native is over twice what 6 px needs: stored at 6


def test_size_guess_from_sample_is_corrected(tmp_path: Path) -> None:
    root = uniform_folder(tmp_path / "d", 24, {"a": RED, "b": BLUE}, 20)
    # file index 2 is not among the sampled headers (np.linspace over 40 files)
    save(root / "a" / "002.png", solid(30, 50, RED))
    ds = open_dataset(root, split="all", image_size=16, cache_dir=tmp_path / "c", workers=1, train=False)
    assert ds.storage_size == 16  # mixed sizes -> fitted to image size, not native 24
    again = open_dataset(root, split="all", image_size=16, cache_dir=tmp_path / "c", workers=1, train=False)
    assert again.storage_size == 16 and len(list((tmp_path / "c").glob("img-*.npy"))) == 1


def test_split_layout_and_holdout(tmp_path: Path) -> None:
    root = tmp_path / "split"
    uniform_folder(root / "train", 12, {"ant": RED, "bee": BLUE, "cow": GREEN}, 4)
    uniform_folder(root / "test", 12, {"bee": BLUE, "cow": GREEN}, 2)  # no 'ant' images in test
    tr = open_dataset(root, split="train", cache_dir=tmp_path / "c")
    with pytest.warns(DataWarning, match=r"test has no folder for 1 class\(es\) of the training split \(ant\)"):
        te = open_dataset(root, split="test", cache_dir=tmp_path / "c")
    with pytest.warns(DataWarning, match="ant"):
        va = open_dataset(root, split="val", cache_dir=tmp_path / "c")  # no val/: the test images
    assert tr.classes == te.classes == ["ant", "bee", "cow"]
    assert len(tr) == 12 and len(te) == 4 and list(te.labels) == [1, 1, 2, 2] and len(va) == 4
    assert tr.train and not te.train
    with pytest.raises(DataError, match="already split"):
        open_dataset(root, split="all", cache_dir=tmp_path / "c")
    (root / "test" / "yak").mkdir()
    save(root / "test" / "yak" / "0.png", solid(12, 12, RED))
    with pytest.raises(DataError, match="yak"):
        open_dataset(root, split="test", cache_dir=tmp_path / "c")

    plain = uniform_folder(tmp_path / "plain", 12, {"a": RED, "b": BLUE}, 20)
    a = open_dataset(plain, split="train", cache_dir=tmp_path / "c", seed=1)
    b = open_dataset(plain, split="test", cache_dir=tmp_path / "c", seed=2)
    every = open_dataset(plain, split="all", cache_dir=tmp_path / "c")
    assert len(a) == 36 and len(b) == 4 and list(np.bincount(b.labels)) == [2, 2]
    assert set(a.rows).isdisjoint(b.rows) and set(a.rows) | set(b.rows) == set(every.rows)
    a2 = open_dataset(plain, split="train", cache_dir=tmp_path / "c", seed=3)
    np.testing.assert_array_equal(a.rows, a2.rows)


def test_split_layout_gets_the_flat_folder_checks(tmp_path: Path) -> None:
    """train/ + test/ is refused for what a flat folder is refused for: one class, an empty class folder."""
    c = tmp_path / "c"
    one = tmp_path / "one"
    uniform_folder(one / "train", 12, {"cat": RED}, 4)
    uniform_folder(one / "test", 12, {"cat": RED}, 2)
    for split in ("train", "test"):
        with pytest.raises(DataError, match="single class folder") as e:
            open_dataset(one, split=split, cache_dir=c)
        assert str(one / split) in str(e.value) and "at least 2 classes" in str(e.value)
        assert "add a folder of images for each other class" in e.value.hint
    holes = tmp_path / "holes"
    uniform_folder(holes / "train", 12, {"ant": RED, "bee": BLUE}, 4)
    uniform_folder(holes / "test", 12, {"ant": RED, "bee": BLUE}, 2)
    (holes / "train" / "cow").mkdir()
    with pytest.raises(DataError, match="without images in .*train: cow") as e:
        open_dataset(holes, split="train", cache_dir=c)
    assert "add images to them or remove them" in e.value.hint
    (holes / "train" / "cow").rmdir()
    (holes / "test" / "bee" / "000.png").unlink()
    (holes / "test" / "bee" / "001.png").unlink()
    with pytest.raises(DataError, match="without images in .*test: bee"):
        open_dataset(holes, split="test", cache_dir=c)
    # train/ and test/ holding images but no class folders: not two classes called "train" and "test"
    loose = tmp_path / "loose"
    for split in ("train", "test"):
        for i in range(3):
            save(loose / split / f"{i}.png", solid(12, 12, RED, i))
    with pytest.raises(DataError, match=r"train has no class subfolders \(3 images"):
        open_dataset(loose, split="train", cache_dir=c)
    # a flat folder with a class called "train" is still a flat folder
    vehicles = uniform_folder(tmp_path / "vehicles", 12, {"train": RED, "car": BLUE}, 3)
    assert open_dataset(vehicles, split="all", cache_dir=c).classes == ["car", "train"]


def test_train_on_a_one_class_split_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`train` on train/cat + test/cat used to report 100 % accuracy; now it stops before training."""
    from workflows.cli import main

    root = tmp_path / "one"
    uniform_folder(root / "train", 32, {"cat": RED}, 8)
    uniform_folder(root / "test", 32, {"cat": RED}, 2)
    code = main(["train", "--model", "resnet20", "--data", str(root), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--batch-size", "8", "--no-progress", "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "single class folder (cat)" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "best").exists()


def test_folder_errors_name_the_path_and_layout(tmp_path: Path) -> None:
    c = tmp_path / "c"
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="not found") as e:
        open_dataset(missing, cache_dir=c)
    assert str(missing) in str(e.value) and "<class>" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="is empty") as e:
        open_dataset(empty, cache_dir=c)
    assert "<root>/<class>/<image>" in str(e.value)
    loose = tmp_path / "loose"
    save(loose / "a.jpg", solid(10, 10, RED))
    with pytest.raises(DataError, match="no class subfolders"):
        open_dataset(loose, cache_dir=c)
    one = uniform_folder(tmp_path / "one", 16, {"only": RED}, 3)
    with pytest.raises(DataError, match="single class folder"):
        open_dataset(one, cache_dir=c)
    texts = tmp_path / "texts"
    for k in ("a", "b"):
        (texts / k).mkdir(parents=True)
        (texts / k / "x.heic").write_bytes(b"1234")
    with pytest.raises(DataError, match=r"no image files \(found only: 2 .heic\)"):
        open_dataset(texts, cache_dir=c)
    holes = uniform_folder(tmp_path / "holes", 16, {"a": RED, "b": BLUE}, 2)
    (holes / "c").mkdir()
    with pytest.raises(DataError, match="without images.*: c"):
        open_dataset(holes, cache_dir=c)
    allbad = tmp_path / "allbad"
    for k in ("a", "b"):
        (allbad / k).mkdir(parents=True)
        (allbad / k / "x.jpg").write_bytes(b"nope")
    with pytest.warns(DataWarning), pytest.raises(DataError, match="none of the 2 image files"):
        open_dataset(allbad, cache_dir=c, image_size=8)
    notnpz = tmp_path / "data.csv"
    notnpz.write_text("1,2")
    with pytest.raises(DataError, match="not a .npz"):
        open_dataset(notnpz, cache_dir=c)


@pytest.mark.parametrize("bad", [0, -3, 5000, 32.5, True, "32"])
def test_bad_image_sizes(tmp_path: Path, bad: object) -> None:
    root = uniform_folder(tmp_path / "d", 16, {"a": RED, "b": BLUE}, 2)
    with pytest.raises(DataError, match="image size"):
        open_dataset(root, image_size=bad, cache_dir=tmp_path / "c")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="image size"):
        open_dataset("builtin", image_size=bad)  # type: ignore[arg-type]


def test_bad_split_and_cache_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'validation'"):
        open_dataset("builtin", split="validation")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    root = uniform_folder(tmp_path / "d", 16, {"a": RED, "b": BLUE}, 2)
    with pytest.raises(DataError, match="cache folder"):
        open_dataset(root, cache_dir=blocker / "sub")


# --------------------------------------------------------------------------- npz

def test_npz_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    y = np.arange(20) % 4
    f = tmp_path / "hwc.npz"
    np.savez(f, x=x, y=y, classes=np.array(["w", "x", "y", "z"]))
    ds = open_dataset(f, split="all", train=False)
    assert ds.classes == ["w", "x", "y", "z"] and len(ds) == 20 and ds.image_size == 16
    np.testing.assert_array_equal(ds.image(3), x[3])
    assert ds.normalization == IMAGENET
    tr, te = open_dataset(f, split="train"), open_dataset(f, split="test")
    assert len(tr) + len(te) == 20 and set(tr.rows).isdisjoint(te.rows)

    chw = tmp_path / "chw.npz"
    np.savez(chw, images=x.transpose(0, 3, 1, 2), labels=y)
    np.testing.assert_array_equal(open_dataset(chw, split="all").image(5), x[5])
    gray = tmp_path / "gray.npz"
    np.savez(gray, x=x[..., 0], y=y)
    g = open_dataset(gray, split="all").image(2)
    assert g.shape == (16, 16, 3) and (g[..., 1] == x[2, ..., 0]).all()
    keras = tmp_path / "keras.npz"
    np.savez(keras, x_train=x[:15], y_train=y[:15], x_test=x[15:], y_test=y[15:])
    assert len(open_dataset(keras, split="train")) == 15 and len(open_dataset(keras, split="test")) == 5
    assert open_dataset(keras, split="test").classes == ["0", "1", "2", "3"][: int(y[15:].max()) + 1]


def test_npz_errors(tmp_path: Path) -> None:
    x = np.zeros((4, 8, 8, 3), np.uint8)
    y = np.array([0, 1, 0, 1])

    def write(name: str, **arrays) -> Path:
        p = tmp_path / name
        np.savez(p, **arrays)
        return p

    with pytest.raises(DataError, match=r"no images .*'data', 'y'") as e:
        open_dataset(write("a.npz", data=x, y=y))
    assert "a.npz" in str(e.value)
    with pytest.raises(DataError, match=r"no labels .*'target'"):
        open_dataset(write("b.npz", x=x, target=y))
    with pytest.raises(DataError, match=r"dtype float32.*uint8"):
        open_dataset(write("c.npz", x=x.astype(np.float32), y=y))
    with pytest.raises(DataError, match=r"shape \(4, 8, 8, 5\)"):
        open_dataset(write("d.npz", x=np.zeros((4, 8, 8, 5), np.uint8), y=y))
    with pytest.raises(DataError, match="4 images but 'y' has 3 labels"):
        open_dataset(write("e.npz", x=x, y=y[:3]))
    with pytest.raises(DataError, match="integer class indices"):
        open_dataset(write("f.npz", x=x, y=y.astype(np.float64) + 0.5))
    with pytest.raises(DataError, match="'classes' has 1 names"):
        open_dataset(write("g.npz", x=x, y=y, classes=np.array(["only"])))
    with pytest.raises(DataError, match="without pickle"):
        open_dataset(write("h.npz", x=x, y=y, classes=np.array(["a", None], dtype=object)))
    broken = tmp_path / "i.npz"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="not a readable .npz"):
        open_dataset(broken)
    with pytest.raises(DataError, match="smaller than the requested image size 32"):
        open_dataset(write("j.npz", x=x, y=y), image_size=32)
    with pytest.raises(DataError, match="split 'test' of .*l.npz is empty"):
        open_dataset(write("l.npz", x=x[:2], y=y[:2]), split="test")
    onehot = write("k.npz", x=x, y=np.eye(2, dtype=np.int64)[y])
    np.testing.assert_array_equal(open_dataset(onehot, split="all").labels, y)


# --------------------------------------------------------------------------- dataset / loader

def test_dataloader_workers_get_different_reproducible_augmentation() -> None:
    ds = open_dataset("builtin", split="train", seed=0)

    def run() -> torch.Tensor:
        torch.manual_seed(0)
        loader = DataLoader(ds, batch_size=1, sampler=[5] * 16, num_workers=2)
        return torch.cat([x for x, _ in loader])

    a, b = run(), run()
    assert torch.equal(a, b)  # reproducible under torch.manual_seed
    # batches alternate between the two workers; identical streams would repeat in pairs
    assert not all(torch.equal(a[i], a[i + 1]) for i in range(0, 16, 2))
    assert len({tuple(v.flatten()[:64].tolist()) for v in a}) > 4


def test_dataset_reseed_restarts_augmentation() -> None:
    ds = open_dataset("builtin", split="train", seed=0)
    ds.reseed(11)
    first = torch.stack([ds[3][0] for _ in range(6)])
    ds.reseed(11)
    assert torch.equal(first, torch.stack([ds[3][0] for _ in range(6)]))
    ds.reseed(12)
    assert not torch.equal(first, torch.stack([ds[3][0] for _ in range(6)]))


def test_loader_batches_and_pickle_reopens_memmap(tmp_path: Path) -> None:
    root = uniform_folder(tmp_path / "d", 16, {"a": RED, "b": BLUE}, 20)
    ds = open_dataset(root, split="train", cache_dir=tmp_path / "c", seed=0)
    x, y = next(iter(DataLoader(ds, batch_size=8, shuffle=False)))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    blob = pickle.dumps(ds)
    assert len(blob) < ds.images.nbytes  # the array is re-opened, not copied
    back = pickle.loads(blob)
    assert isinstance(back.images, np.memmap)
    np.testing.assert_array_equal(back.image(3), ds.image(3))
    ev = ds.with_transform(eval_transform(16, ds.normalization), train=False)
    assert torch.equal(ev[0][0], ev[0][0]) and not ev.train and ds.train  # eval: deterministic
    assert not all(torch.equal(ds[0][0], ds[0][0]) for _ in range(5))  # train: augmented


def test_data_layer_imports_no_other_layer() -> None:
    code = ("import sys, mobile_compress.data; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('models', 'converters', 'profiler', 'android_harness') or m.startswith('workflows.cli')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- slow: CIFAR-10

@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = os.environ.get("MOBILE_COMPRESS_CIFAR10")
    if not src:
        pytest.skip("set MOBILE_COMPRESS_CIFAR10 to cifar10.tar.gz or its unpacked folder")
    path = Path(src)
    if path.is_file():
        out = tmp_path_factory.mktemp("cifar10")
        with tarfile.open(path) as tar:
            tar.extractall(out, filter="data")
        path = out
    if (path / "cifar10").is_dir():
        path = path / "cifar10"
    return path


@pytest.mark.slow
def test_cifar10_cache_and_loader(cifar10_root: Path, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    train = open_dataset(cifar10_root, split="train", image_size=32, cache_dir=tmp_path, normalization=CIFAR10)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = open_dataset(cifar10_root, split="train", image_size=32, cache_dir=tmp_path, normalization=CIFAR10)
    second = time.perf_counter() - t0
    test = open_dataset(cifar10_root, split="test", image_size=32, cache_dir=tmp_path)
    assert len(train) == 50_000 and len(test) == 10_000 and train.storage_size == 32
    assert train.classes[0] == "airplane" and list(np.bincount(train.labels)) == [5000] * 10
    assert second < first / 3 and second < 5
    stats = compute_normalization(np.asarray(again.images[::5]))  # every class
    np.testing.assert_allclose(stats.mean, CIFAR10.mean, atol=0.02)  # JPEG copy of the real data
    n = 0
    for x, _ in DataLoader(train, batch_size=128, shuffle=True, num_workers=0):
        n += x.shape[0]
        if n >= 5000:
            break
    assert x.shape[1:] == (3, 32, 32)
    print(f"\ncifar10: first open {first:.1f}s, cached {second:.2f}s")


def test_builtin_renders_at_a_large_requested_size():
    ds = open_dataset("builtin", "test", image_size=224, train=False)
    image, _ = ds[0]
    assert tuple(image.shape) == (3, 224, 224)
    small = open_dataset("builtin", "test", image_size=32, train=False)
    assert len(ds) == len(small) and list(ds.labels) == list(small.labels)
