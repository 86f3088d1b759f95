"""The profile results file: a versioned JSON document that every worker appends to.

``profile.json`` is rewritten atomically after each run, so a killed job keeps every run
it finished, and a rerun with the same ``--out`` skips the runs already recorded as ok.
A run is keyed by device, delegate and the model's path and content hash (``ModelId``),
so a same-named model from another folder, or a file replaced since, is measured, never
reported with another file's figures; the runs of a replaced file are dropped.
Several device workers share one ``ResultStore``; a lock keeps their writes whole.
"""
from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mobile_compress.errors import UserError
from mobile_compress.report import write_json
from profiler.model_id import ModelId, display_names, model_key

SCHEMA = "mobile-compress/profile"
SCHEMA_VERSION = 2  # 2: runs carry model_path and model_sha256, and are keyed by them
STATUSES = ("ok", "failed", "error", "skipped")


@dataclass
class RunRecord:
    """One model x delegate x device run. ``status``: ok, failed (the benchmark failed), error (we could
    not run it: device gone, storage full, corrupt model), skipped (not applicable, e.g. gpu in host mode)."""

    device: str  # serial, or "host"
    model: str  # shown in tables: the file name, or as much of the path as tells same-named models apart
    delegate: str  # DelegateConfig.label
    status: str
    mode: str = "device"  # "device" or "host"
    device_info: dict[str, Any] = field(default_factory=dict)
    delegate_config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    latency: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    power: dict[str, Any] | None = None
    thermal_before: dict[str, Any] | None = None
    thermal_after: dict[str, Any] | None = None
    coverage: list[dict[str, Any]] = field(default_factory=list)
    slowest_ops: list[dict[str, Any]] = field(default_factory=list)
    raw_dir: str | None = None  # where the pulled runner files lie, relative to the output folder
    measured_at: str | None = None
    attempts: int = 1
    model_path: str | None = None  # absolute; with model_sha256, what identifies the model
    model_sha256: str | None = None
    # Names the device listed in the run's folder that were not pulled (not plain file names, or
    # reaching outside the run folder), each {"name": ..., "reason": ...}: device output is untrusted.
    refused_files: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, model: ModelId, **fields: Any) -> "RunRecord":
        """A record of a run of ``model``, named and identified by it."""
        return cls(model=model.name, model_path=str(model.path), model_sha256=model.sha256, **fields)

    @property
    def model_key(self) -> str:
        """Path and content hash; a record made by hand without them is known by its name only."""
        if self.model_path is None:
            return f"name:{self.model}"
        return model_key(self.model_path, self.model_sha256 or "")

    @property
    def key(self) -> str:
        return run_key(self.device, self.model_key, self.delegate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_key(device: str, model: str, delegate: str) -> str:
    """``model`` is a model key (``ModelId.key``), not a file name."""
    return f"{device}|{model}|{delegate}"


class ResultStore:
    """Thread-safe, resumable collection of RunRecords backed by ``<out>/profile.json``."""

    def __init__(self, out_dir: Path, environment: dict[str, Any] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / "profile.json"
        self.environment = environment or {}
        self._lock = threading.Lock()
        self._records: dict[str, RunRecord] = {}
        if self.path.is_file():
            for record in load(self.path):
                self._records[record.key] = record
            self._name()

    def done(self, device: str, model: ModelId, delegate: str) -> bool:
        """Recorded as ok or skipped for exactly this file (same path, same content): a resume reuses it."""
        record = self._records.get(run_key(device, model.key, delegate))
        return record is not None and record.status in ("ok", "skipped")

    def has(self, device: str, model: ModelId, delegate: str) -> bool:
        """Recorded at all, whatever its status."""
        return run_key(device, model.key, delegate) in self._records

    def replaced(self, model: ModelId) -> list[RunRecord]:
        """Runs of another file that was at ``model``'s path: all are dropped when a run of this one is recorded."""
        with self._lock:
            return [r for r in self._records.values() if r.model_path == str(model.path)
                    and r.model_sha256 != model.sha256]

    def add(self, record: RunRecord) -> None:
        with self._lock:
            previous = self._records.get(record.key)
            if previous is not None and previous.status not in ("ok", "skipped"):
                record.attempts = previous.attempts + 1
            for key in [k for k, old in self._records.items() if _replaced_by(old, record)]:
                del self._records[key]
            self._records[record.key] = record
            self._name()
            self._save()

    def _name(self) -> None:
        """Every record's ``model`` from the paths of all of them, so same-named files stay distinguishable."""
        names = display_names(Path(r.model_path) for r in self._records.values() if r.model_path is not None)
        for record in self._records.values():
            if record.model_path is not None:
                record.model = names[Path(record.model_path)]

    @property
    def records(self) -> list[RunRecord]:
        with self._lock:
            return list(self._records.values())

    def _save(self) -> None:
        write_json(self.path, document(self._records.values(), self.environment))


def _replaced_by(old: RunRecord, new: RunRecord) -> bool:
    """``old`` measured other bytes at the path ``new`` measured: its figures describe a file no longer there."""
    return new.model_path is not None and old.model_path == new.model_path and old.model_sha256 != new.model_sha256


def document(records: Iterable[RunRecord], environment: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "environment": environment or {},
            "runs": [r.to_dict() for r in records]}


def load(path: Path) -> list[RunRecord]:
    """Records of a profile.json; a UserError if it is not one this version can read."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not a readable profile JSON: {err}",
                        hint="delete it, or choose another --out folder") from err
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UserError(f"{path} is not a mobile-compress profile (field 'schema' is {data.get('schema')!r})"
                        if isinstance(data, dict) else f"{path} is not a mobile-compress profile",
                        hint="choose another --out folder")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path} has schema_version {data.get('schema_version')}, this mobile-compress reads "
                        f"{SCHEMA_VERSION}", hint="profile into a new --out folder, or replace it with --overwrite")
    known = set(RunRecord.__dataclass_fields__)
    return [RunRecord(**{k: v for k, v in run.items() if k in known}) for run in data.get("runs", [])]
