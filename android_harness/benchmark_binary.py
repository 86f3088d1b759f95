"""Finding TFLite's official ``benchmark_model`` for a device's ABI, and never guessing one.

Order: the explicit path, ``$MOBILE_COMPRESS_BENCHMARK_MODEL`` (a file),
``$MOBILE_COMPRESS_BENCHMARK_MODEL_DIR/<abi>/benchmark_model``, then the cache
``$MOBILE_COMPRESS_CACHE/benchmark_model/<abi>/benchmark_model`` (default
``~/.cache/mobile-compress``). When none exists the error names the exact download for
that ABI (TFLite's nightly prebuilts, from its performance-measurement docs); a binary
for another ABI is never substituted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mobile_compress.data import ENV_CACHE
from mobile_compress.errors import UserError

ENV_FILE = "MOBILE_COMPRESS_BENCHMARK_MODEL"
ENV_DIR = "MOBILE_COMPRESS_BENCHMARK_MODEL_DIR"
NIGHTLY = "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly/latest/"
# TFLite publishes native Android binaries for these two ABIs only (tensorflow/lite/g3doc/performance/measurement.md).
PREBUILT = {"arm64-v8a": NIGHTLY + "android_aarch64_benchmark_model",
            "armeabi-v7a": NIGHTLY + "android_arm_benchmark_model"}
BAZEL_CONFIG = {"arm64-v8a": "android_arm64", "armeabi-v7a": "android_arm", "x86_64": "android_x86_64",
                "x86": "android_x86"}


@dataclass(frozen=True)
class BenchmarkBinary:
    path: Path
    abi: str
    source: str  # "option", "$MOBILE_COMPRESS_BENCHMARK_MODEL", "$..._DIR" or "cache"


def cache_path(abi: str) -> Path:
    base = os.environ.get(ENV_CACHE)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "mobile-compress"
    return root / "benchmark_model" / abi / "benchmark_model"


def where_to_get(abi: str) -> str:
    """The exact instructions for one ABI: download URL (where one exists) and where to put it."""
    target = cache_path(abi)
    if abi in PREBUILT:
        return (f"download TFLite's prebuilt benchmark_model for {abi}: {PREBUILT[abi]} and save it as {target} "
                f"(or pass --benchmark-model PATH, or set ${ENV_FILE})")
    config = BAZEL_CONFIG.get(abi, "android_<abi>")
    return (f"TFLite publishes no prebuilt benchmark_model for {abi}; build it with `bazel build -c opt "
            f"--config={config} //tensorflow/lite/tools/benchmark:benchmark_model` and save it as {target} "
            f"(or pass --benchmark-model PATH, or set ${ENV_FILE})")


def locate(abi: str, explicit: str | os.PathLike[str] | None = None) -> BenchmarkBinary:
    """The benchmark_model to push to a device with this ABI, or a UserError saying where to get it."""
    candidates: list[tuple[str, Path]] = []
    if explicit:
        candidates.append(("option --benchmark-model", Path(explicit).expanduser()))
    elif os.environ.get(ENV_FILE):
        candidates.append((f"${ENV_FILE}", Path(os.environ[ENV_FILE]).expanduser()))
    else:
        if os.environ.get(ENV_DIR):
            candidates.append((f"${ENV_DIR}", Path(os.environ[ENV_DIR]).expanduser() / abi / "benchmark_model"))
        candidates.append(("cache", cache_path(abi)))
    for source, path in candidates:
        if path.is_file():
            _check_elf(path, source, abi)
            return BenchmarkBinary(path, abi, source)
    if explicit or os.environ.get(ENV_FILE):
        source, path = candidates[0]
        raise UserError(f"benchmark_model not found at {path} (from {source})", hint=where_to_get(abi))
    looked = ", ".join(str(p) for _, p in candidates)
    raise UserError(f"no benchmark_model for ABI {abi} (looked in {looked})", hint=where_to_get(abi))


# ELF e_machine per Android ABI, so a binary for another ABI is refused instead of failing on the phone.
ELF_MACHINE = {"arm64-v8a": 0xB7, "armeabi-v7a": 0x28, "x86_64": 0x3E, "x86": 0x03}


def _check_elf(path: Path, source: str, abi: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(20)
    if head.startswith(b"#!"):
        return  # a wrapper script (for instance the virtual device's); the device runs it as it is
    if not head.startswith(b"\x7fELF"):
        raise UserError(f"{path} (from {source}) is not an executable: it does not start with the ELF header",
                        hint="an HTML error page saved by a failed download looks like this; " + where_to_get(abi))
    machine = int.from_bytes(head[18:20], "little")
    expected = ELF_MACHINE.get(abi)
    if expected is not None and machine != expected:
        found = next((a for a, m in ELF_MACHINE.items() if m == machine), f"e_machine {machine:#x}")
        raise UserError(f"{path} (from {source}) is built for {found}, but the device's ABI is {abi}",
                        hint=where_to_get(abi))
