"""Faults the virtual device can inject, each modelled on how a real phone fails.

- ``disconnect``: the USB cable is pulled / Wi-Fi drops: the socket closes during a shell
  command (whose text contains ``match``) after ``after_seconds``, or during a sync transfer
  after ``after_bytes``. ``times`` bounds how often it fires, so a reconnect can succeed.
- ``unauthorized``: the phone never accepts any key (the user did not tap "Allow").
- ``storage_full``: SEND fails with adbd's "write failed: No space left on device" once more
  than ``free_bytes`` would be written (0: every push of a non-empty file fails).
- ``benchmark``: the fake benchmark_model crashes (``crash``: "segv" or "abort", like a real
  native crash) or hangs (``hang``) after ``after_runs`` timed runs.
A corrupt model needs no switch: push a broken .tflite and the fake binary fails on it as
benchmark_model does.
"""
from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class DisconnectFault:
    during: str = "shell"  # "shell" or "sync"
    match: str = ""  # shell: only commands containing this text
    after_seconds: float = 0.5
    after_bytes: int = 0
    times: int = 1


@dataclass
class StorageFullFault:
    free_bytes: int = 0
    times: int = -1  # -1: every time


@dataclass
class BenchmarkFault:
    crash: str | None = None  # "segv" or "abort"
    hang: bool = False
    after_runs: int = 2
    times: int = -1


@dataclass
class Faults:
    disconnect: DisconnectFault | None = None
    unauthorized: bool = False
    storage_full: StorageFullFault | None = None
    benchmark: BenchmarkFault | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Faults":
        data = dict(data or {})
        unknown = set(data) - {"disconnect", "unauthorized", "storage_full", "benchmark"}
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: disconnect, unauthorized, storage_full, benchmark")
        return cls(disconnect=DisconnectFault(**data["disconnect"]) if data.get("disconnect") else None,
                   unauthorized=bool(data.get("unauthorized", False)),
                   storage_full=StorageFullFault(**data["storage_full"]) if data.get("storage_full") else None,
                   benchmark=BenchmarkFault(**data["benchmark"]) if data.get("benchmark") else None)

    def to_dict(self) -> dict:
        return {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v)
                for k, v in (("disconnect", self.disconnect), ("unauthorized", self.unauthorized),
                             ("storage_full", self.storage_full), ("benchmark", self.benchmark))}

    def take(self, name: str) -> object | None:
        """The armed fault ``name`` (and use up one of its ``times``), or None."""
        with self._lock:
            fault = getattr(self, name)
            if fault is None:
                return None
            if fault.times == 0:
                return None
            if fault.times > 0:
                fault.times -= 1
            return fault

    def publish(self, path: Path) -> None:
        """Write the benchmark fault where the fake benchmark_model (a separate process) reads it."""
        path.write_text(json.dumps({"benchmark": asdict(self.benchmark) if self.benchmark else None}))
