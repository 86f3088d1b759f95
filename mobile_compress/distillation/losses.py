"""The distillation losses as plain functions of tensors, so each can be checked on its own.

Formulas (``s`` student, ``t`` teacher; every loss is averaged, never summed over the batch):

- logit KD (Hinton et al. 2015): ``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean. The
  ``T^2`` keeps the gradient scale of the soft term independent of T.
- hint (FitNets, Romero et al. 2015): mean squared error between the adapted student map and the
  teacher map (same shape).
- attention transfer (Zagoruyko & Komodakis 2017): the attention map of a feature map is the mean
  over channels of its squared activations, flattened and L2-normalised per sample; the loss of
  one pair is the mean squared difference of the two maps (the authors' code; the recipe weights
  the sum over pairs with beta/2, beta = 1000).
- relational KD (Park et al. 2019): distance term: pairwise Euclidean distances of the batch's
  embeddings, each divided by its mean over distinct pairs, compared with the Huber loss over
  distinct pairs; angle term: cosines of the angles formed by every triplet, Huber loss.

They are computed in float32 whatever the autocast dtype of the forward pass (float64 stays
float64, so they can be checked with ``torch.autograd.gradcheck``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _f(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def logit_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-target loss, already multiplied by ``temperature ** 2``."""
    t = float(temperature)
    log_p_s = F.log_softmax(_f(student_logits) / t, dim=1)
    p_t = F.softmax(_f(teacher_logits) / t, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * (t * t)


def resize_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring an (N, C, H, W) map to ``size``: area pooling down, bilinear up (no-op when equal)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def hint_loss(adapted_student: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """MSE between an adapted student map and the teacher map; the student map is resized to the teacher's."""
    s = resize_map(_f(adapted_student), tuple(teacher_feature.shape[-2:]))
    return F.mse_loss(s, _f(teacher_feature))


def attention_map(feature: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W): mean of squared activations over channels, resized, L2-normalised."""
    a = _f(feature).pow(2).mean(dim=1, keepdim=True)
    if size is not None:
        a = resize_map(a, size)
    return F.normalize(a.flatten(1), dim=1)


def attention_transfer(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """AT loss of one layer pair; the student's map is resized to the teacher's spatial size."""
    size = tuple(teacher_feature.shape[-2:])
    return (attention_map(student_feature, size) - attention_map(teacher_feature)).pow(2).mean()


def _embedding(x: torch.Tensor) -> torch.Tensor:
    x = _f(x)
    return x.mean(dim=(2, 3)) if x.ndim == 4 else x.flatten(1)


def _normalized_distances(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = torch.cdist(e, e)
    off = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    pairs = d[off]
    return pairs / pairs.mean().clamp_min(1e-12), off


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between mean-normalised pairwise distances (distinct pairs only)."""
    s = _embedding(student)
    with torch.no_grad():
        t, _ = _normalized_distances(_embedding(teacher))
    s_d, _ = _normalized_distances(s)
    return F.smooth_l1_loss(s_d, t)


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # diff[j, i] = unit(e_i - e_j)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()  # cos of the angle i-j-k at j


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between the cosines of the angles of all triplets of the batch."""
    s = _embedding(student)
    with torch.no_grad():
        t = _angles(_embedding(teacher))
    return F.smooth_l1_loss(_angles(s), t)
