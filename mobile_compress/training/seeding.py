"""Seeds and RNG state, so a resumed run draws the same numbers as an uninterrupted one.

The data order, the loader's worker seeds and in-process augmentation depend on
(seed, epoch, rank) only; ``get_rng_state`` / ``set_rng_state`` carry the global
generators across a resume inside ``train_state.pt``.
"""
from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + 1) % 2**63


def seed_epoch(generator: torch.Generator, data: Dataset, seed: int, epoch: int, rank: int) -> None:
    """Seed the loader's generator (shuffle order, worker seeds) and the dataset's own augmentation, if it has one
    (``reseed``: augmentation in this process, num_workers=0), for this epoch."""
    generator.manual_seed(derive_seed(seed, epoch, rank))
    if callable(getattr(data, "reseed", None)):
        data.reseed(derive_seed(seed, epoch, rank))  # type: ignore[attr-defined]


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
