"""The training loop: one engine for plain training, fine-tuning and every compression stage.

``Trainer.fit`` trains with the optimiser and schedule of a ``TrainConfig``,
validates, keeps the best checkpoint and, given an ``out_dir``, writes after
every epoch everything needed to resume exactly where it stopped (even after a
``kill -9``). Compression stages extend it through ``Hook`` objects (see
``hooks.py``) instead of editing it. Under ``torchrun`` the same call trains with
DistributedDataParallel (see ``distributed.py``).

The Trainer holds the run's state (what hooks see) and orders the work; its parts:
``steps.py`` (one epoch's optimisation steps and the loader), ``progress.py`` (bar and
epoch lines), ``run_dir.py`` (last/, best/, history.jsonl), ``train_state.py`` (saving
and resuming), ``seeding.py`` (seeds and RNG state), ``results.py`` (EpochStats, TrainResult).

Files in ``out_dir``::

    last/             checkpoint of the latest finished epoch
    best/             checkpoint with the best validation top-1 (the latest one without validation data;
                      the first epoch's until a validated epoch exists)
    history.jsonl     one EpochStats per line
    train_state.pt    model, optimizer, schedule, hook and RNG state: the commit point for resuming
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mobile_compress.errors import UserError
from mobile_compress.training import distributed, run_dir, train_state
from mobile_compress.training.checkpoint import CheckpointMeta, load_state_strict
from mobile_compress.training.config import TrainConfig, resolve_device
from mobile_compress.training.evaluate import EvalResult, evaluate
from mobile_compress.training.hooks import Hook
from mobile_compress.training.optim import build_optimizer, build_scheduler, raise_bn_momentum
from mobile_compress.training.progress import summary_line
from mobile_compress.training.results import EpochStats, TrainResult
from mobile_compress.training.seeding import seed_epoch, seed_everything
from mobile_compress.training.steps import train_loader, train_steps

__all__ = ["EpochStats", "Trainer", "TrainResult"]


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
        self._facts = run_dir.ModelFacts()

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
        state_file = self.out_dir / train_state.STATE_FILE if self.out_dir is not None else None
        state = train_state.read_state(state_file) if resume and state_file is not None else None
        self.resumed = state is not None
        self.history, self.best_val_top1, self.best_epoch = [], None, None
        self.global_step, self.should_stop = 0, False
        seed_everything(cfg.seed)
        self.model.to(self.device)
        self.meta = run_dir.read_data_facts(self.train_data, self._facts, self.meta)
        loader = train_loader(self.train_data, cfg, self.dist, self.device, self._generator)
        self.steps_per_epoch = len(loader)
        if self.steps_per_epoch == 0:
            raise UserError(f"the training data gives no full batch (batch_size {cfg.batch_size})",
                            hint="lower batch_size")
        raise_bn_momentum(self.model, self.steps_per_epoch)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if self.is_main and self.out_dir is not None and not resume:
            run_dir.clear_previous_run(self.out_dir, self._log)

        for h in self.hooks:
            h.on_fit_start(self)
        if state is not None:
            load_state_strict(self.model, state["model"], f"{state_file} (model)",
                              hint="resume with the same model and options as the interrupted run")
            train_state.load_hook_states(state_file, self.hooks, state["hooks"])
        self.extra_params = _extra_parameters(self.hooks, self.model)
        distributed.broadcast_parameters(self.extra_params, self.dist)
        self.module = distributed.wrap(self.model, self.dist, self.device)
        self.optimizer = build_optimizer(cfg, list(self.model.parameters()) + self.extra_params)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        start_epoch, prev_elapsed = 0, 0.0
        if state is not None:
            start_epoch, prev_elapsed = train_state.restore(state_file, self, state, self._log)
        stopped_early = False
        for epoch in range(start_epoch, cfg.epochs):
            stats = self._run_epoch(epoch, loader)
            last_epoch = epoch == cfg.epochs - 1
            over_time = cfg.max_minutes is not None and time.monotonic() - run_start >= cfg.max_minutes * 60
            stop = distributed.any_rank((self.should_stop or over_time) and not last_epoch, self.dist, self.device)
            elapsed = prev_elapsed + time.monotonic() - run_start
            if self.is_main and self.out_dir is not None:
                self._save_epoch(epoch, stats, elapsed)
            self._log(summary_line(stats, cfg.epochs, self.best_epoch))
            if stop:
                stopped_early = True
                why = f"time budget of {cfg.max_minutes:g} min reached" if over_time else "a hook asked to stop"
                self._log(f"stopping after epoch {epoch + 1}/{cfg.epochs}: {why}"
                          + (" (continue with resume)" if self.out_dir is not None else ""))
                break

        result = TrainResult(epochs=list(self.history), best_val_top1=self.best_val_top1, stopped_early=stopped_early,
                             elapsed=prev_elapsed + time.monotonic() - run_start, best_epoch=self.best_epoch,
                             out_dir=str(self.out_dir) if self.out_dir is not None else None)
        for h in self.hooks:
            h.on_fit_end(self, result)
        return result

    def _run_epoch(self, epoch: int, loader: DataLoader) -> EpochStats:
        """Train one epoch, validate when due, note the best epoch; the hooks' epoch calls around it."""
        cfg = self.config
        self.epoch = epoch
        t0 = time.monotonic()
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        seed_epoch(self._generator, self.train_data, cfg.seed, epoch, self.rank)  # a resumed run sees the same data
        self.module.train()
        for h in self.hooks:
            h.on_epoch_start(self, epoch)

        totals = train_steps(self, epoch, loader)
        if self._facts.sample_shape is None:
            self._facts.sample_shape, self._facts.num_outputs = totals.sample_shape, totals.num_outputs
        distributed.sync_buffers(self.model, self.dist)
        train_seconds = time.monotonic() - t0
        loss_sum, correct, n = distributed.all_reduce_sum(totals.sums, self.dist).tolist()
        train_loss = loss_sum / max(n, 1)
        if not math.isfinite(train_loss):
            raise UserError(f"training diverged: the loss is {train_loss} in epoch {epoch + 1}",
                            hint="lower lr, add warm-up (warmup_epochs), or check the data for NaNs")

        val: EvalResult | None = None
        if self.val_data is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1):
            val = evaluate(self.model, self.val_data, device=self.device, batch_size=cfg.batch_size,
                           num_workers=cfg.num_workers, distributed=self.dist.enabled)
        stats = EpochStats(epoch=epoch, train_loss=train_loss, train_top1=100.0 * correct / max(n, 1),
                           val_top1=val.top1 if val else None, val_top5=val.top5 if val else None, lr=totals.lr,
                           seconds=time.monotonic() - t0,
                           images_per_sec=n / train_seconds if train_seconds > 0 else 0.0,
                           val_loss=val.loss if val else None, val_n=val.n if val else 0, train_n=int(n))
        self.history.append(stats)
        if val is not None and (self.best_val_top1 is None or val.top1 > self.best_val_top1):
            self.best_val_top1, self.best_epoch = val.top1, epoch
        for h in self.hooks:
            h.on_epoch_end(self, epoch, stats)
        return stats

    def _save_epoch(self, epoch: int, stats: EpochStats, elapsed: float) -> None:
        """The epoch's checkpoints and history, then train_state.pt (the commit point)."""
        assert self.out_dir is not None
        meta = run_dir.epoch_meta(self.meta, self.model, self._facts, stats, self.best_val_top1)
        best = self.best_epoch == epoch or self.val_data is None
        run_dir.save_epoch_files(self.out_dir, self.model, meta, self.history, best)
        train_state.write_state(self.out_dir / train_state.STATE_FILE, self, epoch, elapsed)

    def _log(self, message: str) -> None:
        if not self.is_main:
            return
        if self._log_fn is not None:
            self._log_fn(message)
        else:
            print(message, flush=True)


def _extra_parameters(hooks: Sequence[Hook], model: nn.Module) -> list[nn.Parameter]:
    """The hooks' trainable tensors outside ``model``, each once."""
    own = {id(p) for p in model.parameters()}
    seen: set[int] = set()
    extra: list[nn.Parameter] = []
    for h in hooks:
        for p in h.extra_parameters():
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"{type(h).__name__}.extra_parameters must yield tensors, got {type(p).__name__}")
            if id(p) in own or id(p) in seen:
                continue
            seen.add(id(p))
            extra.append(p)
    return extra
