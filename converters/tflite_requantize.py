"""Edit the int8 parameters of a .tflite flatbuffer: activation scales and zero points, and the biases they imply.

TFLite's int8 kernels read every scale from the file when the interpreter prepares
the graph, so writing other (scale, zero point) pairs into an already converted model
makes it compute with them. A conv's int32 bias is stored in units of
``input scale x weight scale``, so when an input scale changes the bias is re-expressed
in the new units (its real value is kept). Weights are not touched here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# builtin ops whose int8 kernels require the same scale on input 0 and output 0
SAME_SCALE_OPS = {"MAX_POOL_2D", "RESHAPE", "SQUEEZE", "TRANSPOSE", "STRIDED_SLICE", "SLICE", "SPLIT", "SPLIT_V",
                  "GATHER", "PAD", "PADV2", "EXPAND_DIMS", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "AVERAGE_POOL_2D"}
WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def _schema() -> Any:
    from mobile_compress.logs import third_party_output

    with third_party_output():  # importing TensorFlow prints its C++ startup logs
        from tensorflow.lite.python import schema_py_generated as schema

    return schema


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    constant: bool
    scale: np.ndarray
    zero_point: np.ndarray


@dataclass
class OpInfo:
    index: int
    name: str
    inputs: list[int]
    outputs: list[int]


class TfliteModel:
    """The first subgraph of a .tflite as editable objects (flatbuffers object API)."""

    def __init__(self, path: Path | str) -> None:
        schema = _schema()
        self.path = Path(path)
        self.model = schema.ModelT.InitFromPackedBuf(bytearray(self.path.read_bytes()), 0)
        self.graph = self.model.subgraphs[0]
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
        self.ops = []
        for i, op in enumerate(self.graph.operators):
            code = self.model.operatorCodes[op.opcodeIndex]
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            self.ops.append(OpInfo(i, names.get(builtin, str(builtin)), [int(t) for t in op.inputs],
                                   [int(t) for t in op.outputs]))
        self.tensors = []
        for i, t in enumerate(self.graph.tensors):
            q = t.quantization
            data = self.model.buffers[t.buffer].data if t.buffer < len(self.model.buffers) else None
            self.tensors.append(TensorInfo(
                i, t.name.decode() if isinstance(t.name, bytes) else str(t.name),
                tuple(int(d) for d in (t.shape if t.shape is not None else ())), types.get(t.type, str(t.type)),
                data is not None and len(data) > 0,
                np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32),
                np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)))

    def activations(self) -> list[TensorInfo]:
        """Non-constant int8 tensors (what flows between ops)."""
        return [t for t in self.tensors if t.dtype == "INT8" and not t.constant]

    def producers(self) -> dict[int, OpInfo]:
        return {t: op for op in self.ops for t in op.outputs}

    def consumers(self) -> dict[int, list[OpInfo]]:
        out: dict[int, list[OpInfo]] = {}
        for op in self.ops:
            for t in op.inputs:
                if t >= 0:
                    out.setdefault(t, []).append(op)
        return out

    def buffer(self, index: int) -> np.ndarray:
        return np.asarray(self.model.buffers[self.graph.tensors[index].buffer].data, np.uint8)

    def set_activation(self, index: int, scale: float, zero_point: int) -> None:
        q = self.graph.tensors[index].quantization
        q.scale, q.zeroPoint = [float(np.float32(scale))], [int(zero_point)]
        q.min = q.max = None
        info = self.tensors[index]
        info.scale, info.zero_point = np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64)

    def set_constant_like(self, index: int, like: int) -> None:
        """Give an int8 constant (a pad value) the quantization of tensor ``like``, keeping its real value."""
        info, ref = self.tensors[index], self.tensors[like]
        if info.dtype != "INT8" or not info.constant or not len(ref.scale):
            return
        old = self.buffer(index).view(np.int8).astype(np.float64)
        real = (old - (info.zero_point[0] if len(info.zero_point) else 0)) * (info.scale[0] if len(info.scale) else 1)
        ints = np.clip(np.round(real / ref.scale[0] + ref.zero_point[0]), -128, 127).astype(np.int8)
        tensor = self.graph.tensors[index]
        self.model.buffers[tensor.buffer].data = np.frombuffer(ints.tobytes(), np.uint8).copy()
        self.set_activation(index, float(ref.scale[0]), int(ref.zero_point[0]))

    def rescale_biases(self, known: dict[int, np.ndarray] | None = None) -> int:
        """Set every int32 conv/FC bias for its op's (new) input scale x weight scales.

        ``known``: op index -> the real bias values to store (the trained ones); other
        ops keep the real value of their current bias, re-expressed in the new units.
        """
        changed = 0
        for op in self.ops:
            if op.name not in WEIGHTED_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
                continue
            x, w, b = (self.tensors[i] for i in op.inputs[:3])
            if b.dtype != "INT32" or not b.constant or not len(x.scale):
                continue
            if known is not None and op.index in known:
                real = np.asarray(known[op.index], np.float64)
            else:
                real = self.buffer(b.index).view(np.int32).astype(np.float64) * b.scale.astype(np.float64)
            new_scale = (np.float64(x.scale[0]) * w.scale.astype(np.float64)).astype(np.float32)
            ints = np.clip(np.round(real / new_scale.astype(np.float64)), -2**31, 2**31 - 1).astype(np.int32)
            tensor = self.graph.tensors[b.index]
            self.model.buffers[tensor.buffer].data = np.frombuffer(ints.tobytes(), np.uint8).copy()
            tensor.quantization.scale = [float(s) for s in new_scale]
            tensor.quantization.zeroPoint = [0] * len(new_scale)
            b.scale = new_scale
            changed += 1
        return changed

    def save(self, path: Path | str) -> Path:
        import flatbuffers

        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        Path(path).write_bytes(bytes(builder.Output()))
        return Path(path)
