"""The linear algebra of low-rank factorisation: truncated SVD and Tucker-2, in float64.

Kept free of ``nn.Module`` code so the maths can be tested on plain tensors: a
full-rank factorisation must give back the weight exactly, and the error must
shrink as the rank grows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def spectrum(matrix: Tensor) -> Tensor:
    """Singular values of a 2-D tensor, largest first, in float64."""
    return torch.linalg.svdvals(matrix.detach().to(torch.float64))


def energy_kept(singular_values: Tensor) -> Tensor:
    """``kept[r-1]``: the fraction of the squared singular values that the first ``r`` keep."""
    squares = singular_values.to(torch.float64) ** 2
    total = squares.sum()
    if total <= 0:
        return torch.ones_like(squares)
    return torch.cumsum(squares, 0) / total


def rank_for_energy(singular_values: Tensor, energy: float) -> int:
    """The smallest rank that keeps at least ``energy`` of the squared singular values."""
    return rank_for_kept(energy_kept(singular_values), energy)


def rank_for_kept(kept: Tensor, energy: float) -> int:
    """``rank_for_energy`` on an ``energy_kept`` curve."""
    # a tiny tolerance, so energy=1.0 is met by the full rank despite rounding in the cumulative sum
    rank = int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype) - 1e-12).item()) + 1
    return min(rank, len(kept))


def unfold(weight: Tensor, mode: int) -> Tensor:
    """Mode-``mode`` unfolding of a conv weight (out, in, kh, kw): that axis becomes the rows."""
    return torch.movedim(weight, mode, 0).reshape(weight.shape[mode], -1)


def relative_error(original: Tensor, approximation: Tensor) -> float:
    """``||W - W'||_F / ||W||_F`` (0 for an all-zero weight reproduced exactly)."""
    original = original.detach().to(torch.float64)
    diff = torch.linalg.vector_norm(original - approximation.detach().to(torch.float64))
    norm = torch.linalg.vector_norm(original)
    return float(diff / norm) if norm > 0 else float(diff)


@dataclass
class SvdFactors:
    """``W ≈ second @ first`` with ``first`` (rank, in) and ``second`` (out, rank)."""

    first: Tensor
    second: Tensor

    def reconstruct(self) -> Tensor:
        return self.second @ self.first


def truncated_svd(matrix: Tensor, rank: int) -> SvdFactors:
    """Best rank-``rank`` approximation (Eckart-Young), with the singular values split evenly
    between the two factors so that both layers start at a similar scale for fine-tuning."""
    u, s, vh = torch.linalg.svd(matrix.detach().to(torch.float64), full_matrices=False)
    root = s[:rank].sqrt()
    return SvdFactors(first=root[:, None] * vh[:rank], second=u[:, :rank] * root[None, :])


@dataclass
class TuckerFactors:
    """``W ≈ core ×₀ out_factor ×₁ in_factor`` for a conv weight W (out, in, kh, kw).

    ``core`` is (r_out, r_in, kh, kw); ``out_factor`` (out, r_out) and ``in_factor``
    (in, r_in) have orthonormal columns.
    """

    core: Tensor
    out_factor: Tensor
    in_factor: Tensor

    def reconstruct(self) -> Tensor:
        return torch.einsum("abhw,oa,ib->oihw", self.core, self.out_factor, self.in_factor)


def _leading_vectors(matrix: Tensor, rank: int) -> Tensor:
    """The first ``rank`` left singular vectors; past the matrix's rank, an orthonormal completion."""
    u, _, _ = torch.linalg.svd(matrix, full_matrices=rank > min(matrix.shape))
    return u[:, :rank]


def tucker2(weight: Tensor, out_rank: int, in_rank: int, hooi_iterations: int = 0) -> TuckerFactors:
    """Tucker-2 of a conv weight over its output and input channel axes.

    Starts from the HOSVD (leading singular vectors of each unfolding), then refines
    with ``hooi_iterations`` rounds of higher-order orthogonal iteration, each of which
    can only lower the reconstruction error.
    """
    w = weight.detach().to(torch.float64)
    u_out = _leading_vectors(unfold(w, 0), out_rank)
    u_in = _leading_vectors(unfold(w, 1), in_rank)
    for _ in range(hooi_iterations):
        u_out = _leading_vectors(unfold(torch.einsum("oihw,ib->obhw", w, u_in), 0), out_rank)
        u_in = _leading_vectors(unfold(torch.einsum("oihw,oa->aihw", w, u_out), 1), in_rank)
    core = torch.einsum("oihw,oa,ib->abhw", w, u_out, u_in)
    return TuckerFactors(core=core, out_factor=u_out, in_factor=u_in)
