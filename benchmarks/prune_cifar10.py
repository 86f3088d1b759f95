"""Structured pruning on CIFAR-10 at 2x fewer MACs: ours against Torch-Pruning, with measured latency.

    python benchmarks/prune_cifar10.py --data ~/.cache/mobile-compress/datasets/cifar10

For each model the unpruned checkpoint is pruned to at most 50% of its MACs by each
method, every pruned model gets the SAME fine-tune budget (epochs, images, optimiser,
seed), and all are converted to fp32 .tflite and timed side by side in one run on
the host LiteRT interpreter (``mobile_compress.litert.time_model``, 1 thread, XNNPACK).

- ours: ``mobile_compress.pruning.prune`` (L1 filter norm, global cost-aware allocation
  unless --allocation uniform, at least --min-keep of every layer, widths rounded to 8),
  a physically smaller model saved as a rebuildable checkpoint; --variants adds rows for
  other configurations of ours (``uniform``, ``min0``: no floor);
- ``unpruned-finetuned``: the control, the unpruned model given the same fine-tune, so
  that what the extra training alone gives is visible;
- Torch-Pruning (the peer, installed only for this benchmark:
  ``pip install --no-deps torch-pruning==1.6.0``; --no-deps keeps the CPU torch): its
  MagnitudePruner with the same L1 importance, global pruning, round_to=8, stepped until
  the MACs are at most 50%, on resnet56 and mobilenet_v2. It cannot trace ShuffleNetV2's
  channel shuffle, so shufflenet_v2 is ours alone.

Checkpoints: ``<--checkpoints>/<model>/best`` from ``benchmarks/train_cifar10.py``;
shufflenet_v2_x1_0 (small-input) is trained here first if missing, for --shufflenet-minutes.
Every finished (model, method) is kept in ``--out/<model>/rows/<method>.json`` with its
fine-tuned weights, so a killed run resumes where it stopped, and --methods lets several
processes share one model's methods. On a GPU machine without LiteRT, run with
--no-latency, then --retime on the host converts and times what was fine-tuned there.
Results: ``--out/results.json`` and the section ``prune_cifar10`` of BENCHMARKS.md.
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
from mobile_compress.training import TrainJob, run_train_job  # noqa: E402
from mobile_compress.training import CheckpointMeta, TrainConfig, Trainer, evaluate, load_checkpoint, save_checkpoint  # noqa: E402
from profiler.latency_table import convert_fp32, interleaved_min_ms  # noqa: E402

TRAINED = CACHE / "benchmarks" / "train_cifar10"
MODELS = {
    "resnet56": ("resnet56", {}),
    "mobilenet_v2": ("mobilenet_v2", {"small_input": True}),
    "shufflenet_v2": ("shufflenet_v2_x1_0", {"small_input": True}),
}
PEER_MODELS = ("resnet56", "mobilenet_v2")
CONTROL = "unpruned-finetuned"  # the unpruned model given the same fine-tune: what the extra training alone gives
# Measured on CIFAR-10 at 2x fewer MACs, 10 fine-tune epochs over all 50,000 images (BENCHMARKS.md): without a
# floor the global greedy cut single MobileNetV2 layers to 8% of their channels and lost 6.89 points (resnet56
# 0.99, shufflenet_v2 1.34); keeping at least 0.3 of every layer lost 0.79 / 0.80 / 1.00 and also cut the latency
# by more (0.91-0.93 of the MAC cut, against 0.79-0.90), since thin high-resolution layers run least efficiently.
# Earlier, uniform allocation cut resnet56's latency by 0.83 of its MAC cut but lost 17 points after a short
# fine-tune (3 epochs over 20,000 images).
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
    """Torch-Pruning's global L1 pruning, stepped until the MACs are at most ``target`` of the model's.

    It cannot follow a zero-padded channel shortcut (ResNet-56's option A), so there it would
    prune the residual stream out of step with the padding and break the classifier; the
    convs that write the residual stream (the stem and each block's conv2) are left to it
    unpruned, which is also what our pruner's dependency graph concludes for that model.
    """
    import torch_pruning as tp

    from models.cifar_resnet import CifarBasicBlock, PadShortcut

    model = copy.deepcopy(model).eval()
    example = torch.randn(1, 3, 32, 32)
    base, _ = tp.utils.count_ops_and_params(model, example)
    ignored = [[m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]]
    if any(isinstance(m, PadShortcut) for m in model.modules()):
        ignored += [model.conv1] + [b.conv2 for b in model.modules() if isinstance(b, CifarBasicBlock)]
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                       iterative_steps=100, pruning_ratio=0.95, ignored_layers=ignored, round_to=8,
                                       global_pruning=True)
    for _ in range(100):
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(model, example)
        if macs <= target * base:
            break
    return model


def fine_tune(model: torch.nn.Module, train, args: argparse.Namespace) -> tuple[torch.nn.Module, float]:
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_epochs=0, weight_decay=5e-4,
                      precision=args.precision, progress=False, seed=0, num_workers=args.workers)
    start = time.monotonic()
    Trainer(model, cfg, train, None, log=lambda s: print("   ", s, flush=True)).fit()
    return model.eval().cpu(), time.monotonic() - start


def score(model: torch.nn.Module, test) -> float:
    """Top-1 on the GPU when there is one (the model comes back on the CPU)."""
    top1 = evaluate(model, test, batch_size=256, device="cuda" if torch.cuda.is_available() else "cpu").top1
    model.cpu()
    return top1


def ours_configs(args: argparse.Namespace) -> dict[str, PruneConfig]:
    """Method name -> our pruning config: "ours" (--allocation, --min-keep) and each --variants entry."""
    target = f"macs={args.target}"
    configs = {"ours": PruneConfig(target=target, allocation=args.allocation, min_keep=args.min_keep)}
    for spec in filter(None, (v.strip() for v in args.variants.split(","))):
        if spec in ALLOCATION_TEXT:
            configs[f"ours-{spec}"] = PruneConfig(target=target, allocation=spec)
        elif spec.startswith("min") and _is_fraction(spec[3:]):
            configs[f"ours-{spec}"] = PruneConfig(target=target, min_keep=float(spec[3:]))
        else:
            raise SystemExit(f"--variants: {spec!r} is neither an allocation ({', '.join(ALLOCATION_TEXT)}) "
                             "nor minF (a global allocation keeping at least F of every layer, e.g. min0.3)")
    return configs


def _is_fraction(text: str) -> bool:
    try:
        return 0 <= float(text) < 1
    except ValueError:
        return False


def method_order(key: str, args: argparse.Namespace) -> list[str]:
    peer = ["torch-pruning"] if key in PEER_MODELS or args.peer_everywhere else []
    return ["unpruned", CONTROL, *ours_configs(args), *peer]


def row_file(out: Path, key: str, method: str) -> Path:
    return out / key / "rows" / f"{method}.json"


def run_model(key: str, data: str, out: Path, args: argparse.Namespace) -> list[dict]:
    """Prune, fine-tune and score every method of one model; each finished method is kept (resume)."""
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
    wanted = args.methods.split(",") if args.methods else None
    configs = ours_configs(args)
    for method in method_order(key, args):
        if (wanted and method not in wanted) or row_file(out, key, method).is_file():
            continue
        row: dict = {"model": key, "arch": meta.arch, "method": method, "checkpoint": str(ckpt), "target": args.target}
        print(f"{key}: {method}", flush=True)
        t = time.monotonic()
        try:
            if method == "unpruned":
                model = base
            elif method == CONTROL:
                model = copy.deepcopy(base)
            elif method in configs:
                result = prune(base, configs[method], 32)
                model = result.model
                row.update(allocation=configs[method].allocation, min_keep=configs[method].min_keep)
            else:
                model = torch_pruning(base, args.target)
        except Exception as err:  # noqa: BLE001 - a method's failure is a result
            traceback.print_exc()
            save_row(out, {**row, "error": f"{type(err).__name__}: {err}"})
            continue
        row.update(macs=count_macs(model, 32), params=count_parameters(model), prune_seconds=time.monotonic() - t)
        if method != "unpruned":
            if method != CONTROL:
                row["top1_pruned"] = score(model, test)
            model, row["finetune_seconds"] = fine_tune(model, train, args)
            row["finetune_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
            save_model(out, key, method, model, meta, result.transform() if method in configs else None)
        row["top1"] = score(model, test)
        tflite_file(out, key, method).unlink(missing_ok=True)  # a rerun method's old .tflite is stale
        save_row(out, row)
        print(json.dumps(row), flush=True)
    return model_rows(out, key, args) if args.no_latency else convert_and_time(out, key, args)


def convert_and_time(out: Path, key: str, args: argparse.Namespace) -> list[dict]:
    """Convert what is not converted yet, time one model's methods side by side, and keep the cuts in the rows."""
    rows = model_rows(out, key, args)
    tflite = {}
    for row in filter(timed, rows):
        path = tflite_file(out, key, row["method"])
        tflite[row["method"]] = path if path.is_file() else keep_tflite(rebuild(row, out), path)
    add_latency(rows, tflite, args)
    for row in rows:
        save_row(out, row)
    return rows


def tflite_file(out: Path, key: str, method: str) -> Path:
    return out / key / f"{method}.tflite"


def timed(row: dict) -> bool:
    """Every model that ran, but the control: it has the unpruned model's architecture, hence its latency."""
    return "error" not in row and row["method"] != CONTROL


def save_row(out: Path, row: dict) -> None:
    path = row_file(out, row["model"], row["method"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2))


def model_rows(out: Path, key: str, args: argparse.Namespace) -> list[dict]:
    return [json.loads(row_file(out, key, m).read_text()) for m in method_order(key, args)
            if row_file(out, key, m).is_file()]


def save_model(out: Path, key: str, method: str, model: torch.nn.Module, meta: CheckpointMeta,
               transform: dict | None) -> None:
    """Ours and the control as rebuildable checkpoints; Torch-Pruning's weights alone (its structure is re-derived)."""
    folder = out / key / method
    if method == "torch-pruning":
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), folder / "state_dict.pt")
        return
    save_checkpoint(folder, model, CheckpointMeta(
        arch=meta.arch, options=meta.options, num_classes=meta.num_classes, input_size=32,
        normalization=meta.normalization, labels=meta.labels,
        transforms=[*meta.transforms, *([transform] if transform else [])]))


