"""Full-integer int8 for a float checkpoint, with the activation ranges our observers measure.

Why not onnx2tf's own calibration: on MobileNetV3 at 224 its int8 lost up to 7 points of
top-1 agreement with the float model (93% on MobileNetV3-Large x0.5, whether it calibrated
on 32, 256 or 1,000 images), while the same images through our fake-quant twin
(``mobile_compress.quantization.prepare`` + ``calibrate``: min/max per tensor, including
the inner tensors of each hardswish) and the range transfer that quantized checkpoints
use (``converters.range_transfer``) agreed on 99% (100% with 512 images), at about the same
speed. The twin is a post-training quantization of the model; parity is still measured
against the float model.

Sources we cannot trace (a .pt2 program, an .onnx file, a model torch.fx refuses) keep
onnx2tf's calibration; the report says which ranges an int8 artifact carries.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from mobile_compress.errors import UserError


def observed_twin(module: Any, calib_nchw: np.ndarray, batch_size: int = 1) -> Any:
    """The fake-quant twin of ``module`` (left untouched), its ranges observed on ``calib_nchw``.

    Raises ``UserError`` when torch.fx cannot trace the model.
    """
    import torch

    from mobile_compress.quantization import calibrate, prepare

    shape = (batch_size, *calib_nchw.shape[1:])
    twin = prepare(copy.deepcopy(module).eval(), shape)
    images = torch.from_numpy(np.ascontiguousarray(calib_nchw, np.float32))
    calibrate(twin, torch.utils.data.TensorDataset(images, torch.zeros(len(images), dtype=torch.long)),
              images=len(images))
    return twin.eval()


def require_observable(requested: str, kind: str, path: Any) -> None:
    """``observers`` needs a PyTorch model to observe: a checkpoint (known from the path, before loading)."""
    if requested == "observers" and kind != "checkpoint":
        raise UserError(f"--int8-ranges observers needs a checkpoint; {path} is a {kind} file",
                        hint="convert the checkpoint it came from, or use --int8-ranges onnx2tf")


def choose_twin(requested: str, source: Any, calib_nchw: np.ndarray, batch_size: int) -> tuple[Any, str]:
    """(twin or None, what the int8 artifact's ranges come from, for the report).

    ``auto``: our observers for checkpoints, onnx2tf's calibration otherwise or when the
    model cannot be traced. ``observers``: ours or a ``UserError`` saying why not.
    """
    if requested == "onnx2tf":
        return None, "onnx2tf calibration (asked for)"
    if source.kind != "checkpoint":
        require_observable(requested, source.kind, source.path)
        return None, f"onnx2tf calibration ({source.kind} source: no PyTorch model to observe)"
    try:
        twin = observed_twin(source.module, calib_nchw, batch_size)
    except UserError as err:
        if requested == "observers":
            raise
        return None, f"onnx2tf calibration (our observers could not trace the model: {err.message})"
    return twin, f"observers: min/max over {len(calib_nchw)} calibration images (post-training quantization)"
