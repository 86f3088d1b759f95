"""Every zoo model converted to every format, with host latency of each artifact, side by side.

    python benchmarks/convert_zoo.py [--models a,b] [--rounds 3] [--runs 30]

For each zoo model at its full input size (224, or 32 for the CIFAR ResNets) with 1000
classes (10 for the CIFAR ResNets): a checkpoint with fresh weights and BatchNorm
statistics from the built-in digits (latency depends on the architecture, not on the
weights), converted with ``converters.convert`` to ONNX and the four TFLite flavours with
the parity report, then timed on this machine: the LiteRT interpreter with XNNPACK on
one thread for each .tflite (and for int8 as onnx2tf calibrates it, beside ours), and ONNX
Runtime (1 thread) for the fp32 .onnx. Formats are timed in interleaved rounds (fp32, fp16,
dynamic, int8, onnx2tf's int8, onnx; repeat) and the medians of
the round medians are reported, so every format sees the same machine state.
Results: ``BENCHMARKS.md`` (section convert_zoo) and ``--out``/convert_zoo.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, update_section  # noqa: E402

sys.path.insert(0, str(REPO))
import models  # noqa: E402
from converters import ConvertConfig, convert  # noqa: E402
from mobile_compress.litert import time_model  # noqa: E402
from mobile_compress.report import environment  # noqa: E402
from mobile_compress.zoo_checkpoint import zoo_checkpoint  # noqa: E402

TFLITE = ("fp32", "fp16", "dynamic", "int8")
CIFAR_ONLY = ("resnet20", "resnet56")
ONNX2TF_INT8 = "int8_onnx2tf"  # int8 with onnx2tf's calibration instead of our observed ranges


def time_onnx(path: Path, runs: int) -> list[float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in meta.shape]).astype(np.float32)
    for _ in range(3):
        session.run(None, {meta.name: x})
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {meta.name: x})
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def measure(name: str, work: Path, rounds: int, runs: int) -> dict:
    classes = 10 if name in CIFAR_ONLY else 1000
    checkpoint = zoo_checkpoint(name, work / name / "ck", num_classes=classes)
    start = time.perf_counter()
    report = convert(ConvertConfig(source=checkpoint, out_dir=work / name / "out", calib="builtin",
                                   calib_samples=100, parity_samples=50, progress=False))
    seconds = time.perf_counter() - start
    row = {"model": name, "input": models.default_input_size(name), "classes": classes,
           "convert_s": seconds, "passed": report.passed, "problems": report.problems,
           "sizes": {a.format: a.size_bytes for a in report.artifacts if a.size_bytes}, "ms": {}}
    paths = {a.format: Path(a.path) for a in report.artifacts if a.path and not a.error}
    # the int8 model as onnx2tf calibrates it, timed beside ours: do our ranges cost speed?
    peer = convert(ConvertConfig(source=checkpoint, out_dir=work / name / "out_onnx2tf", formats=("int8",),
                                 int8_ranges="onnx2tf", calib="builtin", calib_samples=100, parity_samples=50,
                                 progress=False))
    if peer.artifacts[0].path and not peer.artifacts[0].error:
        paths[ONNX2TF_INT8] = Path(peer.artifacts[0].path)
    medians: dict[str, list[float]] = {k: [] for k in (*TFLITE, ONNX2TF_INT8, "onnx") if k in paths}
    for _ in range(rounds):
        for fmt in medians:
            samples = time_onnx(paths[fmt], runs) if fmt == "onnx" else \
                time_model(paths[fmt], num_threads=1, xnnpack=True, runs=runs).samples_ms
            medians[fmt].append(statistics.median(samples))
    row["ms"] = {fmt: statistics.median(v) for fmt, v in medians.items()}
    return row


def table(rows: list[dict]) -> list[str]:
    lines = ["| model | input | LiteRT fp32 ms | fp16 ms | dynamic ms | int8 ms | int8 ms, onnx2tf's ranges | "
             "ONNX Runtime fp32 ms | int8 speed-up over fp32 | int8 size | parity | convert s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        ms = r["ms"]
        cell = lambda k: f"{ms[k]:.2f}" if k in ms else "failed"  # noqa: E731
        speed = f"{ms['fp32'] / ms['int8']:.2f}×" if "fp32" in ms and "int8" in ms else "—"
        size = f"{r['sizes']['int8'] / 2**20:.2f} MiB" if "int8" in r["sizes"] else "—"
        parity = "pass" if r["passed"] else "FAIL: " + "; ".join(r["problems"])[:120]
        lines.append(f"| {r['model']} | {r['input']} | {cell('fp32')} | {cell('fp16')} | {cell('dynamic')} | "
                     f"{cell('int8')} | {cell(ONNX2TF_INT8)} | {cell('onnx')} | {speed} | {size} | {parity} | {r['convert_s']:.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated subset (default: the whole zoo)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per format per round")
    ap.add_argument("--out", help="folder for convert_zoo.json (default: a temporary folder)")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else models.names()
    out = Path(args.out or tempfile.mkdtemp(prefix="convert-zoo-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}: converting and timing ...", flush=True)
        try:
            rows.append(measure(name, out, args.rounds, args.runs))
        except Exception as err:  # noqa: BLE001 - one model's failure is recorded, the rest go on
            print(f"  {name} failed: {type(err).__name__}: {err}", flush=True)
            rows.append({"model": name, "input": models.default_input_size(name), "convert_s": 0.0, "passed": False,
                         "problems": [f"{type(err).__name__}: {err}"], "sizes": {}, "ms": {}})
        print("  " + table(rows[-1:])[-1], flush=True)
    (out / "convert_zoo.json").write_text(json.dumps({"environment": environment().to_dict(), "rows": rows}, indent=2))
    print("\n".join(table(rows)))
    if args.no_write:
        return
    slower = [r["model"] for r in rows if r["ms"].get("int8", 1e9) >= r["ms"].get("fp32", 0)]
    lines = [
        "## Conversion of the zoo and host latency per format (`benchmarks/convert_zoo.py`)",
        "",
        f"Command: `python benchmarks/convert_zoo.py --rounds {args.rounds} --runs {args.runs}`"
        + (f" `--models {args.models}`" if args.models else "") + ". "
        "Fresh weights with BatchNorm statistics from the built-in digits (latency depends on the architecture, "
        "not on the weights); ImageNet models at 224×224 with 1000 classes, CIFAR ResNets at 32×32 with 10. "
        "LiteRT interpreter with XNNPACK on 1 thread; ONNX Runtime on 1 thread; batch 1. "
        f"Medians of {args.rounds} interleaved rounds of {args.runs} runs each. Parity: every artifact against "
        "PyTorch on 50 held-out digits, with the converter's bars. With fresh weights, 1000 classes and a "
        "linear-probe classifier the logits barely separate, so top-1 agreement and cosine bars fail here for "
        "reasons of the weights, not the converter; the conversion checks that hold on such weights are "
        "asserted in tests/test_convert_zoo.py. The parity column is reported, not a verdict. "
        "int8 is `convert`'s default for a checkpoint: activation ranges from our observers (post-training "
        "calibration on 100 digits) written into the .tflite; the column after it is the same model with "
        "onnx2tf's own calibration (`--int8-ranges onnx2tf`), timed in the same rounds. `convert s` is the "
        "default conversion only (ONNX, four TFLite flavours and their parity).",
        "",
        environment(("mobile-compress", "torch", "onnx2tf", "tensorflow", "ai-edge-litert", "onnxruntime")).markdown(),
        "",
        *table(rows),
        "",
        "int8 slower than fp32: " + (", ".join(slower) if slower else "none") + ".",
    ]
    update_section("convert_zoo", "\n".join(lines))
    print("BENCHMARKS.md updated")


if __name__ == "__main__":
    main()