def rebuild(row: dict, out: Path) -> torch.nn.Module:
    """The fine-tuned model of a row, from what save_model kept (no pickles)."""
    if row["method"] == "unpruned":
        return load_checkpoint(row["checkpoint"])[0]
    folder = out / row["model"] / row["method"]
    if row["method"] != "torch-pruning":
        return load_checkpoint(folder)[0]
    # Torch-Pruning is deterministic given the weights: re-run it on the unpruned model for the structure.
    model = torch_pruning(load_checkpoint(row["checkpoint"])[0], row["target"])
    model.load_state_dict(torch.load(folder / "state_dict.pt", map_location="cpu", weights_only=True))
    return model.eval()


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
        if "top1" in row and row["method"] != "unpruned":
            row["top1_drop"] = base["top1"] - row["top1"]
        if "tflite_ms" in row and row["method"] not in ("unpruned", CONTROL):
            row["mac_cut"] = 1 - row["macs"] / base["macs"]
            row["latency_cut"] = 1 - row["tflite_ms"] / base["tflite_ms"]
            row["latency_cut_per_mac_cut"] = row["latency_cut"] / row["mac_cut"]
    control = next((r for r in rows if r["method"] == CONTROL and "top1" in r), None)
    for row in rows:
        if control and "top1" in row and row["method"] not in ("unpruned", CONTROL):
            row["top1_drop_vs_control"] = control["top1"] - row["top1"]


