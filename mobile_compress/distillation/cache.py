"""Teacher outputs kept per training image, so the teacher runs once per image instead of once per epoch.

Why the key is the image's content: the engine hands a hook the batch tensors, not the dataset
indices. Each cached entry is keyed by a hash of the exact bytes of one input tensor, which
identifies the dataset image when the training inputs are deterministic; a cached output is
therefore never served for any other input (a different input is simply a miss, and the teacher
runs). With random augmentation every epoch's input differs, so a cache would only cost memory:
``check_cacheable`` refuses it up front with a clear error (open the training data without
augmentation, e.g. ``--no-augment``, to cache). The cache lives in memory for one ``fit`` call.
"""
from __future__ import annotations

import hashlib

import torch
from torch.utils.data import Dataset

from mobile_compress.errors import UserError


def check_cacheable(data: Dataset, where: str = "distillation config") -> None:
    """Refuse caching when the training data is augmented (an ``ImageDataset`` opened with train=True)."""
    if getattr(data, "train", False) is True:
        raise UserError(
            f"{where}: cache_teacher needs the same input for an image in every epoch, but the training data "
            "is augmented (random crops and flips), so cached teacher outputs would never be reused",
            hint="turn off augmentation (--no-augment / augment: false) or turn off cache_teacher",
        )


def fingerprints(inputs: torch.Tensor) -> list[bytes]:
    """One 16-byte hash per sample of the exact tensor bytes."""
    flat = inputs.detach().to("cpu", torch.float32).contiguous().view(len(inputs), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


class TeacherCache:
    """Maps an input's fingerprint to the teacher outputs of that input (a dict of named tensors)."""

    def __init__(self) -> None:
        self._entries: dict[bytes, dict[str, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, keys: list[bytes]) -> list[dict[str, torch.Tensor] | None]:
        found = [self._entries.get(k) for k in keys]
        hit = sum(f is not None for f in found)
        self.hits += hit
        self.misses += len(keys) - hit
        return found

    def store(self, keys: list[bytes], outputs: dict[str, torch.Tensor]) -> None:
        cpu = {name: value.detach().float().cpu() for name, value in outputs.items()}
        for i, key in enumerate(keys):
            self._entries[key] = {name: value[i] for name, value in cpu.items()}
