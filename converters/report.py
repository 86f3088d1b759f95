"""The conversion report: one entry per artifact, written as report.json and shown as a table."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converters.parity import Parity
from converters.tflite_inspect import FloatOp
from mobile_compress.report import Column, format_table


@dataclass
class ArtifactReport:
    """One artifact: where it is, how it compares with the reference, and whether it passes."""

    format: str
    path: str | None = None
    size_bytes: int | None = None
    parity: Parity | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    io: dict[str, Any] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    float_fallback: list[FloatOp] | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "passed": self.passed, "path": self.path, "size_bytes": self.size_bytes,
            "parity": self.parity.to_dict() if self.parity else None, "problems": self.problems,
            "error": self.error, "io": self.io, "ops": self.ops,
            "float_fallback": None if self.float_fallback is None else [op.to_dict() for op in self.float_fallback],
        }


@dataclass
class ConvertReport:
    """Everything ``convert`` did; ``passed`` is False when any artifact failed or broke a threshold."""

    source: str
    source_kind: str
    reference: str
    out_dir: str
    input_size: tuple[int, int]
    layout: str
    int8_io: str
    opset: int | None = None
    batch: int | str | None = None
    data: str | None = None
    normalization: dict[str, Any] | None = None
    calib_samples: int = 0
    parity_samples: int = 0
    thresholds: dict[str, Any] = field(default_factory=dict)
    artifacts: list[ArtifactReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    graph_rewrites: dict[str, int] = field(default_factory=dict)  # what onnx_rewrite changed before onnx2tf

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.artifacts)

    @property
    def problems(self) -> list[str]:
        out = []
        for a in self.artifacts:
            if a.error:
                out.append(f"{a.format}: conversion failed: {a.error.splitlines()[0]}")
            out.extend(a.problems)
        return out

    def artifact(self, fmt: str) -> ArtifactReport:
        return next(a for a in self.artifacts if a.format == fmt)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "source": self.source, "source_kind": self.source_kind,
            "reference": self.reference, "out_dir": self.out_dir, "input_size": list(self.input_size),
            "layout": self.layout, "int8_io": self.int8_io, "opset": self.opset, "batch": self.batch,
            "data": self.data, "normalization": self.normalization, "calib_samples": self.calib_samples,
            "parity_samples": self.parity_samples, "thresholds": self.thresholds,
            "artifacts": [a.to_dict() for a in self.artifacts], "problems": self.problems,
            "graph_rewrites": self.graph_rewrites,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()}, "versions": self.versions,
        }

    def table(self) -> str:
        rows = []
        for a in self.artifacts:
            p = a.parity
            rows.append({
                "format": a.format, "file": a.path.rsplit("/", 1)[-1] if a.path else "-",
                "kb": a.size_bytes / 1024 if a.size_bytes else None,
                "io": a.io.get("dtype", ""),
                "max": p.max_abs_diff if p else None, "mean": p.mean_abs_diff if p else None,
                "cos": p.cosine_mean if p else None, "cos_min": p.cosine_min if p else None,
                "top1": p.top1_agreement if p else None,
                "fallback": None if a.float_fallback is None else len(a.float_fallback),
                "verdict": "ok" if a.passed else ("FAILED" if a.error else "BELOW BAR"),
            })
        return format_table(rows, [
            Column("format", "artifact"), Column("file", "file"),
            Column("kb", "KiB", lambda v: f"{v:,.0f}", ">"), Column("io", "io"),
            Column("max", "max|Δ|", lambda v: f"{v:.3g}", ">"), Column("mean", "mean|Δ|", lambda v: f"{v:.3g}", ">"),
            Column("cos", "cos mean", lambda v: f"{v:.6f}", ">"), Column("cos_min", "cos min", lambda v: f"{v:.6f}", ">"), Column("top1", "top-1 agree", lambda v: f"{v:.1%}", ">"),
            Column("fallback", "float ops", str, ">"), Column("verdict", "verdict"),
        ], title=f"parity vs {self.reference} on {self.parity_samples} images of {self.data}")
