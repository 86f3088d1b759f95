"""Structured pruning on CIFAR-10 at 2x fewer MACs: ours against Torch-Pruning, with measured latency.

    nice -n 19 python benchmarks/prune_cifar10.py --data ~/.cache/mobile-compress/datasets/cifar10

For each model the unpruned checkpoint is pruned to at most 50% of its MACs by each
method, every pruned model gets the SAME fine-tune budget (epochs, images, optimiser,
seed), and all are converted to fp32 .tflite and timed side by side in this one run on
the host LiteRT interpreter (``mobile_compress.litert.time_model``, 1 thread, XNNPACK).

- ours: ``mobile_compress.pruning.prune`` (L1 filter norm, global cost-aware allocation
  unless --allocation uniform, widths rounded to 8), a physically smaller model saved as a rebuildable checkpoint;
- Torch-Pruning (the peer, installed only for this benchmark:
  ``pip install --no-deps torch-pruning==1.6.0``; --no-deps keeps the CPU torch): its
  MagnitudePruner with the same L1 importance, global pruning, round_to=8, stepped until
  the MACs are at most 50%, on resnet56 and mobilenet_v2. It cannot trace ShuffleNetV2's
  channel shuffle, so shufflenet_v2 is ours alone (the run records its error).

Checkpoints: resnet56 and mobilenet_v2 (small-input) from ``benchmarks/train_cifar10.py``;
shufflenet_v2_x1_0 (small-input) is trained here first if missing, for --shufflenet-minutes.
Results accumulate in ``--out/results.json`` (a killed run resumes model by model) and the
section ``prune_cifar10`` of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from torch.utils.data import Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, dataset_dir, outside_repo, update_section  # noqa: E402

from mobile_compress.counting import count_macs, count_parameters, format_count  # noqa: E402
from mobile_compress.data import Normalization, open_dataset  # noqa: E402
from mobile_compress.pruning import PruneConfig, prune  # noqa: E402
from mobile_compress.report import environment  # noqa: E402
from mobile_compress.train_job import TrainJob, run_train_job  # noqa: E402
from mobile_compress.training import CheckpointMeta, TrainConfig, Trainer, evaluate, load_checkpoint, save_checkpoint  # noqa: E402
from profiler.latency_table import convert_fp32, interleaved_min_ms  # noqa: E402

TRAINED = CACHE / "benchmarks" / "train_cifar10"
MODELS = {
    "resnet56": ("resnet56", {}),
    "mobilenet_v2": ("mobilenet_v2", {"small_input": True}),
    "shufflenet_v2": ("shufflenet_v2_x1_0", {"small_input": True}),
}
PEER_MODELS = ("resnet56", "mobilenet_v2")
# Measured side by side at 2x fewer MACs (fp32 .tflite, 1 thread): the global greedy cut resnet56's latency by
# 0.67 of its MAC cut (uniform 0.83) and mobilenet_v2's by 0.80 (uniform 0.97), since per MAC saved it prefers
# the 8-16-channel layers at 32x32 that XNNPACK runs least efficiently. But uniform resnet56 fine-tuned to
# 62.6% (3 epochs over 20,000 images) against 79.86% unpruned, so global stays the default.
ALLOCATION_TEXT = {"uniform": "the same kept fraction in every layer (uniform allocation)",
                   "global": "global cost-aware allocation"}


def checkpoint_for(key: str, data: str, out: Path, args: argparse.Namespace) -> Path:
    arch, options = MODELS[key]
    trained = Path(args.checkpoints).expanduser()
    for candidate in (trained / key / "best", trained / arch / "best", out / "trained" / arch / "best"):
        if (candidate / "checkpoint.json").is_file():
            return candidate
    print(f"{key}: no CIFAR-10 checkpoint; training {arch} for {args.shufflenet_minutes:g} min first")
    cfg = TrainConfig(epochs=args.shufflenet_epochs, batch_size=128, lr=0.1, warmup_epochs=1, weight_decay=5e-4,
                      precision=args.precision, max_minutes=args.shufflenet_minutes, progress=False)
    job = run_train_job(TrainJob(model=arch, data=data, out_dir=str(out / "trained" / arch), config=cfg,
                                 options=options, image_size=32, normalization="cifar10"))
    return job.checkpoint


def torch_pruning(model: torch.nn.Module, target: float) -> torch.nn.Module:
    import torch_pruning as tp

    model = copy.deepcopy(model).eval()
    example = torch.randn(1, 3, 32, 32)
    base, _ = tp.utils.count_ops_and_params(model, example)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                       iterative_steps=100, pruning_ratio=0.95, ignored_layers=[last], round_to=8,
                                       global_pruning=True)
    for _ in range(100):
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(model, example)
        if macs <= target * base:
            break
    return model


def fine_tune(model: torch.nn.Module, train, val, args: argparse.Namespace) -> tuple[torch.nn.Module, float]:
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_epochs=0, weight_decay=5e-4,
                      precision=args.precision, progress=False, seed=0)
    start = time.monotonic()
    Trainer(model, cfg, train, None, log=lambda s: print("   ", s)).fit()
    return model.eval(), time.monotonic() - start


def run_model(key: str, data: str, out: Path, args: argparse.Namespace) -> list[dict]:
    ckpt = checkpoint_for(key, data, out, args)
    base, meta = load_checkpoint(ckpt)
    norm = Normalization.from_dict(meta.normalization)
    train = open_dataset(data, split="train", image_size=32, train=True, normalization=norm)
    test = open_dataset(data, split="test", image_size=32, train=False, normalization=norm)
    if args.train_images and args.train_images < len(train):
        step = len(train) // args.train_images
        train = Subset(train, list(range(0, len(train), step))[: args.train_images])
    if args.test_images and args.test_images < len(test):
        test = Subset(test, list(range(0, len(test), len(test) // args.test_images))[: args.test_images])
    candidates: dict[str, torch.nn.Module | str] = {"unpruned": base}
    seconds: dict[str, float] = {}
    t = time.monotonic()
    result = prune(base, PruneConfig(target=f"macs={args.target}", allocation=args.allocation), 32)
    seconds["ours"] = time.monotonic() - t
    candidates["ours"] = result.model
    if key in PEER_MODELS or args.peer_everywhere:
        t = time.monotonic()
        try:
            candidates["torch-pruning"] = torch_pruning(base, args.target)
        except Exception as err:  # noqa: BLE001 - the peer's failure is a result
            candidates["torch-pruning"] = f"{type(err).__name__}: {err}"
            traceback.print_exc()
        seconds["torch-pruning"] = time.monotonic() - t
    rows = []
    base_top1 = evaluate(base, test, batch_size=256).top1
    tflite: dict[str, Path] = {}
    for method, model in candidates.items():
        row = {"model": key, "arch": meta.arch, "method": method, "checkpoint": str(ckpt)}
        if method == "ours":
            row["allocation"] = args.allocation
        if isinstance(model, str):
            rows.append({**row, "error": model})
            continue
        row.update(macs=count_macs(model, 32), params=count_parameters(model), prune_seconds=seconds.get(method))
        if method != "unpruned":
            row["top1_pruned"] = evaluate(model, test, batch_size=256).top1
            model, row["finetune_seconds"] = fine_tune(model, train, None, args)
            if method == "ours":  # the rebuildable checkpoint (state_dict + JSON)
                save_checkpoint(out / key / "ours", model, CheckpointMeta(
                    arch=meta.arch, options=meta.options, num_classes=meta.num_classes, input_size=32,
                    normalization=meta.normalization, labels=meta.labels,
                    transforms=[*meta.transforms, result.transform()]))
        row["top1"] = base_top1 if method == "unpruned" else evaluate(model, test, batch_size=256).top1
        tflite[method] = keep_tflite(model, out / key / f"{method}.tflite")
        rows.append(row)
        print(json.dumps(row), flush=True)
    add_latency(rows, tflite, args)
    return rows


def keep_tflite(model: torch.nn.Module, path: Path) -> Path:
    work = Path(tempfile.mkdtemp(prefix="prune-bench-"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(convert_fp32(model, (32, 32), work), path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def add_latency(rows: list[dict], tflite: dict[str, Path], args: argparse.Namespace) -> None:
    """Time every model of one CIFAR model's rows together, interleaved, and add the cuts."""
    timings = interleaved_min_ms(tflite, rounds=args.timing_rounds, runs=20)
    base = next(r for r in rows if r["method"] == "unpruned")
    for row in rows:
        if row["method"] in timings:
            row["tflite_ms"] = timings[row["method"]]
        if "tflite_ms" in row and row["method"] != "unpruned":
            row["mac_cut"] = 1 - row["macs"] / base["macs"]
            row["latency_cut"] = 1 - row["tflite_ms"] / base["tflite_ms"]
            row["latency_cut_per_mac_cut"] = row["latency_cut"] / row["mac_cut"]
            row["top1_drop"] = base["top1"] - row["top1"]