def retime(out: Path, args: argparse.Namespace) -> None:
    """Convert and time the finished models of every model in --out (e.g. fine-tuned on another machine)."""
    for key in MODELS:
        if model_rows(out, key, args):
            convert_and_time(out, key, args)
            print(f"{key}: timed", flush=True)


def render(rows: list[dict], args: argparse.Namespace, minutes: float) -> str:
    env = environment()
    devices = sorted({r["finetune_device"] for r in rows if r.get("finetune_device")})
    variants = {m: c for m, c in ours_configs(args).items() if m != "ours"}
    lines = [
        "## Structured pruning on CIFAR-10 (`benchmarks/prune_cifar10.py`)",
        "",
        f"Command: `python benchmarks/prune_cifar10.py --data <cifar10> --epochs {args.epochs} "
        f"--train-images {args.train_images or 'all'} --test-images {args.test_images or 'all'} "
        f"--models {args.models} --allocation {args.allocation} --min-keep {args.min_keep:g}"
        + ("" if Path(args.checkpoints) == TRAINED else f" --checkpoints {_home(args.checkpoints)}")
        + (f" --variants {args.variants}" if args.variants else "") + "`. "
        f"Target: at most {args.target:g} of the MACs (2x fewer). Same fine-tune for every "
        f"method: {args.epochs} epoch(s) over {args.train_images or 'all'} training images, SGD lr {args.lr:g} cosine, "
        f"batch {args.batch_size}, {args.precision}"
        + (f", on {', '.join(devices)}" if devices else "") + ". "
        f"Ours: L1, {ALLOCATION_TEXT[args.allocation]}"
        + (f" keeping at least {args.min_keep:g} of every layer" if args.min_keep else "") + ", widths multiple of 8"
        + "".join(f"; {m}: {ALLOCATION_TEXT[c.allocation]}"
                  + (f" keeping at least {c.min_keep:g} of every layer" if c.min_keep else "") for m, c in variants.items())
        + f". `{CONTROL}` is the unpruned model given the same fine-tune, so the gain of the extra training alone "
        "shows. Torch-Pruning 1.6.0: MagnitudePruner, L1, global, round_to=8, stepped to the same MAC target "
        "(on resnet56 it prunes inside the blocks only, as it cannot follow the zero-padded shortcuts; so does ours). "
        "Latency: fp32 .tflite (onnx2tf) on the host LiteRT interpreter, 1 thread, XNNPACK; the models of one "
        f"row group are timed together, round-robin ({args.timing_rounds} rounds of 20 runs each), and the fastest "
        "run is reported (on a shared host, load only ever adds time). "
        + (f"Converted and timed with --retime ({minutes:.0f} min)." if args.retime else f"Whole run: {minutes:.0f} min."),
        "",
        env.markdown(),
        "",
        "| model | method | MACs | params | top-1 % pruned | top-1 % fine-tuned | Δ top-1 | Δ vs same fine-tune | "
        ".tflite ms | MAC cut | latency cut | latency cut / MAC cut |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pct = lambda v: "" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    num = lambda v, f="{:.2f}": "" if v is None else f.format(v)  # noqa: E731
    neg = lambda v: None if v is None else -v  # noqa: E731
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['method']} | fails: {r['error'][:80]} ||||||||||")
            continue
        lines.append(f"| {r['model']} | {r['method']} | {format_count(r['macs'])} | {format_count(r['params'])} | "
                     f"{num(r.get('top1_pruned'))} | {num(r['top1'])} | {num(neg(r.get('top1_drop')), '{:+.2f}')} | "
                     f"{num(neg(r.get('top1_drop_vs_control')), '{:+.2f}')} | {num(r.get('tflite_ms'), '{:.3f}')} | "
                     f"{pct(r.get('mac_cut'))} | {pct(r.get('latency_cut'))} | {num(r.get('latency_cut_per_mac_cut'))} |")
    return "\n".join(lines)


