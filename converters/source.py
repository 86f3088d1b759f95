"""Load what the user asked to convert: a checkpoint, a ``torch.export`` program or an .onnx file.

Everything downstream works from a ``Source``: a reference to compare against
(the PyTorch module, or the .onnx itself in ONNX Runtime), the input shape, the
preprocessing, and the data the model was trained on (for calibration).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobile_compress.data import NAMED, Normalization
from mobile_compress.errors import UserError

KINDS = ("checkpoint", "pt2", "onnx")


@dataclass
class Source:
    """A loaded conversion source.

    ``module``: the PyTorch reference (None for .onnx). ``onnx_path``: the user's .onnx
    (only for .onnx sources; never written to). ``input_size``: (height, width).
    ``normalization``: None when the source does not say (then the data's default applies).
    ``data``: the training data recorded in a checkpoint, used when no --calib is given.
    """

    kind: str
    path: Path
    input_size: tuple[int, int]
    channels: int
    module: Any = None
    onnx_path: Path | None = None
    normalization: Normalization | None = None
    labels: list[str] | None = None
    data: str | None = None
    arch: str | None = None
    batch: int | None = None  # a fixed batch the source only accepts (a .pt2 exported with a static batch)

    @property
    def reference_name(self) -> str:
        return "onnxruntime" if self.kind == "onnx" else "pytorch"


def detect_kind(path: Path) -> str:
    """checkpoint (directory or one of its files), pt2 or onnx, from the path; UserError otherwise."""
    if not path.exists():
        raise UserError(f"{path} does not exist",
                        hint="pass a checkpoint directory, a torch.export program (.pt2) or an .onnx file")
    if path.is_dir() or path.name in ("checkpoint.json", "weights.pt"):
        return "checkpoint"
    suffix = path.suffix.lower()
    if suffix == ".pt2":
        return "pt2"
    if suffix == ".onnx":
        return "onnx"
    raise UserError(f"{path} is not a checkpoint, .pt2 or .onnx file",
                    hint="pass a checkpoint directory, a torch.export program saved with torch.export.save (.pt2), "
                         "or an .onnx file")


def load_source(src: str | os.PathLike, input_size: tuple[int, int] | None = None,
                normalization: str | None = None) -> Source:
    """Load ``src``; ``input_size`` overrides or completes its input shape, ``normalization`` names mean/std."""
    path = Path(src).expanduser()
    kind = detect_kind(path)
    norm = _named_normalization(normalization)
    if kind == "checkpoint":
        source = _load_checkpoint(path, input_size)
    elif kind == "pt2":
        source = _load_pt2(path, input_size)
    else:
        source = _load_onnx(path, input_size)
    if norm is not None:
        source.normalization = norm
    return source


def _named_normalization(name: str | Normalization | None) -> Normalization | None:
    if name is None or isinstance(name, Normalization):  # an explicit mean/std (export-app's folded input)
        return name
    if name not in NAMED:
        raise UserError(f"unknown normalization {name!r}", hint=f"choose from {', '.join(NAMED)}")
    return NAMED[name]


def _load_checkpoint(path: Path, input_size: tuple[int, int] | None) -> Source:
    from mobile_compress.training import load_checkpoint

    model, meta = load_checkpoint(path)
    model.eval()
    size = meta.input_size if isinstance(meta.input_size, tuple) else (meta.input_size, meta.input_size)
    norm = Normalization.from_dict(meta.normalization) if meta.normalization else None
    data = meta.extra.get("data") if isinstance(meta.extra.get("data"), str) else None
    return Source("checkpoint", path if path.is_dir() else path.parent, tuple(input_size or size), 3, module=model,
                  normalization=norm, labels=list(meta.labels) or None, data=data, arch=meta.arch)


def _load_pt2(path: Path, input_size: tuple[int, int] | None) -> Source:
    from converters.pt2_archive import load_program

    program = load_program(path)
    shapes = []
    for spec in program.graph_signature.input_specs:
        if spec.kind.name == "USER_INPUT":
            node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == spec.arg.name)
            shapes.append(tuple(node.meta["val"].shape))
    if len(shapes) != 1 or len(shapes[0]) != 4:
        raise UserError(f"{path} takes {len(shapes)} inputs {shapes}; conversion supports one NCHW image input",
                        hint="export the model with a single (batch, channels, height, width) tensor input")
    shape = shapes[0]
    channels = _static(shape[1])
    size = _fill_size(path, (_static(shape[2]), _static(shape[3])), input_size)
    if channels is None:
        raise UserError(f"{path} has a dynamic channel dimension", hint="export with a fixed channel count")
    return Source("pt2", path, size, channels, module=_PT2Module(program), batch=_static(shape[0]))


class _PT2Module:
    """Calls an ExportedProgram like a module (``program.module()`` built once)."""

    def __init__(self, program: Any) -> None:
        self.program = program
        self._module = program.module()

    def __call__(self, x: Any) -> Any:
        return self._module(x)

    def eval(self) -> "_PT2Module":
        return self


def _load_onnx(path: Path, input_size: tuple[int, int] | None) -> Source:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001
        raise UserError(f"cannot read {path} as an ONNX model: {str(err).splitlines()[0] if str(err) else err}",
                        hint="check that the file is a complete .onnx model") from None
    if not model.ir_version or not model.graph.node:  # protobuf parses an empty or foreign file as a blank model
        what = "is empty (0 bytes)" if path.stat().st_size == 0 else "is not an ONNX model (no IR version or no graph)"
        raise UserError(f"{path} {what}", hint="export the model again, e.g. with torch.onnx.export(model, (x,), "
                        "'model.onnx'), and check that the copy is complete")
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UserError(f"{path} has {len(inputs)} inputs; conversion supports one NCHW image input",
                        hint="export the model with a single (batch, channels, height, width) input")
    tensor_type = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    if len(dims) != 4 or tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UserError(f"{path}: input {inputs[0].name!r} is not a 4-D float tensor (shape {dims})",
                        hint="conversion supports one float NCHW image input")
    if dims[1] is None:
        raise UserError(f"{path} has a dynamic channel dimension", hint="export with a fixed channel count")
    size = _fill_size(path, (dims[2], dims[3]), input_size)
    return Source("onnx", path, size, dims[1], onnx_path=path)


def _static(dim: Any) -> int | None:
    try:
        return int(dim)
    except (TypeError, ValueError):
        return None


def _fill_size(path: Path, size: tuple[int | None, int | None], given: tuple[int, int] | None) -> tuple[int, int]:
    if given is not None:
        if all(s is not None for s in size) and tuple(size) != tuple(given):
            raise UserError(f"{path} has a fixed input size {size[0]}x{size[1]}, not {given[0]}x{given[1]}",
                            hint="leave out --input-size, or re-export the model with a dynamic size")
        return given
    if any(s is None for s in size):
        raise UserError(f"{path} has a dynamic input size", hint="pass --input-size HEIGHTxWIDTH (e.g. 224)")
    return int(size[0]), int(size[1])
