"""The model's input and output tensors, and how an app must feed them.

MediaPipe Tasks (and the TFLite Task Library) take one NHWC RGB image input of type
float32 (normalised with the metadata's mean/std, in 0-255 pixel units, one value for
all channels in MediaPipe) or uint8 (raw pixels; the tensor's quantization does the
rest), and uint8 or float32 score outputs. This module checks a .tflite against that
and works out the numbers that go into the metadata.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobile_compress.errors import UserError

PIXEL_MAX = 255.0
_CLIENT_DTYPES = ("float32", "uint8")
# A uint8 input gets raw pixels; its zero point and scale must stand for the training
# normalisation within these tolerances (pixels, relative) or the app sees other inputs.
_ZERO_POINT_TOL = 1.5
_SCALE_REL_TOL = 0.02


@dataclass
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str
    quantization: dict[str, float] | None = None  # {"scale", "zero_point"} for integer tensors

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelIO:
    input: TensorSpec
    output: TensorSpec

    @property
    def height(self) -> int:
        return self.input.shape[1]

    @property
    def width(self) -> int:
        return self.input.shape[2]

    @property
    def num_outputs(self) -> int:
        return int(np.prod(self.output.shape[1:]))


@dataclass
class Preprocessing:
    """What the metadata says about the input, and whether MediaPipe can apply it.

    ``pixel_mean``/``pixel_std``: NormalizationOptions, in 0-255 pixel units
    (``tensor = (pixel - mean) / std`` for float inputs; for uint8 inputs the
    normalisation the input quantization implies). ``warnings``: problems an app
    would meet, written into the model card and printed.
    """

    feed: str  # "float32 normalised by the client" or "uint8 raw pixels"
    pixel_mean: list[float]
    pixel_std: list[float]
    mediapipe: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_io(path: Path) -> ModelIO:
    """Input and output of a single-input, single-output .tflite; UserError for anything else."""
    from mobile_compress.litert import interpreter

    try:
        interp = interpreter(path, delegates=False)
    except Exception as err:  # noqa: BLE001 - an unreadable model is the user's to fix
        raise UserError(f"cannot load {path} as a TFLite model: {str(err).splitlines()[0] if str(err) else err}",
                        hint="pass a .tflite written by `mobile-compress convert`") from None
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; an image classifier "
                        "bundle needs exactly one of each", hint="export a single-image, single-output classifier")
    return ModelIO(_spec(inputs[0]), _spec(outputs[0]))


def _spec(detail: dict[str, Any]) -> TensorSpec:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero = detail["quantization"]
    quant = {"scale": float(scale), "zero_point": int(zero)} if np.dtype(detail["dtype"]).kind in "iu" else None
    return TensorSpec(str(detail["name"]), [int(s) for s in detail["shape"]], dtype, quant)


def check_client_io(io: ModelIO, path: Path) -> None:
    """The layout and types MediaPipe Tasks and the Task Library accept, or a UserError with the fix."""
    shape = io.input.shape
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        hint = ("re-convert with --layout nhwc (the Android default)" if len(shape) == 4 and shape[1] == 3
                else "the bundle needs one 1 x height x width x 3 (NHWC, RGB) image input")
        raise UserError(f"{path}: input shape {shape} is not 1 x height x width x 3 (NHWC RGB)", hint=hint)
    for role, spec in (("input", io.input), ("output", io.output)):
        if spec.dtype not in _CLIENT_DTYPES:
            raise UserError(f"{path}: the {role} tensor is {spec.dtype}; MediaPipe Tasks and the TFLite Task "
                            "Library take only uint8 or float32",
                            hint="re-convert with `mobile-compress convert --int8-io float` (or uint8), or pass the "
                                 "checkpoint as SRC and let export-app convert it")
    if io.output.shape[0] != 1 or io.num_outputs < 1:
        raise UserError(f"{path}: output shape {io.output.shape} is not 1 x classes",
                        hint="export a classifier with one score per class")


def preprocessing(io: ModelIO, mean: list[float], std: list[float]) -> Preprocessing:
    """Metadata normalisation for ``io`` given the training mean/std (0-1 units, per RGB channel)."""
    pixel_mean = [round(m * PIXEL_MAX, 6) for m in mean]
    pixel_std = [round(s * PIXEL_MAX, 6) for s in std]
    uniform = len(set(pixel_mean)) == 1 and len(set(pixel_std)) == 1
    if io.input.dtype == "float32":
        prep = Preprocessing("float32 normalised by the client", pixel_mean[:1] if uniform else pixel_mean,
                             pixel_std[:1] if uniform else pixel_std, mediapipe=uniform)
        if not uniform:
            prep.warnings.append(
                f"the normalisation differs per channel (mean {pixel_mean}, std {pixel_std} in pixels): MediaPipe "
                "Tasks' ImageClassifier rejects per-channel normalisation ('Per-channel image normalization is not "
                "available'); the TFLite Task Library and the LiteRT Interpreter snippet apply it. Pass the checkpoint "
                "as SRC (export-app then folds the normalisation into the model) to use MediaPipe")
        return prep
    quant = io.input.quantization or {"scale": 1.0, "zero_point": 0}
    implied_mean, implied_std = float(quant["zero_point"]), 1.0 / quant["scale"]
    prep = Preprocessing("uint8 raw pixels", [implied_mean], [round(implied_std, 6)], mediapipe=True)
    off = [(m, s) for m, s in zip(pixel_mean, pixel_std)
           if abs(implied_mean - m) > _ZERO_POINT_TOL or abs(implied_std - s) > _SCALE_REL_TOL * s]
    if off:
        prep.warnings.append(
            f"the uint8 input's quantization (zero point {quant['zero_point']}, scale {quant['scale']:.6g}) stands "
            f"for mean {implied_mean:g} / std {implied_std:.4g} pixels, but the model was trained with mean "
            f"{pixel_mean} / std {pixel_std}: apps feed raw pixels to uint8 inputs, so predictions will differ from "
            "the checkpoint's. Re-convert with --int8-io float (or let export-app convert the checkpoint)")
    return prep
