"""Replay a recorded QAT preparation when a checkpoint is loaded (see ``mobile_compress.structure``).

The spec is ``{"kind": "qat", "method": "qat"|"ptq", "input_shape": [1, 3, H, W]}``;
the prepared graph depends only on the architecture, so preparing the fresh zoo
model again gives the module names the saved state_dict holds, ranges included.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from mobile_compress.errors import UserError
from mobile_compress.quantization.prepare import prepare


def spec_for(method: str, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """The ``meta.transforms`` entry of a quantized checkpoint."""
    return {"kind": "qat", "method": method, "input_shape": [int(v) for v in input_shape]}


def apply(model: nn.Module, spec: Mapping[str, Any]) -> nn.Module:
    shape = spec.get("input_shape")
    if not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise UserError(f"the 'qat' entry of transforms has input_shape {shape!r}, expected [1, channels, height, "
                        "width]", hint="re-save the checkpoint with mobile-compress quantize")
    return prepare(model, tuple(shape))
