"""``train_state.pt``: everything a run needs to continue exactly where it stopped.

Model, optimizer, schedule, best-so-far, history, config, each hook's state and the
RNG states, read back with ``torch.load(weights_only=True)``. It is written last each
epoch, atomically, so it is the commit point for resuming (even after a ``kill -9``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from mobile_compress.errors import UserError
from mobile_compress.report.atomic import atomic_open
from mobile_compress.training.checkpoint import model_state
from mobile_compress.training.config import TrainConfig
from mobile_compress.training.hooks import Hook
from mobile_compress.training.results import EpochStats
from mobile_compress.training.seeding import get_rng_state, set_rng_state

if TYPE_CHECKING:  # pragma: no cover
    from mobile_compress.training.engine import Trainer

STATE_FILE = "train_state.pt"
STATE_FORMAT = 1
# Settings that may change on resume without changing the result.
RESUMABLE_CHANGES = {"epochs", "max_minutes", "progress", "num_workers", "device", "eval_every"}


def hook_names(hooks: Sequence[Hook]) -> list[str]:
    return [f"{type(h).__module__}.{type(h).__qualname__}" for h in hooks]


def write_state(file: Path, trainer: "Trainer", epoch: int, elapsed: float) -> None:
    """The state after ``epoch`` (counted from 0); ``elapsed``: seconds of training so far, over all resumes."""
    assert trainer.optimizer is not None and trainer.scheduler is not None
    state = {
        "format": STATE_FORMAT,
        "next_epoch": epoch + 1,
        "global_step": trainer.global_step,
        "model": model_state(trainer.model),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "best_val_top1": trainer.best_val_top1,
        "best_epoch": trainer.best_epoch,
        "history": [s.to_dict() for s in trainer.history],
        "elapsed": elapsed,
        "config": trainer.config.to_dict(),
        "hooks": [{"name": n, "state": h.state_dict()} for n, h in zip(hook_names(trainer.hooks), trainer.hooks)],
        "rng": get_rng_state(),
    }
    with atomic_open(file, "wb") as fh:
        torch.save(state, fh)


def read_state(file: Path) -> dict[str, Any]:
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


def load_hook_states(file: Path, hooks: Sequence[Hook], saved: list[dict[str, Any]]) -> None:
    names = [s["name"] for s in saved]
    if names != hook_names(hooks):
        raise UserError(f"{file} was written with hooks {names}, this run has {hook_names(hooks)}",
                        hint="resume with the same compression stage and options as the interrupted run")
    for h, s in zip(hooks, saved):
        h.load_state_dict(s["state"])


def restore(file: Path, trainer: "Trainer", state: dict[str, Any], log: Callable[[str], None]) -> tuple[int, float]:
    """Optimizer, schedule, step count, best-so-far, history and RNG of ``state`` into ``trainer`` (whose model and
    hooks are restored already); returns the epoch to continue with and the seconds trained before."""
    assert trainer.optimizer is not None and trainer.scheduler is not None
    saved = TrainConfig.from_dict(state["config"]).to_dict()
    changed = [k for k, v in trainer.config.to_dict().items() if k not in RESUMABLE_CHANGES and saved.get(k) != v]
    if changed:
        log(f"warning: resuming with changed settings {changed}; the result will differ from an uninterrupted run")
    try:
        trainer.optimizer.load_state_dict(state["optimizer"])
    except ValueError as err:
        raise UserError(f"{file}: the optimizer state does not fit this run ({err})",
                        hint="resume with the same optimizer, model and compression stage") from None
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.global_step = int(state["global_step"])
    trainer.best_val_top1 = state["best_val_top1"]
    trainer.best_epoch = state["best_epoch"]
    trainer.history = [EpochStats.from_dict(d) for d in state["history"]]
    set_rng_state(state["rng"])
    next_epoch = int(state["next_epoch"])
    log(f"resuming from {file} after epoch {next_epoch}/{trainer.config.epochs}")
    return next_epoch, float(state["elapsed"])
