"""The training loop: one engine for plain training, fine-tuning and every compression stage.

``Trainer.fit`` trains with the optimiser and schedule of a ``TrainConfig``,
validates, keeps the best checkpoint and, given an ``out_dir``, writes after
every epoch everything needed to resume exactly where it stopped (even after a
``kill -9``). Compression stages extend it through ``Hook`` objects (see
``hooks.py``) instead of editing it. Under ``torchrun`` the same call trains with
DistributedDataParallel (see ``distributed.py``).

Files in ``out_dir``::

    last/             checkpoint of the latest finished epoch
    best/             checkpoint with the best validation top-1 (the latest one without validation data;
                      the first epoch's until a validated epoch exists)
    history.jsonl     one EpochStats per line
    train_state.pt    model, optimizer, schedule, hook and RNG state: the commit point for resuming
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from mobile_compress.errors import UserError
from mobile_compress.report.atomic import atomic_open, write_text
from mobile_compress.training import distributed
from mobile_compress.training.checkpoint import (CheckpointMeta, checkpoint_exists, load_state_strict, model_state,
                                                 save_checkpoint)
from mobile_compress.training.config import TrainConfig, resolve_device
from mobile_compress.training.evaluate import EvalResult, evaluate
from mobile_compress.training.hooks import Hook
from mobile_compress.training.optim import build_optimizer, build_scheduler, raise_bn_momentum

STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.jsonl"
STATE_FORMAT = 1


@dataclass
class EpochStats:
    """Numbers of one epoch (``epoch`` counts from 0). Accuracies in percent.

    ``val_*`` are None on epochs without validation. ``lr`` is the rate of the
    epoch's last step; ``images_per_sec`` counts training images over all ranks.
    """

    epoch: int
    train_loss: float
    train_top1: float
    val_top1: float | None
    val_top5: float | None
    lr: float
    seconds: float
    images_per_sec: float
    val_loss: float | None = None
    val_n: int = 0
    train_n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EpochStats":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainResult:
    """The outcome of ``fit``: every epoch's stats (including those before a resume)."""

    epochs: list[EpochStats]
    best_val_top1: float | None
    stopped_early: bool
    elapsed: float  # seconds of training, summed over resumed runs
    best_epoch: int | None = None
    out_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    """Train ``model`` on ``train_data`` (a Dataset of (image tensor, int label)).

    ``meta`` describes the model for the checkpoints written to ``out_dir``
    (arch and options so ``load_checkpoint`` can rebuild it); its labels and
    normalization are taken from the dataset when left empty. Without ``meta``
    the checkpoints name the model's class, which the zoo may not know.
    ``log`` receives the one-line epoch summaries (default: print on rank 0).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_data: Dataset,
        val_data: Dataset | None = None,
        hooks: Sequence[Hook] = (),
        out_dir: str | os.PathLike | None = None,
        meta: CheckpointMeta | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if isinstance(data, DataLoader):
                raise TypeError(f"{name} must be a Dataset; the Trainer builds its own loaders (seeding, DDP)")
        if len(train_data) == 0:  # type: ignore[arg-type]
            raise UserError("the training dataset is empty", hint="check the data path and split")
        if val_data is not None and len(val_data) == 0:  # type: ignore[arg-type]
            raise UserError("the validation dataset is empty", hint="check the data path and split")
        self.hooks: list[Hook] = list(hooks)
        for h in self.hooks:
            if not isinstance(h, Hook):
                raise TypeError(f"hooks must subclass mobile_compress.training.Hook, got {type(h).__name__}")
        self.model = model
        self.config = config
        self.train_data = train_data
        self.val_data = val_data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.meta = meta
        self._log_fn = log

        # State visible to hooks; set up in fit().
        self.module: nn.Module = model
        self.device = torch.device("cpu")
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.dist = distributed.DistContext()
        self.epoch = 0
        self.step = 0
        self.global_step = 0
        self.steps_per_epoch = 0
        self.total_steps = 0
        self.resumed = False
        self.should_stop = False
        self.history: list[EpochStats] = []
        self.best_val_top1: float | None = None
        self.best_epoch: int | None = None
        self.extra_params: list[nn.Parameter] = []
        self._generator = torch.Generator()
        self._sample_shape: tuple[int, ...] | None = None
        self._num_outputs: int | None = None
        self._improved = False
        self._data_labels: list[str] = []
        self._data_norm: dict[str, Any] | None = None

    # ------------------------------------------------------------------ properties for hooks

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    # ------------------------------------------------------------------ fit

    def fit(self, resume: bool = False) -> TrainResult:
        """Train for ``config.epochs`` (or until the time budget / a hook stops it).

        With ``resume=True`` it continues from ``out_dir/train_state.pt`` and
        reaches the same weights as an uninterrupted run with the same seed.
        The model keeps the final (not the best) weights; the best are in ``out_dir/best``.
        """
        if resume and self.out_dir is None:
            raise UserError("cannot resume without an output directory", hint="pass the run directory (--out)")
        env = distributed.torchrun_env()
        self.device = resolve_device(self.config.device, local_rank=env[2] if env else 0)
        self.dist = distributed.setup(self.device.type)
        try:
            return self._fit(resume)
        finally:
            distributed.cleanup(self.dist)

    def _fit(self, resume: bool) -> TrainResult:
        # The default rule (TrainConfig.resolve) sizes what was left open to this process's share of the data.
        share = math.ceil(len(self.train_data) / self.world_size)  # type: ignore[arg-type]
        cfg = self.config = self.config.resolve(share)
        run_start = time.monotonic()
        state = self._read_state() if resume else None
        self.resumed = state is not None
        self.history, self.best_val_top1, self.best_epoch = [], None, None
        self.global_step, self.should_stop = 0, False
        _seed_everything(cfg.seed)
        self.model.to(self.device)
        self._fill_meta_from_data()
        loader = self._train_loader()
        self.steps_per_epoch = len(loader)
        if self.steps_per_epoch == 0:
            raise UserError(f"the training data gives no full batch (batch_size {cfg.batch_size})",
                            hint="lower batch_size")
        raise_bn_momentum(self.model, self.steps_per_epoch)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if self.is_main and self.out_dir is not None and not resume:
            self._clear_previous_run()

        for h in self.hooks:
            h.on_fit_start(self)
        if state is not None:
            load_state_strict(self.model, state["model"], f"{self.out_dir / STATE_FILE} (model)",
                              hint="resume with the same model and options as the interrupted run")
            self._load_hook_states(state["hooks"])
        self.extra_params = self._collect_extra_parameters()
        distributed.broadcast_parameters(self.extra_params, self.dist)
        self.module = distributed.wrap(self.model, self.dist, self.device)
        self.optimizer = build_optimizer(cfg, list(self.model.parameters()) + self.extra_params)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        start_epoch, prev_elapsed = 0, 0.0
        if state is not None:
            start_epoch, prev_elapsed = self._restore(state)
        stopped_early = False
        for epoch in range(start_epoch, cfg.epochs):
            stats = self._run_epoch(epoch, loader)
            last_epoch = epoch == cfg.epochs - 1
            over_time = cfg.max_minutes is not None and time.monotonic() - run_start >= cfg.max_minutes * 60
            stop = distributed.any_rank((self.should_stop or over_time) and not last_epoch, self.dist, self.device)
            elapsed = prev_elapsed + time.monotonic() - run_start
            if self.is_main and self.out_dir is not None:
                self._save_epoch(epoch, stats, elapsed)
            self._log(self._summary(stats))
            if stop:
                stopped_early = True
                why = f"time budget of {cfg.max_minutes:g} min reached" if over_time else "a hook asked to stop"
                self._log(f"stopping after epoch {epoch + 1}/{cfg.epochs}: {why}"
                          + (" (continue with resume)" if self.out_dir is not None else ""))
                break

        result = TrainResult(
            epochs=list(self.history),
            best_val_top1=self.best_val_top1,
            stopped_early=stopped_early,
            elapsed=prev_elapsed + time.monotonic() - run_start,
            best_epoch=self.best_epoch,
            out_dir=str(self.out_dir) if self.out_dir is not None else None,
        )
        for h in self.hooks:
            h.on_fit_end(self, result)
        return result

    # ------------------------------------------------------------------ one epoch

    def _run_epoch(self, epoch: int, loader: DataLoader) -> EpochStats:
        cfg = self.config
        self.epoch = epoch
        t0 = time.monotonic()
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        # The shuffle order and worker seeds depend on (seed, epoch, rank) only, so a resumed run sees the same data.
        self._generator.manual_seed(_derive_seed(cfg.seed, epoch, self.rank))
        # Augmentation in this process (num_workers=0) restarts from the same seed too.
        if callable(getattr(self.train_data, "reseed", None)):
            self.train_data.reseed(_derive_seed(cfg.seed, epoch, self.rank))
        self.module.train()
        for h in self.hooks:
            h.on_epoch_start(self, epoch)

        sums, lr = self._train_steps(epoch, loader)
        distributed.sync_buffers(self.model, self.dist)
        train_seconds = time.monotonic() - t0
        loss_sum, correct, n = distributed.all_reduce_sum(sums, self.dist).tolist()
        train_loss = loss_sum / max(n, 1)
        if not math.isfinite(train_loss):
            raise UserError(f"training diverged: the loss is {train_loss} in epoch {epoch + 1}",
                            hint="lower lr, add warm-up (warmup_epochs), or check the data for NaNs")

        val: EvalResult | None = None
        if self.val_data is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1):
            val = evaluate(self.model, self.val_data, device=self.device, batch_size=cfg.batch_size,
                           num_workers=cfg.num_workers, distributed=self.dist.enabled)
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss,
            train_top1=100.0 * correct / max(n, 1),
            val_top1=val.top1 if val else None,
            val_top5=val.top5 if val else None,
            lr=lr,
            seconds=time.monotonic() - t0,
            images_per_sec=n / train_seconds if train_seconds > 0 else 0.0,
            val_loss=val.loss if val else None,
            val_n=val.n if val else 0,
            train_n=int(n),
        )
        self.history.append(stats)
        self._improved = val is not None and (self.best_val_top1 is None or val.top1 > self.best_val_top1)
        if self._improved:
            self.best_val_top1, self.best_epoch = val.top1, epoch  # type: ignore[union-attr]
        for h in self.hooks:
            h.on_epoch_end(self, epoch, stats)
        return stats

    def _train_steps(self, epoch: int, loader: DataLoader) -> tuple[torch.Tensor, float]:
        """All optimisation steps of one epoch; returns (loss*n, correct, n) sums on this rank and the last lr."""
        cfg = self.config
        assert self.optimizer is not None and self.scheduler is not None
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        show = cfg.progress and self.is_main and sys.stderr.isatty()
        bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                   dynamic_ncols=True, disable=not show)
        lr = self.optimizer.param_groups[0]["lr"]
        t0 = time.monotonic()
        try:
            for step, batch in enumerate(loader):
                self.step = step
                inputs = batch[0].to(self.device, non_blocking=True)
                targets = torch.as_tensor(batch[1]).to(self.device, non_blocking=True)
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.zero_grad(set_to_none=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                    outputs = self.module(inputs)
                    loss = self.criterion(outputs, targets)
                    for h in self.hooks:
                        loss = h.loss(self, inputs, targets, outputs, loss)
                        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                            raise TypeError(f"{type(h).__name__}.loss must return a scalar tensor, got {loss!r:.80}")
                loss.backward()
                distributed.average_gradients(self.extra_params, self.dist)
                for h in self.hooks:
                    h.on_after_backward(self)
                self.optimizer.step()
                self.scheduler.step()
                self.global_step += 1
                for h in self.hooks:
                    h.on_step_end(self)

                with torch.no_grad():
                    k = targets.shape[0]
                    sums[0] += loss.detach().double() * k
                    sums[1] += (outputs.argmax(dim=1) == targets).sum()
                    sums[2] += k
                if self._sample_shape is None:
                    self._sample_shape, self._num_outputs = tuple(inputs.shape[1:]), int(outputs.shape[1])
                if show:
                    bar.update(1)
                    if step % 10 == 0 or step == len(loader) - 1:
                        s = sums.tolist()
                        seconds = time.monotonic() - t0
                        bar.set_postfix(loss=f"{s[0] / s[2]:.4f}", acc=f"{100 * s[1] / s[2]:.1f}%", lr=f"{lr:.3g}",
                                        img_s=f"{s[2] * self.world_size / max(seconds, 1e-9):.0f}")
        finally:
            bar.close()
        return sums, lr

    # ------------------------------------------------------------------ data

    def _train_loader(self) -> DataLoader:
        cfg = self.config
        sampler = None
        per_rank = len(self.train_data)  # type: ignore[arg-type]
        if self.dist.enabled:
            sampler = DistributedSampler(self.train_data, num_replicas=self.world_size, rank=self.rank,
                                         shuffle=True, seed=cfg.seed, drop_last=False)
            per_rank = len(sampler)
        # A last batch of one sample breaks BatchNorm in training mode: drop it.
        drop_last = per_rank > 1 and per_rank % cfg.batch_size == 1
        return DataLoader(
            self.train_data,
            batch_size=cfg.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            generator=self._generator,
            worker_init_fn=seed_worker,
        )

    # ------------------------------------------------------------------ hooks' extras and state

    def _collect_extra_parameters(self) -> list[nn.Parameter]:
        own = {id(p) for p in self.model.parameters()}
        seen: set[int] = set()
        extra: list[nn.Parameter] = []
        for h in self.hooks:
            for p in h.extra_parameters():
                if not isinstance(p, torch.Tensor):
                    raise TypeError(f"{type(h).__name__}.extra_parameters must yield tensors, got {type(p).__name__}")
                if id(p) in own or id(p) in seen:
                    continue
                seen.add(id(p))
                extra.append(p)
        return extra

    def _hook_names(self) -> list[str]:
        return [f"{type(h).__module__}.{type(h).__qualname__}" for h in self.hooks]

    def _load_hook_states(self, saved: list[dict[str, Any]]) -> None:
        names = [s["name"] for s in saved]
        if names != self._hook_names():
            raise UserError(
                f"{self.out_dir / STATE_FILE} was written with hooks {names}, this run has {self._hook_names()}",
                hint="resume with the same compression stage and options as the interrupted run",
            )
        for h, s in zip(self.hooks, saved):
            h.load_state_dict(s["state"])

    # ------------------------------------------------------------------ saving and resuming

    def _fill_meta_from_data(self) -> None:
        data = self.train_data
        labels = [str(c) for c in getattr(data, "classes", None) or []]
        norm = getattr(data, "normalization", None)
        norm = norm.to_dict() if norm is not None and hasattr(norm, "to_dict") else norm
        if self.meta is not None:
            if not self.meta.labels and labels and len(labels) == self.meta.num_classes:
                self.meta = replace(self.meta, labels=labels)
            if self.meta.normalization is None and isinstance(norm, dict):
                self.meta = replace(self.meta, normalization=norm)
        self._data_labels, self._data_norm = labels, norm if isinstance(norm, dict) else None

    def _epoch_meta(self, stats: EpochStats) -> CheckpointMeta:
        meta = self.meta
        if meta is None:  # describe the model as well as we can; load_checkpoint needs a zoo arch
            shape = self._sample_shape or ()
            size: int | tuple[int, int] = 0
            if len(shape) >= 2:
                size = shape[-1] if shape[-1] == shape[-2] else (shape[-2], shape[-1])
            n = self._num_outputs or len(self._data_labels) or 1
            meta = CheckpointMeta(arch=type(self.model).__name__, num_classes=n, input_size=size or 1,
                                  labels=self._data_labels if len(self._data_labels) == n else [],
                                  normalization=self._data_norm)
        metrics = {k: v for k, v in stats.to_dict().items() if k not in ("seconds", "images_per_sec")}
        metrics["best_val_top1"] = self.best_val_top1
        return replace(meta, metrics={**meta.metrics, **metrics})

    def _save_epoch(self, epoch: int, stats: EpochStats, elapsed: float) -> None:
        assert self.out_dir is not None and self.optimizer is not None and self.scheduler is not None
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        meta = self._epoch_meta(stats)
        save_checkpoint(out / "last", self.model, meta)
        # best/ always exists after the first epoch, even before the first validation
        if self._improved or self.val_data is None or not checkpoint_exists(out / "best"):
            save_checkpoint(out / "best", self.model, meta)
        write_text(out / HISTORY_FILE, "".join(json.dumps(s.to_dict()) + "\n" for s in self.history))
        state = {
            "format": STATE_FORMAT,
            "next_epoch": epoch + 1,
            "global_step": self.global_step,
            "model": model_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_val_top1": self.best_val_top1,
            "best_epoch": self.best_epoch,
            "history": [s.to_dict() for s in self.history],
            "elapsed": elapsed,
            "config": self.config.to_dict(),
            "hooks": [{"name": n, "state": h.state_dict()} for n, h in zip(self._hook_names(), self.hooks)],
            "rng": get_rng_state(),
        }
        with atomic_open(out / STATE_FILE, "wb") as fh:  # last: this file is the commit point
            torch.save(state, fh)

    def _read_state(self) -> dict[str, Any]:
        assert self.out_dir is not None
        file = self.out_dir / STATE_FILE
        if not file.is_file():
            raise UserError(f"nothing to resume: {file} does not exist",
                            hint="no epoch of that run finished; start it again without resume")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001
            raise UserError(f"cannot read {file}: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
                            hint="the file is damaged; start the run again without resume") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UserError(f"{file} is not a train state this version of mobile-compress can resume",
                            hint="start the run again without resume")
        return state

    def _restore(self, state: dict[str, Any]) -> tuple[int, float]:
        assert self.optimizer is not None and self.scheduler is not None
        file = self.out_dir / STATE_FILE  # type: ignore[operator]
        saved = TrainConfig.from_dict(state["config"]).to_dict()
        ignore = {"epochs", "max_minutes", "progress", "num_workers", "device", "eval_every"}
        changed = [k for k, v in self.config.to_dict().items() if k not in ignore and saved.get(k) != v]
        if changed:
            self._log(f"warning: resuming with changed settings {changed}; the result will differ from "
                      f"an uninterrupted run")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as err:
            raise UserError(f"{file}: the optimizer state does not fit this run ({err})",
                            hint="resume with the same optimizer, model and compression stage") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_step = int(state["global_step"])
        self.best_val_top1 = state["best_val_top1"]
        self.best_epoch = state["best_epoch"]
        self.history = [EpochStats.from_dict(d) for d in state["history"]]
        set_rng_state(state["rng"])
        next_epoch = int(state["next_epoch"])
        self._log(f"resuming from {file} after epoch {next_epoch}/{self.config.epochs}")
        return next_epoch, float(state["elapsed"])

    def _clear_previous_run(self) -> None:
        """A fresh run must not leave files of an older run that a later resume would mix in."""
        assert self.out_dir is not None
        stale = [self.out_dir / STATE_FILE, self.out_dir / HISTORY_FILE]
        if any(p.exists() for p in stale):
            self._log(f"note: starting a fresh run in {self.out_dir}; the previous run's files there are replaced")
        for p in stale:
            p.unlink(missing_ok=True)
        for d in (self.out_dir / "best", self.out_dir / "last"):
            if checkpoint_exists(d):  # also ends a save of the old run that a kill interrupted
                shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ output

    def _log(self, message: str) -> None:
        if not self.is_main:
            return
        if self._log_fn is not None:
            self._log_fn(message)
        else:
            print(message, flush=True)

    def _summary(self, s: EpochStats) -> str:
        parts = [f"epoch {s.epoch + 1}/{self.config.epochs}", f"loss {s.train_loss:.4f}", f"train {s.train_top1:.2f}%"]
        if s.val_top1 is not None:
            parts.append(f"val {s.val_top1:.2f}%" + (f" (top-5 {s.val_top5:.2f}%)" if s.val_top5 is not None else ""))
            if self.best_epoch == s.epoch:
                parts[-1] += " *best*"
        parts += [f"lr {s.lr:.3g}", f"{s.seconds:.1f}s", f"{s.images_per_sec:.0f} img/s"]
        return "  ".join(parts)


# ---------------------------------------------------------------------- seeding and RNG state


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _derive_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + 1) % 2**63


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy and random follow the worker's torch seed (set from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def get_rng_state() -> dict[str, Any]:
    """torch / CUDA / numpy / python RNG states as tensors and ints, loadable with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": [int(x) for x in internal], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of ``get_rng_state``."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
