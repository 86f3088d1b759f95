"""Every artifact of the CIFAR-10 benchmarks measured the same way, side by side, in one run.

    nice -n 19 python benchmarks/stages_cifar10.py [--root DIR] [--test-images 10000]

The other scripts each measure what their issue asks (accuracy in PyTorch, or on one
.tflite, or latency of fp32 files only). This step takes the artifact of each stage they
left under ``--root`` (the teacher and student of train_cifar10, the best distilled student
and its no-KD twin of distill_cifar10, our pruned model and Torch-Pruning's of
prune_cifar10, the QAT and PTQ int8 models of quantize_cifar10) and gives every one of them:

* top-1 of the .tflite in the LiteRT interpreter on the same CIFAR-10 test images;
* the .tflite size and the model's MACs;
* host latency: the fastest of interleaved rounds on the LiteRT interpreter (1 thread,
  XNNPACK), and ONNX Runtime (1 thread) on the fp32 .onnx where there is a checkpoint;
* the converter's parity verdict for the files converted here.

A checkpoint is converted here (ONNX + fp32 .tflite) with ``converters.convert``; int8
files and Torch-Pruning's .tflite are taken as their scripts wrote them. A failure of one
artifact is recorded in its row and the others go on. Results: ``<root>/stages_cifar10/results.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_layout as layout  # noqa: E402
from _common import CACHE, dataset_dir  # noqa: E402


@dataclass
class Candidate:
    """One artifact to measure: a checkpoint to convert, or a .tflite a script already wrote."""

    stage: str  # baseline, distilled, pruned, quantized
    label: str
    model: str
    preprocess_from: str  # the checkpoint whose input size and normalisation the test images get
    checkpoint: str | None = None
    tflite: str | None = None
    macs: int | None = None
    peer: str | None = None  # the peer this row is, e.g. "PTQ baseline"; None for the stage itself


@dataclass
class Measured:
    stage: str
    label: str
    model: str
    peer: str | None
    test_images: int = 0
    tflite: str | None = None
    onnx: str | None = None
    size_bytes: int | None = None
    macs: int | None = None
    top1_tflite: float | None = None
    top1_onnx: float | None = None
    tflite_ms: float | None = None
    onnx_ms: float | None = None
    parity_passed: bool | None = None
    parity_problems: list[str] = field(default_factory=list)
    error: str | None = None


def collect(root: Path) -> list[Candidate]:
    """The artifacts the benchmark scripts left under ``root``, stage by stage; missing ones are skipped."""
    out: list[Candidate] = []
    for r in layout.load(root, "train") or []:
        out.append(Candidate("baseline", f"{r['model']} fp32 ({r['role']})", r["model"], r["checkpoint"],
                             checkpoint=r["checkpoint"]))
    runs = layout.distill_runs(layout.load(root, "distill"))
    for student in dict.fromkeys(r["student"] for r in runs):
        mine = {r["variant"]: r for r in runs if r["student"] == student}
        kd = [r for v, r in mine.items() if v != "none"]
        pairs = []
        if kd:
            best = max(kd, key=lambda r: r["last_top1"])
            pairs.append((best["variant"], f"{student} distilled ({best['variant']} KD)", None))
        if "none" in mine:
            pairs.append(("none", f"{student} without KD", "student without KD"))
        for variant, label, peer in pairs:
            ckpt = layout.distill_checkpoint(root, student, variant)
            out.append(Candidate("distilled", label, student, str(ckpt), checkpoint=str(ckpt), peer=peer))
    trained = {c.checkpoint for c in out if c.stage == "baseline"}
    for r in layout.load(root, "prune") or []:
        if "error" in r:
            continue
        if r["method"] == "unpruned":
            if r["checkpoint"] not in trained:  # prune_cifar10 may start from checkpoints of its own (--checkpoints)
                out.append(Candidate("baseline", f"{r['model']} fp32 (unpruned start of prune_cifar10)", r["model"],
                                     r["checkpoint"], checkpoint=r["checkpoint"]))
            continue
        if r["method"] == "ours":
            ckpt = layout.prune_checkpoint(root, r["model"])
            out.append(Candidate("pruned", f"{r['model']} pruned (ours, fine-tuned)", r["model"], r["checkpoint"],
                                 checkpoint=str(ckpt)))
        elif r["method"] == "torch-pruning":  # the control and ours' other configurations are not stages
            out.append(Candidate("pruned", f"{r['model']} pruned ({r['method']}, fine-tuned)", r["model"],
                                 r["checkpoint"], tflite=str(layout.prune_tflite(root, r["model"], r["method"])),
                                 macs=r.get("macs"), peer="Torch-Pruning"))
    for r in layout.quantize_rows(layout.load(root, "quantize")):
        if "error" in r:
            continue
        for method, label, peer in (("qat", "QAT int8", None), ("ptq", "PTQ int8", "PTQ baseline")):
            report = layout.quantize_report(root, r["model"], method)
            try:
                path = next(a["path"] for a in json.loads(report.read_text())["artifacts"] if a["format"] == "int8")
            except (OSError, ValueError, StopIteration, KeyError):
                continue
            if path:
                out.append(Candidate("quantized", f"{r['model']} {label}", r["model"], r["checkpoint"],
                                     tflite=path, peer=peer))
    return out


def _macs(checkpoint: str) -> int:
    from mobile_compress.counting import count_macs
    from mobile_compress.training import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    size = meta.input_size if isinstance(meta.input_size, int) else meta.input_size[0]
    return count_macs(model, size)


def measure(candidates: list[Candidate], data: Path, work: Path, test_images: int, rounds: int, runs: int,
            log=print) -> list[Measured]:
    """Convert what needs converting, score every file on the same images, then time all files interleaved."""
    from convert_zoo import time_onnx
    from quantize_cifar10 import _test_arrays

    import numpy as np
    from converters import ConvertConfig, convert
    from converters.parity import run_onnx, run_tflite
    from mobile_compress.litert import time_model

    rows: list[Measured] = []
    arrays: dict[str, tuple] = {}
    for i, c in enumerate(candidates, 1):
        row = Measured(c.stage, c.label, c.model, c.peer, tflite=c.tflite, macs=c.macs)
        rows.append(row)
        start = time.monotonic()
        try:
            if c.preprocess_from not in arrays:
                arrays[c.preprocess_from] = _test_arrays(data, Path(c.preprocess_from), test_images)
            x, y = arrays[c.preprocess_from]
            row.test_images = len(y)
            if c.checkpoint:
                report = convert(ConvertConfig(c.checkpoint, str(work / f"{i:02d}"), formats=("onnx", "fp32"),
                                               calib=str(data), calib_samples=32, parity_samples=min(100, len(y)),
                                               progress=False))
                row.parity_passed, row.parity_problems = report.passed, report.problems
                row.tflite, row.onnx = report.artifact("fp32").path, report.artifact("onnx").path
                row.macs = _macs(c.checkpoint)
            elif row.macs is None:
                row.macs = _macs(c.preprocess_from)  # an int8 file computes its float model's MACs
            if not row.tflite or not Path(row.tflite).is_file():
                raise FileNotFoundError(f"no .tflite for {c.label} ({row.tflite or 'conversion failed'})")
            row.size_bytes = Path(row.tflite).stat().st_size
            row.top1_tflite = float(np.mean(run_tflite(Path(row.tflite), x, "nhwc").argmax(1) == y) * 100)
            if row.onnx:
                row.top1_onnx = float(np.mean(run_onnx(Path(row.onnx), x).argmax(1) == y) * 100)
        except Exception as err:  # noqa: BLE001 - one artifact's failure is recorded, the others go on
            row.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
        log(f"[{i}/{len(candidates)}] {c.label}: "
            + (f"failed: {row.error}" if row.error else f"top-1 {row.top1_tflite:.2f}% on {row.test_images} images")
            + f" ({time.monotonic() - start:.0f} s)")
    timed = [r for r in rows if r.error is None]
    log(f"timing {len(timed)} .tflite files (and their .onnx) round-robin: {rounds} rounds of {runs} runs")
    for _ in range(rounds):
        for r in timed:
            fastest = min(time_model(r.tflite, num_threads=1, xnnpack=True, runs=runs).samples_ms)
            r.tflite_ms = fastest if r.tflite_ms is None else min(r.tflite_ms, fastest)
            if r.onnx:
                fastest = min(time_onnx(Path(r.onnx), runs))
                r.onnx_ms = fastest if r.onnx_ms is None else min(r.onnx_ms, fastest)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(CACHE / "benchmarks"), help="where the other scripts wrote their results")
    ap.add_argument("--data", default=str(CACHE / "datasets" / "cifar10"), help="CIFAR-10 tarball or folder")
    ap.add_argument("--test-images", type=int, default=10000, help="evenly spread test images per artifact")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per file per round")
    args = ap.parse_args(argv)
    from mobile_compress.report import environment

    root = Path(args.root).expanduser()
    candidates = collect(root)
    if not candidates:
        raise SystemExit(f"{root}: no benchmark results to measure; run the other steps first")
    print(f"{len(candidates)} artifacts: " + "; ".join(c.label for c in candidates), flush=True)
    out = layout.step_dir(root, "stages")
    out.mkdir(parents=True, exist_ok=True)
    rows = measure(candidates, dataset_dir(args.data), out / "artifacts", args.test_images, args.rounds, args.runs,
                   log=lambda s: print(s, flush=True))
    env = environment(("mobile-compress", "torch", "onnx2tf", "tensorflow", "ai-edge-litert", "onnxruntime"))
    layout.results_path(root, "stages").write_text(json.dumps(
        {"environment": env.to_dict(), "args": vars(args), "rows": [asdict(r) for r in rows]}, indent=2))
    print(f"wrote {layout.results_path(root, 'stages')}")


if __name__ == "__main__":
    main()
