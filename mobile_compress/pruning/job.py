"""Iterative prune and fine-tune, resumable: the job behind ``mobile-compress prune``.

The target is reached in ``steps`` equal steps of the removed fraction (for macs=0.5
and 2 steps: 0.75, then 0.5 of the ORIGINAL cost), each followed by
``epochs_per_step`` epochs of fine-tuning with the ordinary ``Trainer``. Extra hooks
(e.g. distillation from the unpruned model) are passed to every fine-tune through
``hook_factory(teacher, student)``.

Files in ``out_dir``::

    progress.json          the job's settings and every finished step (the commit point for resuming)
    step_K/pruned/         checkpoint right after pruning step K (its transforms rebuild it)
    step_K/finetune/       the Trainer's run directory (last/, best/, train_state.pt)
    final/                 the result: the last step's fine-tuned weights (last epoch, not
                           picked on the test split), its accuracy and cost in checkpoint.json

``resume=True`` continues after the last finished step, and inside a step from the
Trainer's own last finished epoch.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from mobile_compress.counting import count_macs, count_parameters
from mobile_compress.data import Normalization, open_dataset
from mobile_compress.errors import UserError
from mobile_compress.pruning.api import prune
from mobile_compress.pruning.config import PruneConfig
from mobile_compress.pruning.cost import LatencyTable
from mobile_compress.pruning.criteria import get_criterion
from mobile_compress.training import Hook, TrainConfig, Trainer, evaluate, load_checkpoint, save_checkpoint

PROGRESS_FILE = "progress.json"
HookFactory = Callable[[nn.Module, nn.Module], Sequence[Hook]]


def default_finetune_config() -> TrainConfig:
    """The fine-tune after each pruning step: the structure changed, the weights are trained, so one epoch at a
    low rate (MobileNetV2 x0.5 pruned to 0.6 of its MACs on the digits: 93.9 % after it)."""
    return TrainConfig(epochs=1, lr=0.01)


@dataclass
class PruneJob:
    """A pruning run as the user names it. ``data`` is needed to fine-tune (and for taylor)."""

    checkpoint: str
    out_dir: str
    config: PruneConfig
    data: str | None = None
    steps: int = 1
    epochs_per_step: int = 1
    train: TrainConfig = field(default_factory=default_finetune_config)
    resume: bool = False
    latency_table: LatencyTable | None = None
    cache_dir: str | None = None
    hook_factory: HookFactory | None = None  # (unpruned teacher, student) -> extra Trainer hooks
    log: Callable[[str], None] = print
    augment: bool = True  # random crops/flips on the fine-tuning images (off for data they do not suit)


@dataclass
class PruneJobResult:
    checkpoint: Path
    steps: list[dict[str, Any]]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    top1: float | None
    top1_before: float | None


def step_fractions(fraction: float, steps: int) -> list[float]:
    """Fractions of the original cost kept after each step, removing equal shares."""
    return [1.0 - (1.0 - fraction) * (k + 1) / steps for k in range(steps)]


def _check_job(job: PruneJob) -> None:
    if isinstance(job.steps, bool) or not isinstance(job.steps, int) or job.steps < 1:
        raise UserError(f"--steps {job.steps!r} must be an integer >= 1", hint="1 prunes once; 3-5 is gentler")
    if isinstance(job.epochs_per_step, bool) or not isinstance(job.epochs_per_step, int) or job.epochs_per_step < 0:
        raise UserError(f"--epochs-per-step {job.epochs_per_step!r} must be an integer >= 0",
                        hint="0 prunes without fine-tuning")
    if job.data is None and (job.epochs_per_step > 0 or get_criterion(job.config.criterion).needs_data):
        raise UserError(f"fine-tuning (and the {job.config.criterion} criterion) needs --data",
                        hint="pass --data DIR (the training images), or --epochs-per-step 0 with a norm criterion")
    if job.config.target.metric == "latency" and job.latency_table is None:
        raise UserError("--target latency=... needs a measured latency table",
                        hint="pass --latency-table FILE (built by profiler.latency_table)")


def _progress(out: Path) -> dict[str, Any]:
    f = out / PROGRESS_FILE
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{f} is not valid JSON ({err.msg})", hint="delete it and the step folders to start over") from None


def _earlier_run(out: Path) -> bool:
    """Whether ``out`` holds what a pruning run writes. Other files (the command's log, a latency table measured
    for this run) are not results; whether a folder may be used at all is ``run_folder.claim_out_dir``'s call."""
    return out.is_dir() and any(e.name == PROGRESS_FILE or e.name == "final" or e.name.startswith("step_")
                                for e in out.iterdir())


def _write_progress(out: Path, data: dict[str, Any]) -> None:
    tmp = out / (PROGRESS_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, out / PROGRESS_FILE)