def retime(rows: list[dict], out: Path, args: argparse.Namespace) -> None:
    """Re-time finished models from their kept .tflite files (or re-convert their checkpoints)."""
    for key in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == key]
        tflite: dict[str, Path] = {}
        for row in mine:
            path = out / key / f"{row['method']}.tflite"
            source = {"unpruned": row.get("checkpoint"), "ours": str(out / key / "ours")}.get(row["method"])
            if not path.is_file() and source and "error" not in row:
                keep_tflite(load_checkpoint(source)[0], path)
            if path.is_file():
                tflite[row["method"]] = path
        add_latency(mine, tflite, args)
        print(f"{key}: re-timed {', '.join(tflite)}")


def render(rows: list[dict], args: argparse.Namespace, minutes: float) -> str:
    env = environment()
    lines = [
        "## Structured pruning on CIFAR-10 (`benchmarks/prune_cifar10.py`)",
        "",
        f"Command: `nice -n 19 python benchmarks/prune_cifar10.py --data <cifar10> --epochs {args.epochs} "
        f"--train-images {args.train_images or 'all'} --test-images {args.test_images or 'all'} "
        f"--models {args.models} --allocation {args.allocation}`. Target: at most {args.target:g} of the MACs (2x fewer). Same fine-tune for every "
        f"method: {args.epochs} epoch(s) over {args.train_images or 'all'} training images, SGD lr {args.lr:g} cosine, "
        f"batch {args.batch_size}, {args.precision}. Ours: L1, {ALLOCATION_TEXT[args.allocation]}, widths multiple of 8. "
        "Torch-Pruning 1.6.0: MagnitudePruner, L1, global, round_to=8, stepped to the same MAC target. Latency: "
        "fp32 .tflite (onnx2tf) on the host LiteRT interpreter, 1 thread, XNNPACK; the models of one row group are "
        f"timed together, round-robin ({args.timing_rounds} rounds of 20 runs each), and the fastest run is "
        "reported (on a shared host, load only ever adds time). "
        + (f"Latency re-timed with --retime ({minutes:.0f} min)." if args.retime else f"Whole run: {minutes:.0f} min."),
        "",
        env.markdown(),
        "",
        "| model | method | MACs | params | top-1 % pruned | top-1 % fine-tuned | Δ top-1 | .tflite ms | MAC cut | "
        "latency cut | latency cut / MAC cut |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pct = lambda v: "" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    num = lambda v, f="{:.2f}": "" if v is None else f.format(v)  # noqa: E731
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['method']} | fails: {r['error'][:80]} |||||||||")
            continue
        lines.append(f"| {r['model']} | {r['method']} | {format_count(r['macs'])} | {format_count(r['params'])} | "
                     f"{num(r.get('top1_pruned'))} | {num(r['top1'])} | {num(-r['top1_drop'] if 'top1_drop' in r else None)} | "
                     f"{r['tflite_ms']:.3f} | {pct(r.get('mac_cut'))} | {pct(r.get('latency_cut'))} | "
                     f"{num(r.get('latency_cut_per_mac_cut'))} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(CACHE / "datasets" / "cifar10"), help="CIFAR-10 tarball or folder")
    ap.add_argument("--out", default=str(CACHE / "benchmarks" / "prune_cifar10"), help="outside the repository")
    ap.add_argument("--checkpoints", default=str(TRAINED), help="train_cifar10.py's checkpoints (<dir>/<model>/best)")
    ap.add_argument("--models", default="resnet56,mobilenet_v2,shufflenet_v2")
    ap.add_argument("--target", type=float, default=0.5, help="fraction of MACs kept")
    ap.add_argument("--epochs", type=int, default=5, help="fine-tune epochs, the same for every method")
    ap.add_argument("--train-images", type=int, default=0, help="fine-tune on an evenly spread subset (0: all)")
    ap.add_argument("--test-images", type=int, default=0, help="evaluate on an evenly spread subset (0: all)")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--allocation", choices=sorted(ALLOCATION_TEXT), default="global",
                    help="ours: the same kept fraction in every layer (uniform) or cost-aware global greedy")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--shufflenet-minutes", type=float, default=60.0, help="training budget if no checkpoint")
    ap.add_argument("--shufflenet-epochs", type=int, default=30)
    ap.add_argument("--peer-everywhere", action="store_true", help="also try Torch-Pruning on shufflenet_v2")
    ap.add_argument("--timing-rounds", type=int, default=5, help="round-robin timing rounds per model group")
    ap.add_argument("--retime", action="store_true", help="only re-time the models already in --out/results.json")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    data = str(dataset_dir(args.data))
    out = outside_repo(args.out)
    results_file = out / "results.json"
    done = json.loads(results_file.read_text()) if results_file.exists() else []
    start = time.monotonic()
    if args.retime:
        retime(done, out, args)
        results_file.write_text(json.dumps(done, indent=2))
    for key in args.models.split(","):
        if key not in MODELS:
            raise SystemExit(f"unknown model {key!r}; choose from {', '.join(MODELS)}")
        if any(r["model"] == key for r in done):
            print(f"{key}: already in {results_file} (delete its rows to rerun)")
            continue
        done += run_model(key, data, out, args)
        results_file.write_text(json.dumps(done, indent=2))
    if not args.no_write:
        order = [k for k in MODELS if any(r["model"] == k for r in done)]
        update_section("prune_cifar10", render([r for k in order for r in done if r["model"] == k], args,
                                               (time.monotonic() - start) / 60))
        print("BENCHMARKS.md updated")


if __name__ == "__main__":
    main()