def _home(path: str) -> str:
    return str(Path(path).expanduser()).replace(str(Path.home()), "~")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(CACHE / "datasets" / "cifar10"), help="CIFAR-10 tarball or folder")
    ap.add_argument("--out", default=str(CACHE / "benchmarks" / "prune_cifar10"), help="outside the repository")
    ap.add_argument("--checkpoints", default=str(TRAINED), help="train_cifar10.py's checkpoints (<dir>/<model>/best)")
    ap.add_argument("--models", default="resnet56,mobilenet_v2,shufflenet_v2")
    ap.add_argument("--methods", help="only these methods (comma-separated; default all), e.g. to share the work "
                                      "between processes")
    ap.add_argument("--target", type=float, default=0.5, help="fraction of MACs kept")
    ap.add_argument("--epochs", type=int, default=10, help="fine-tune epochs, the same for every method")
    ap.add_argument("--train-images", type=int, default=0, help="fine-tune on an evenly spread subset (0: all)")
    ap.add_argument("--test-images", type=int, default=0, help="evaluate on an evenly spread subset (0: all)")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--allocation", choices=sorted(ALLOCATION_TEXT), default="global",
                    help="ours: the same kept fraction in every layer (uniform) or cost-aware global greedy")
    ap.add_argument("--min-keep", type=float, default=0.3, help="ours: keep at least this fraction of every layer")
    ap.add_argument("--variants", default="min0", help="more configurations of ours, each its own row: an allocation "
                                                   "(uniform, global) or minF (global, keeping at least F of every layer)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--workers", type=int, default=0, help="data-loading processes for the fine-tune")
    ap.add_argument("--shufflenet-minutes", type=float, default=60.0, help="training budget if no checkpoint")
    ap.add_argument("--shufflenet-epochs", type=int, default=30)
    ap.add_argument("--peer-everywhere", action="store_true", help="also try Torch-Pruning on shufflenet_v2")
    ap.add_argument("--timing-rounds", type=int, default=5, help="round-robin timing rounds per model group")
    ap.add_argument("--no-latency", action="store_true",
                    help="prune, fine-tune and score only (e.g. on a GPU machine without LiteRT); --retime later")
    ap.add_argument("--retime", action="store_true", help="convert and time the models already fine-tuned in --out")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    ours_configs(args)  # a bad --variants fails before any work
    unknown = [k for k in args.models.split(",") if k not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    data = str(dataset_dir(args.data))
    out = outside_repo(args.out)
    start = time.monotonic()
    if args.retime:
        retime(out, args)
    else:
        for key in args.models.split(","):
            run_model(key, data, out, args)
    done = [r for k in MODELS for r in model_rows(out, k, args)]
    (out / "results.json").write_text(json.dumps(done, indent=2))
    if not args.no_write and not args.no_latency:
        update_section("prune_cifar10", render(done, args, (time.monotonic() - start) / 60))
        print("BENCHMARKS.md updated")


if __name__ == "__main__":
    main()