def run_prune_job(job: PruneJob) -> PruneJobResult:
    _check_job(job)
    out = Path(job.out_dir)
    teacher, meta = load_checkpoint(job.checkpoint)
    size = meta.input_size
    settings = {"checkpoint": str(Path(job.checkpoint).resolve()), "config": job.config.to_dict(), "steps": job.steps,
                "epochs_per_step": job.epochs_per_step, "train": job.train.to_dict()}
    progress = _progress(out) if job.resume else {}
    if job.resume and progress and progress.get("settings") != settings:
        raise UserError(f"{out / PROGRESS_FILE} was written by a run with other settings",
                        hint="resume with the same checkpoint, target and schedule, or use a new --out")
    if not job.resume and _earlier_run(out):
        raise UserError(f"--out {out} holds an earlier pruning run", hint="pass --resume to continue that run, "
                        "or a new folder")
    out.mkdir(parents=True, exist_ok=True)
    progress = progress or {"settings": settings, "done": []}
    _write_progress(out, progress)

    train = val = None
    if job.data is not None:
        norm = Normalization.from_dict(meta.normalization) if meta.normalization else None
        opened = dict(image_size=size, normalization=norm, cache_dir=job.cache_dir, seed=job.train.seed)
        train = open_dataset(job.data, split="train", train=job.augment, **opened)
        val = open_dataset(job.data, split="test", train=False, **opened)
        if meta.labels and list(train.classes) != list(meta.labels):
            raise UserError(f"the classes of {job.data} differ from those {job.checkpoint} was trained on",
                            hint="fine-tune on data with the same class folders as the checkpoint's training data")
    batch = job.train.resolve(len(train)).batch_size if train is not None else None  # the default rule's, if unset
    top1_before = evaluate(teacher, val, batch_size=batch).top1 if val is not None else None

    model, current_meta = teacher, meta
    records: list[dict[str, Any]] = list(progress["done"])
    for k, fraction in enumerate(step_fractions(job.config.target.fraction, job.steps), start=1):
        step_dir = out / f"step_{k}"
        if k <= len(records):
            model, current_meta = load_checkpoint(step_dir / "finetune" / "last" if job.epochs_per_step
                                                  else step_dir / "pruned")
            continue
        if (step_dir / "pruned" / "checkpoint.json").is_file():
            model, current_meta = load_checkpoint(step_dir / "pruned")
            result_info: dict[str, Any] = json.loads((step_dir / "prune.json").read_text())
        else:
            batches = _batches(train, job) if get_criterion(job.config.criterion).needs_data else None
            result = prune(model, job.config, size, data=batches, latency=job.latency_table,
                           reference=teacher, reference_fraction=fraction)
            current_meta = replace(current_meta, transforms=[*current_meta.transforms, result.transform()],
                                   metrics={}, extra={**meta.extra, "pruned_from": str(job.checkpoint)})
            model = result.model
            result_info = result.summary()
            step_dir.mkdir(parents=True, exist_ok=True)
            (step_dir / "prune.json").write_text(json.dumps(result_info, indent=2))
            save_checkpoint(step_dir / "pruned", model, current_meta)  # the step's commit point
        job.log(f"step {k}/{job.steps}: kept {fraction:.3f} of the original {job.config.target.metric}; "
                f"MACs {count_macs(model, size) / 1e6:.2f} M, params {count_parameters(model) / 1e6:.3f} M")
        record = {"step": k, "fraction": fraction, "macs": count_macs(model, size),
                  "params": count_parameters(model), "prune": result_info}
        if job.epochs_per_step > 0:
            hooks = list(job.hook_factory(teacher, model)) if job.hook_factory else []
            record["hooks"] = [type(h).__name__ for h in hooks]
            cfg = replace(job.train, epochs=job.epochs_per_step)
            run_dir = step_dir / "finetune"
            trainer = Trainer(model, cfg, train, val, hooks=hooks, out_dir=run_dir, meta=current_meta, log=job.log)
            fit = trainer.fit(resume=(run_dir / "train_state.pt").is_file())
            model, current_meta = load_checkpoint(run_dir / "last")
            record["top1"] = fit.epochs[-1].val_top1 if fit.epochs else None
        records.append(record)
        progress["done"] = records
        _write_progress(out, progress)

    top1 = evaluate(model, val, batch_size=batch).top1 if val is not None else None
    macs_before, macs_after = count_macs(teacher, size), count_macs(model, size)
    final_meta = replace(current_meta, metrics={"top1": top1, "top1_before_pruning": top1_before,
                                                "macs": macs_after, "macs_before_pruning": macs_before,
                                                "params": count_parameters(model)})
    final = save_checkpoint(out / "final", model, final_meta)
    return PruneJobResult(final, records, macs_before, macs_after, count_parameters(teacher),
                          count_parameters(model), top1, top1_before)


def _batches(train, job: PruneJob):
    if train is None:
        return None
    loader = DataLoader(train, batch_size=job.train.resolve(len(train)).batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(job.train.seed))
    return iter(loader)
