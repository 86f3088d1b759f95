"""What is inside a .tflite: its ops, their tensor types, and which ops of an int8 model run in float."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobile_compress.litert import interpreter

# Ops that only move data between float I/O and the int8 graph (allowed at the model's edges).
_EDGE_OPS = {"QUANTIZE", "DEQUANTIZE"}


@dataclass
class FloatOp:
    """An op of a quantized model that reads or writes float tensors."""

    index: int
    op: str
    float_tensors: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.op, "float_tensors": self.float_tensors}


def op_counts(path: Path | str) -> dict[str, int]:
    """How many of each op the model holds, e.g. {'CONV_2D': 52, ...}."""
    interp = interpreter(path, delegates=False)
    return dict(Counter(op["op_name"] for op in interp._get_ops_details()))


def float_fallback(path: Path | str) -> list[FloatOp]:
    """Ops of a quantized model that do not run on integer tensors.

    QUANTIZE at a float graph input and DEQUANTIZE at a float graph output are the
    model's float I/O, not fallback, so they are left out.
    """
    interp = interpreter(path, delegates=False)
    inputs = {d["index"] for d in interp.get_input_details()}
    outputs = {d["index"] for d in interp.get_output_details()}
    found = []
    for op in interp._get_ops_details():
        name = op["op_name"]
        tensors = [int(t) for t in list(op["inputs"]) + list(op["outputs"]) if int(t) >= 0]
        floats = []
        for t in tensors:
            detail = interp._get_tensor_details(t, 0)
            if np.dtype(detail["dtype"]).kind == "f":
                floats.append(f"{detail['name']}:{np.dtype(detail['dtype']).name}")
        if not floats:
            continue
        if name == "QUANTIZE" and all(int(t) in inputs for t in op["inputs"]):
            continue
        if name == "DEQUANTIZE" and all(int(t) in outputs for t in op["outputs"]):
            continue
        found.append(FloatOp(int(op["index"]), name, floats))
    return found
