"""Fold a per-channel input normalisation into the model, for clients that take one mean/std.

MediaPipe Tasks normalise every channel with the same mean and std. A model trained
with per-channel statistics (ImageNet's, the default for image folders) is exported as
``model((x - mean) / std)`` taking ``x = pixel / 255``, so its metadata says mean 0,
std 255 for all channels and MediaPipe feeds it exactly what training saw.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mobile_compress.data import Normalization

#: What the folded model takes: pixel / 255, no further normalisation.
UNIT = Normalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def needs_folding(norm: Normalization) -> bool:
    return len(set(norm.mean)) > 1 or len(set(norm.std)) > 1


class NormalizedInput(nn.Module):
    """``model((x - mean) / std)``; mean/std are constants in the exported graph, not weights."""

    def __init__(self, model: nn.Module, norm: Normalization) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(norm.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(norm.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def export_folded(model: nn.Module, norm: Normalization, size: tuple[int, int], path: Path) -> Path:
    """A ``torch.export`` program (.pt2) of ``model`` with ``norm`` in front, for ``converters.convert``."""
    wrapped = NormalizedInput(model, norm).eval()
    with torch.no_grad():
        program = torch.export.export(wrapped, (torch.zeros(1, 3, *size),))
    torch.export.save(program, str(path))
    return path


def renormalize(x_nchw, source: Normalization, target: Normalization):
    """Images normalised with ``source`` re-expressed with ``target`` (same pixels)."""
    import numpy as np

    if source == target:
        return x_nchw
    s_mean, s_std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in (source.mean, source.std))
    t_mean, t_std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in (target.mean, target.std))
    return ((x_nchw * s_std + s_mean) - t_mean) / t_std
