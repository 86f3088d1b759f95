"""What a measurement ran on: machine, versions, date. Every benchmark and report records it."""
from __future__ import annotations

import datetime as _dt
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata


@dataclass(frozen=True)
class Environment:
    date: str
    cpu: str
    cores: int
    memory_gib: float
    os: str
    python: str
    versions: dict[str, str]
    accelerator: str

    def to_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        versions = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        return (f"- Date: {self.date}\n- Machine: {self.cpu}, {self.cores} cores, {self.memory_gib:.0f} GiB, "
                f"{self.accelerator}\n- OS: {self.os}\n- Python {self.python}; {versions}")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """The installed version of each of ``packages``; those not installed are left out."""
    return {p: v for p in packages if (v := _version(p)) is not None}


def environment(packages: tuple[str, ...] = ("mobile-compress", "torch", "numpy", "pillow")) -> Environment:
    import torch

    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    versions = package_versions(packages)
    return Environment(
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cpu=_cpu_name(),
        cores=os.cpu_count() or 1,
        memory_gib=_memory_gib(),
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        versions=versions,
        accelerator=accelerator,
    )
