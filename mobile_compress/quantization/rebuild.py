"""Replay a recorded QAT preparation when a checkpoint is loaded (see ``mobile_compress.structure``).

The spec is ``{"kind": "qat", "method": "qat"|"ptq", "input_shape": [1, 3, H, W]}``;
the prepared graph depends only on the architecture, so preparing the fresh zoo
model again gives the module names the saved state_dict holds, ranges included.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn

from mobile_compress.errors import UserError
from mobile_compress.quantization.prepare import prepare


KIND = "qat"  # the ``meta.transforms`` kind of a quantized checkpoint (QAT and PTQ alike)


def spec_for(method: str, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """The ``meta.transforms`` entry of a quantized checkpoint."""
    return {"kind": KIND, "method": method, "input_shape": [int(v) for v in input_shape]}


def is_quantized(checkpoint: Any) -> bool:
    """Whether a checkpoint holds a fake-quant (QAT or PTQ) model: its transforms record the preparation.

    ``checkpoint``: its ``CheckpointMeta``, its ``transforms`` list, or a path. A path that is not a
    readable checkpoint (an .onnx or .pt2 file, a folder without checkpoint.json, nothing at all) is
    not a quantized checkpoint; loading it is what says why not.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        from mobile_compress.training import META_FILE, read_meta

        path = Path(checkpoint).expanduser()
        if not (path / META_FILE).is_file() and path.name not in (META_FILE, "weights.pt"):
            return False
        try:
            checkpoint = read_meta(path)
        except UserError:
            return False
    transforms: Sequence[Mapping[str, Any]] = getattr(checkpoint, "transforms", checkpoint)
    return any(t.get("kind") == KIND for t in transforms)


def apply(model: nn.Module, spec: Mapping[str, Any]) -> nn.Module:
    shape = spec.get("input_shape")
    if not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise UserError(f"the 'qat' entry of transforms has input_shape {shape!r}, expected [1, channels, height, "
                        "width]", hint="re-save the checkpoint with mobile-compress quantize")
    return prepare(model, tuple(shape))
