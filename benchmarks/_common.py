"""Shared plumbing for the benchmark scripts: data unpacking, BENCHMARKS.md sections."""
from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
CACHE = Path(os.environ.get("MOBILE_COMPRESS_CACHE", Path.home() / ".cache" / "mobile-compress"))


def dataset_dir(data: str, name: str = "cifar10") -> Path:
    """A folder with train/ and test/: the one given, or the tarball unpacked once into the cache."""
    path = Path(data).expanduser().resolve()
    if path.is_dir():
        return path
    if not path.is_file():
        raise SystemExit(f"{data}: no such file or folder; pass the CIFAR-10 tarball or its unpacked folder with --data")
    target = CACHE / "datasets"
    unpacked = target / name
    marker = target / f".{name}.{path.stat().st_size}.unpacked"
    if not marker.exists():
        print(f"unpacking {path} into {target} (once)")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path) as tar:
            tar.extractall(target, filter="data")
        marker.touch()
    return unpacked


def outside_repo(path: str) -> Path:
    out = Path(path).expanduser().resolve()
    if out == REPO or REPO in out.parents:
        raise SystemExit(f"--out {out} is inside the repository; checkpoints are kept outside it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def update_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section a benchmark owns in BENCHMARKS.md, leaving the others alone."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by the script it names; rerun the script to refresh it.\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
