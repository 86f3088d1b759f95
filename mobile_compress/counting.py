"""Model size and cost: parameters, multiply-accumulates, serialized bytes.

These are the numbers a compression report compares before and after (and that
papers publish), so they are counted the conventional way: MACs of convolutions
(groups-aware) and linear layers only, measured by running one zero image through
the model with forward hooks. Element-wise ops, pooling, BatchNorm and activations
are not counted; on these models they are well under 1% of the total.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

__all__ = [
    "InputSize",
    "ModelStats",
    "count_macs",
    "count_parameters",
    "format_count",
    "model_stats",
    "normalize_input_size",
    "serialized_size_bytes",
]

InputSize = Union[int, Sequence[int]]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def normalize_input_size(input_size: InputSize) -> tuple[int, int, int]:
    """``224`` -> ``(3, 224, 224)``; a ``(C, H, W)`` sequence is checked and kept."""
    if isinstance(input_size, bool):
        raise ValueError(f"input_size must be an int or (C, H, W), got {input_size!r}")
    if isinstance(input_size, int):
        dims: tuple[int, ...] = (3, input_size, input_size)
    elif isinstance(input_size, Sequence) and not isinstance(input_size, str) and len(input_size) == 3:
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in input_size):
            raise ValueError(f"input_size must contain integers, got {input_size!r}")
        dims = tuple(input_size)
    else:
        raise ValueError(f"input_size must be an int (square RGB image) or (C, H, W), got {input_size!r}")
    if min(dims) < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    return dims  # type: ignore[return-value]


def _conv_macs(module: _ConvNd, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    kernel = math.prod(module.kernel_size)
    if module.transposed:
        # Every input element is scattered into out_channels/groups * kernel outputs.
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    # Every output element is a dot product over in_channels/groups * kernel inputs.
    return output.numel() * (module.in_channels // module.groups) * kernel


def _linear_macs(module: nn.Linear, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    return output.numel() * module.in_features


def _reference_tensor(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def count_macs(model: nn.Module, input_size: InputSize) -> int:
    """Multiply-accumulates of one forward pass on a single image of ``input_size``.

    Runs a zero batch of 1 in eval mode under ``no_grad`` (so BatchNorm statistics
    and dropout are untouched) and restores every submodule's training flag after.
    """
    shape = normalize_input_size(input_size)
    device, dtype = _reference_tensor(model)
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        if isinstance(module, _ConvNd):
            total += _conv_macs(module, inputs, output)
        else:
            total += _linear_macs(module, inputs, output)  # type: ignore[arg-type]

    modes = [(m, m.training) for m in model.modules()]
    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (_ConvNd, nn.Linear))
    ]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return total


def serialized_size_bytes(model: nn.Module) -> int:
    """Bytes that ``torch.save(model.state_dict(), f)`` writes (measured in memory)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@dataclass(frozen=True)
class ModelStats:
    """Size and cost of a model for one input size ``(C, H, W)``."""

    params: int
    macs: int
    size_bytes: int
    input_size: tuple[int, int, int]


def model_stats(model: nn.Module, input_size: InputSize) -> ModelStats:
    """Parameters, MACs at ``input_size`` and serialized size, in one record."""
    shape = normalize_input_size(input_size)
    return ModelStats(
        params=count_parameters(model),
        macs=count_macs(model, shape),
        size_bytes=serialized_size_bytes(model),
        input_size=shape,
    )


_UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))


def format_count(n: float) -> str:
    """Human-readable count with 3 significant-ish digits: 3504872 -> ``"3.50 M"``.

    Values below 1000 print as plain integers; 999_999 rounds up to ``"1.00 M"``.
    """
    sign = "-" if n < 0 else ""
    value = abs(n)
    if value >= 1000:
        for scale, unit in _UNITS:
            # Pick the unit by the rounded value so 999_999 is "1.00 M", not "1000.00 K".
            if round(value / scale, 2) >= 1:
                return f"{sign}{value / scale:.2f} {unit}"
    return f"{sign}{round(value):d}"
