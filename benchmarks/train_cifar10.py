"""Train the CIFAR-10 teacher and student that the compression benchmarks start from.

    python benchmarks/train_cifar10.py --data ../shared/datasets/cifar10.tar.gz

Trains CIFAR ResNet-56 (teacher) and MobileNetV2 with the small-input stem
(student) by default, and on request (--models) ShuffleNetV2 x1.0 and MobileNetV3-Small, within a stated wall-clock budget, records top-1, time per epoch and
images/s in BENCHMARKS.md, and keeps the checkpoints outside the repository
(default ~/.cache/mobile-compress/benchmarks/train_cifar10/<model>/best).
The number of epochs is planned from a throughput probe so that the cosine
schedule completes inside the budget; the budget is also enforced as a hard stop.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, dataset_dir, outside_repo, update_section  # noqa: E402
from train_throughput import steps_per_second  # noqa: E402

import models  # noqa: E402
from mobile_compress.counting import format_count, model_stats  # noqa: E402
from mobile_compress.data import open_dataset  # noqa: E402
from mobile_compress.training import EvalJob, run_eval_job  # noqa: E402
from mobile_compress.report import environment  # noqa: E402
from mobile_compress.training import TrainJob, run_train_job  # noqa: E402
from mobile_compress.training import TrainConfig  # noqa: E402


@dataclass(frozen=True)
class Plan:
    model: str
    options: dict
    role: str
    share: float  # of the total budget


PLANS = (
    # The student trains about 3x slower an image on CPU (depthwise convs), so it gets more of the budget.
    Plan("resnet56", {}, "teacher", 0.4),
    Plan("mobilenet_v2", {"small_input": True}, "student", 0.6),
    # The quantization benchmark's other students; trained on request (--models), each with its own budget share.
    Plan("shufflenet_v2_x1_0", {"small_input": True}, "student", 0.5),
    Plan("mobilenet_v3_small", {"small_input": True}, "student", 0.5),
)
DEFAULT_MODELS = ("resnet56", "mobilenet_v2")  # the teacher and student every other benchmark starts from


def probe_images_per_sec(name: str, options: dict, batch: int, precision: str, steps: int = 8) -> float:
    """Training throughput on random 32×32 batches: the basis for the epoch plan."""
    model = models.create(name, num_classes=10, **options).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    bf16 = precision == "bf16"
    steps_per_second(model, opt, x, y, bf16, 2)  # warm-up
    return batch * steps_per_second(model, opt, x, y, bf16, steps)


def plan_epochs(budget_s: float, train_images: int, test_images: int, images_per_sec: float) -> int:
    # Evaluation costs about a third of a training step per image; data loading and
    # the probe's optimism take the rest of the 20% margin.
    epoch_s = (train_images + test_images / 3) / images_per_sec
    return max(1, math.floor(0.8 * budget_s / epoch_s))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="cifar10.tar.gz or its unpacked folder (train/, test/)")
    ap.add_argument("--out", default=str(CACHE / "benchmarks" / "train_cifar10"), help="checkpoints (outside the repo)")
    ap.add_argument("--budget-minutes", type=float, default=60.0, help="total wall-clock budget for all models")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help="subset to train; the others keep their rows from an earlier run in --out")
    ap.add_argument("--epochs", type=int, help="train this many epochs instead of the planned number (the budget still stops it)")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()

    data = str(dataset_dir(args.data))
    out = outside_repo(args.out)
    train = open_dataset(data, split="train", image_size=32, train=True)  # builds the decoded cache once
    test = open_dataset(data, split="test", image_size=32, train=False)
    print(f"CIFAR-10: {len(train)} train / {len(test)} test images, {len(train.classes)} classes")

    chosen = [p for p in PLANS if p.model in args.models.split(",")]
    results_file = out / "results.json"
    rows = {r["model"]: r for r in (json.loads(results_file.read_text()) if results_file.exists() else [])}
    for plan in chosen:
        budget_s = args.budget_minutes * 60 * plan.share / sum(p.share for p in chosen)
        ips = probe_images_per_sec(plan.model, plan.options, args.batch_size, args.precision)
        epochs = args.epochs or plan_epochs(budget_s, len(train), len(test), ips)
        print(f"{plan.model}: probe {ips:.0f} img/s -> {epochs} epochs in a {budget_s / 60:.1f} min budget")
        config = TrainConfig(epochs=epochs, batch_size=args.batch_size, optimizer="sgd", lr=0.1, momentum=0.9,
                             nesterov=True, weight_decay=5e-4, warmup_epochs=1, label_smoothing=0.0, seed=0,
                             num_workers=0, precision=args.precision, max_minutes=budget_s / 60)
        job = run_train_job(TrainJob(model=plan.model, data=data, out_dir=str(out / plan.model), config=config,
                                     options=plan.options, image_size=32, normalization="cifar10"))
        ev = run_eval_job(EvalJob(job.checkpoint, data, split="test"))
        stats = model_stats(models.create(plan.model, num_classes=10, **plan.options), 32)
        epochs_run = job.result.epochs
        rows[plan.model] = {
            "model": plan.model, "options": plan.options, "role": plan.role, "precision": args.precision,
            "budget_min": budget_s / 60, "epochs_planned": epochs, "epochs_run": len(epochs_run),
            "stopped_early": job.result.stopped_early, "test_top1": ev.result.top1, "test_top5": ev.result.top5,
            "sec_per_epoch": sum(e.seconds for e in epochs_run) / len(epochs_run),
            "train_images_per_sec": sum(e.images_per_sec for e in epochs_run) / len(epochs_run),
            "minutes": job.result.elapsed / 60, "params": stats.params, "macs": stats.macs,
            "checkpoint": str(job.checkpoint),
        }
        print(json.dumps(rows[plan.model], indent=2))
        results_file.write_text(json.dumps(list(rows.values()), indent=2))  # after each model: nothing lost on a kill

    if not args.no_write:
        update_section("train_cifar10", render([rows[p.model] for p in PLANS if p.model in rows], args))
        print("BENCHMARKS.md updated")


def render(rows: list[dict], args: argparse.Namespace) -> str:
    env = environment()
    shares = ", ".join(f"{r['model']} {r['budget_min']:.0f} min" for r in rows)
    total = sum(r["budget_min"] for r in rows)
    lines = [
        "## Training on CIFAR-10 (`benchmarks/train_cifar10.py`)",
        "",
        f"Command: `python benchmarks/train_cifar10.py --data <cifar10.tar.gz> --budget-minutes 60 "
        f"--precision {args.precision}` (`--models NAME --budget-minutes M --epochs N` reruns one model and keeps "
        "the other rows). Data: the JPEG copy of CIFAR-10 (50,000 train / 10,000 test). "
        f"Budget: {total:.0f} minutes of wall clock in all ({shares}); the epoch count "
        "is planned from a throughput probe so the cosine schedule finishes inside it, unless given. SGD (Nesterov, momentum 0.9), "
        f"peak lr 0.1 with 1 warm-up epoch, weight decay 5e-4, batch {args.batch_size}, pad-4 crop + flip, "
        f"{args.precision} autocast. Top-1 is measured on the 10,000 test images. These are budget-limited runs, "
        "far shorter than the usual 160-200 epochs, and the checkpoints are the starting points of the compression benchmarks.",
        "",
        env.markdown(),
        "",
        "| model | role | params | MACs (32×32) | epochs | s/epoch | train img/s | test top-1 % | test top-5 % | wall min |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = r["model"] + (" (small-input)" if r["options"].get("small_input") else "")
        stop = " (budget stop)" if r["stopped_early"] else ""
        lines.append(f"| {name} | {r['role']} | {format_count(r['params'])} | {format_count(r['macs'])} | "
                     f"{r['epochs_run']}/{r['epochs_planned']}{stop} | {r['sec_per_epoch']:.0f} | "
                     f"{r['train_images_per_sec']:.0f} | {r['test_top1']:.2f} | {r['test_top5']:.2f} | {r['minutes']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
