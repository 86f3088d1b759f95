"""Knowledge distillation on CIFAR-10: the ResNet-56 teacher into MobileNetV2 and ShuffleNetV2 students.

    python benchmarks/distill_cifar10.py --budget-minutes 240
    python benchmarks/distill_cifar10.py --budget-minutes 60 --train-images 10000 --epochs 4

``--train-images`` trains every run on the same class-balanced subset of the training set (a
folder of links beside the dataset), for budgets where whole epochs of 50,000 images do not fit.

Every student is trained with the same recipe, the same number of epochs and the same
per-run wall-clock cap, once without KD (cross-entropy only) and once with each
distillation loss (logit KD, hint, attention transfer, relational KD; each on top of the
cross-entropy), and evaluated on the 10,000 test images. The epoch count is planned from a
throughput probe of the slowest variant (student step plus teacher forward) so every run
finishes its cosine schedule inside its share of the budget. Results go to
``--out/results.json`` after each run (a killed benchmark continues where it stopped) and to
BENCHMARKS.md. The teacher is the checkpoint of ``benchmarks/train_cifar10.py``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, dataset_dir, outside_repo, update_section  # noqa: E402

import models  # noqa: E402
from mobile_compress.counting import format_count, model_stats  # noqa: E402
from mobile_compress.data import open_dataset  # noqa: E402
from mobile_compress.distillation import DistillConfig  # noqa: E402
from mobile_compress.distillation import DistillJob, run_distill_job  # noqa: E402
from mobile_compress.training import EvalJob, run_eval_job  # noqa: E402
from mobile_compress.report import environment  # noqa: E402
from mobile_compress.training import TrainJob, run_train_job  # noqa: E402
from mobile_compress.training import TrainConfig, load_checkpoint  # noqa: E402

TEACHER = CACHE / "benchmarks" / "train_cifar10" / "resnet56" / "best"
STUDENTS = {
    "mobilenet_v2": {"width_mult": 0.5, "small_input": True},
    "shufflenet_v2_x1_0": {"small_input": True},
}
VARIANTS = ("none", "logit", "hint", "at", "rkd")


def training_subset(data: Path, images: int) -> Path:
    """A folder of links: the first ``images / classes`` training images of every class, and the whole test set."""
    classes = sorted(d for d in (data / "train").iterdir() if d.is_dir())
    per_class = images // len(classes)
    subset = data.parent / f"{data.name}-train{per_class * len(classes)}"
    for folder in classes:
        target = subset / "train" / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(folder.iterdir())[:per_class]:
            link = target / image.name
            if not link.is_symlink():
                link.symlink_to(image)
    if not (subset / "test").exists():
        (subset / "test").symlink_to(data / "test", target_is_directory=True)
    return subset


@dataclass(frozen=True)
class Run:
    student: str
    variant: str

    @property
    def key(self) -> str:
        return f"{self.student}/{self.variant}"


def probe_seconds_per_image(student: str, options: dict, teacher: torch.nn.Module, batch: int, precision: str,
                            steps: int = 4) -> float:
    """Wall time of one image through a distillation step (student train step + teacher forward)."""
    model = models.create(student, num_classes=10, **options).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            with torch.no_grad():
                teacher(x)
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] / batch


def kd_config(variant: str, args: argparse.Namespace) -> DistillConfig:
    return DistillConfig(kd=(variant,), temperature=args.temperature, alpha=args.alpha)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(CACHE / "datasets" / "cifar10"), help="cifar10.tar.gz or its folder")
    ap.add_argument("--teacher", default=str(TEACHER), help="teacher checkpoint (ResNet-56 of train_cifar10.py)")
    ap.add_argument("--out", default=str(CACHE / "benchmarks" / "distill_cifar10"), help="runs (outside the repo)")
    ap.add_argument("--budget-minutes", type=float, required=True,
                    help="total wall-clock budget, shared equally by all runs (each run is also capped at its share)")
    ap.add_argument("--students", default=",".join(STUDENTS), help="comma-separated subset of " + ",".join(STUDENTS))
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    ap.add_argument("--epochs", type=int, help="epochs per run instead of the planned number (the cap still applies)")
    ap.add_argument("--train-images", type=int, default=0,
                    help="train every run on this class-balanced subset of the training images (0: all)")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--rerun", action="store_true", help="ignore results of an earlier invocation in --out")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()

    students = [s for s in args.students.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    bad = [s for s in students if s not in STUDENTS] + [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown student or variant: {', '.join(bad)}")
    data = dataset_dir(args.data)
    data = str(training_subset(data, args.train_images) if args.train_images else data)
    out = outside_repo(args.out)
    teacher, meta = load_checkpoint(args.teacher)
    train = open_dataset(data, split="train", image_size=32, train=True)
    test_images = len(open_dataset(data, split="test", image_size=32, train=False))
    teacher_top1 = run_eval_job(EvalJob(args.teacher, data)).result.top1
    print(f"teacher {meta.arch}: test top-1 {teacher_top1:.2f}%; {len(train)} train / {test_images} test images")

    runs = [Run(s, v) for s in students for v in variants]
    share_s = args.budget_minutes * 60 / len(runs)
    results_file = out / "results.json"
    results = {} if args.rerun or not results_file.exists() else json.loads(results_file.read_text())
    epochs_for: dict[str, int] = {}
    for student in students:
        spi = probe_seconds_per_image(student, STUDENTS[student], teacher, args.batch_size, args.precision)
        planned = max(1, math.floor(0.8 * share_s / ((len(train) + test_images / 3) * spi)))
        epochs_for[student] = args.epochs or planned
        print(f"{student}: probe {1 / spi:.0f} img/s with the teacher -> {epochs_for[student]} epochs per run "
              f"in {share_s / 60:.1f} min")

    for run in runs:
        settings = {"epochs": epochs_for[run.student], "cap_min": share_s / 60, "batch": args.batch_size,
                    "train_images": len(train),
                    "lr": args.lr, "precision": args.precision, "temperature": args.temperature, "alpha": args.alpha}
        if run.key in results and results[run.key]["settings"] == settings and results[run.key].get("done"):
            print(f"{run.key}: done in an earlier invocation, kept")
            continue
        config = TrainConfig(epochs=settings["epochs"], batch_size=args.batch_size, lr=args.lr, warmup_epochs=1
                             if settings["epochs"] > 1 else 0, weight_decay=5e-4, precision=args.precision,
                             max_minutes=share_s / 60, seed=0, eval_every=settings["epochs"])
        run_dir = out / run.student / run.variant
        resume = (run_dir / "train_state.pt").is_file() and results.get(run.key, {}).get("settings") == settings
        results[run.key] = {"settings": settings, "done": False}
        results_file.write_text(json.dumps(results, indent=2))
        print(f"== {run.key}: {settings['epochs']} epochs" + (" (resuming)" if resume else ""))
        options = STUDENTS[run.student]
        if run.variant == "none":
            job = run_train_job(TrainJob(model=run.student, data=data, out_dir=str(run_dir), config=config,
                                         options=options, image_size=32, normalization="cifar10", resume=resume))
        else:
            job = run_distill_job(DistillJob(teacher=args.teacher, student=run.student, data=data,
                                             out_dir=str(run_dir), distill=kd_config(run.variant, args),
                                             config=config, options=options, image_size=32, resume=resume))
        last = job.result.epochs[-1]
        results[run.key].update(done=True, student=run.student, variant=run.variant, epochs_run=len(job.result.epochs),
                                stopped_early=job.result.stopped_early, last_top1=last.val_top1,
                                best_top1=job.result.best_val_top1, minutes=job.result.elapsed / 60,
                                images_per_sec=sum(e.images_per_sec for e in job.result.epochs) / len(job.result.epochs))
        results_file.write_text(json.dumps(results, indent=2))  # after each run: nothing lost on a kill
        print(json.dumps(results[run.key], indent=2))

    if not args.no_write:
        update_section("distill_cifar10", render(results, students, variants, teacher_top1, meta.arch, args, len(train)))
        print("BENCHMARKS.md updated")


def render(results: dict, students: list[str], variants: list[str], teacher_top1: float, teacher_arch: str,
           args: argparse.Namespace, train_images: int) -> str:
    env = environment()
    lines = [
        "## Knowledge distillation on CIFAR-10 (`benchmarks/distill_cifar10.py`)",
        "",
        f"Command: `python benchmarks/distill_cifar10.py --budget-minutes {args.budget_minutes:g}"
        + (f" --train-images {args.train_images}" if args.train_images else "")
        + (f" --epochs {args.epochs}" if args.epochs else "") + "`. "
        + (f"Training set: a class-balanced subset of {train_images:,} of the 50,000 training images, the same for "
           "every run. " if args.train_images else "") + "Teacher: "
        f"{teacher_arch} from `train_cifar10.py` ({teacher_top1:.2f}% test top-1). Each student is trained once "
        "without KD and once with each loss on top of the cross-entropy, with the same epochs, recipe and per-run "
        f"time cap (SGD Nesterov, peak lr {args.lr:g}, cosine, batch {args.batch_size}, pad-4 crop + flip, "
        f"{args.precision} autocast; logit KD T={args.temperature:g}, alpha={args.alpha:g}; hint: the last teacher "
        "stage against the student stage of the same resolution through a 1x1 adapter; AT: up to three stage "
        "pairs, beta=1000; RKD: distance 25 + angle 50 on the penultimate features). Top-1 on the 10,000 test "
        "images after the last epoch; Δ is against the no-KD run of the same student.",
        "",
        env.markdown(),
        "",
        "| student | params | MACs (32×32) | loss | epochs | test top-1 % | Δ vs no KD | train img/s | wall min |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for student in students:
        stats = model_stats(models.create(student, num_classes=10, **STUDENTS[student]), 32)
        base = results.get(f"{student}/none", {}).get("last_top1")
        for variant in variants:
            r = results.get(f"{student}/{variant}")
            if not r or not r.get("done"):
                continue
            delta = "" if base is None or variant == "none" else f"{r['last_top1'] - base:+.2f}"
            stop = " (time cap)" if r["stopped_early"] else ""
            lines.append(f"| {student} ({', '.join(f'{k}={v}' for k, v in STUDENTS[student].items())}) | {format_count(stats.params)} | {format_count(stats.macs)} "
                         f"| {variant if variant != 'none' else 'none (CE only)'} | {r['epochs_run']}/"
                         f"{r['settings']['epochs']}{stop} | {r['last_top1']:.2f} | {delta} | "
                         f"{r['images_per_sec']:.0f} | {r['minutes']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
