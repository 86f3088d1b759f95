"""Write the ONNX artifact: export (or copy) the model, fix the batch, simplify, check.

torch 2.13 exports through dynamo (opset 18 at least) and would put weights in a
side file unless ``external_data=False``; we always ask for one self-contained file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.source import Source
from mobile_compress.logs import third_party_output

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass
class OnnxResult:
    """The written ONNX file and what it is: opset, input/output names and shapes, whether simplified."""

    path: Path
    opset: int
    input_name: str
    output_name: str
    input_shape: list[Any]
    dynamic_batch: bool
    simplified: bool
    seconds: float


def export_onnx(source: Source, path: Path, *, opset: int, batch_size: int = 1,
                dynamic_batch: bool = False) -> OnnxResult:
    """Write ``source`` as a checked, simplified, self-contained ONNX file at ``path``."""
    import onnx

    start = time.perf_counter()
    if source.kind == "onnx":
        model = onnx.load(str(source.onnx_path))  # external data (if any) is read next to the user's file
        _set_spatial(model, source.input_size)
    else:
        model = _torch_export(source, opset, batch_size, dynamic_batch)
    if source.kind == "pt2" and source.batch is not None:
        dynamic_batch = False  # the program was exported with this batch; its graph is specialised to it
    else:
        _set_batch(model, None if dynamic_batch else batch_size)
    model, simplified = simplify(model)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=False)
    graph_in = _graph_inputs(model)[0]
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in graph_in.type.tensor_type.shape.dim]
    return OnnxResult(path, opset_of(model), graph_in.name, model.graph.output[0].name, dims,
                      not isinstance(dims[0], int), simplified, time.perf_counter() - start)


def _torch_export(source: Source, opset: int, batch_size: int, dynamic_batch: bool) -> Any:
    import onnx
    import torch

    h, w = source.input_size
    if source.kind == "pt2":
        target: Any = source.module.program  # an ExportedProgram exports as it is (its own shapes)
        args: tuple = ()
        kwargs: dict[str, Any] = {}
    else:
        target = source.module
        example = torch.zeros(2 if dynamic_batch else batch_size, source.channels, h, w)
        args = (example,)
        kwargs = {"dynamic_shapes": ({0: torch.export.Dim("batch", min=1, max=4096)},)} if dynamic_batch else {}
    with third_party_output():  # the exporter's own lines ("torchvision is not installed. Skipping ...")
        program = torch.onnx.export(target, args, None, dynamo=True, opset_version=opset, external_data=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
                                    optimize=True, **kwargs)
    model = program.model_proto
    return onnx.load_from_string(model.SerializeToString()) if not isinstance(model, onnx.ModelProto) else model


def _graph_inputs(model: Any) -> list[Any]:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _set_batch(model: Any, batch_size: int | None) -> None:
    """Fix the first dimension of inputs and outputs to ``batch_size``, or make it symbolic ('batch')."""
    for value in list(_graph_inputs(model)) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims:
            continue
        if batch_size is None:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
        else:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch_size
    if batch_size is not None:
        for value in model.graph.value_info:  # stale symbolic shapes would confuse the simplifier
            value.type.tensor_type.ClearField("shape")


def _set_spatial(model: Any, size: tuple[int, int]) -> None:
    """Give symbolic height/width of the image input the size we convert at (TFLite needs static shapes)."""
    dims = _graph_inputs(model)[0].type.tensor_type.shape.dim
    for dim, value in zip(list(dims)[2:4], size):
        if not dim.HasField("dim_value"):
            dim.ClearField("dim_param")
            dim.dim_value = int(value)


def simplify(model: Any) -> tuple[Any, bool]:
    """onnxsim with its checks; returns the original model (and False) if it cannot be simplified."""
    import onnxsim

    try:
        with third_party_output():
            simplified, ok = onnxsim.simplify(model)
    except Exception:  # noqa: BLE001 - simplification is an optimisation, never a requirement
        return model, False
    return (simplified, True) if ok else (model, False)


def opset_of(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
