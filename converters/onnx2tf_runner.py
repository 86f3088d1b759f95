"""The one place that drives onnx2tf (ONNX -> TensorFlow -> TFLite).

onnx2tf translates the ONNX graph to a Keras model once; ``tflite_convert`` then
writes each TFLite flavour we were asked for from that model (onnx2tf's own output
stage would save SavedModels and calibrate variants we do not use, four times slower).
onnx2tf has three habits we contain:

* it rewrites the .onnx it is given (onnxsim, op renaming), so it gets a copy;
* it downloads MS-COCO sample images for any 3-channel image input, unless
  ``calibration_image_sample_data_20x128x128x3_float32.npy`` is in the *current
  directory*: we run it in a private working directory holding that file, built
  from the user's real images, and replace its download helper with a local-only
  reader, so it can never reach the network;
* it calls ``sys.exit`` on errors, which we turn into ``Onnx2TfError``.

Calibration images are already normalized like training and in the TFLite input layout.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from converters.config import TFLITE_FORMATS
from mobile_compress.logs import Captured, third_party_output

SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
TF_INPUT = "input"
TF_OUTPUT = "output"


class Onnx2TfError(RuntimeError):
    """onnx2tf could not convert the model (its log tail is in the message)."""


@dataclass
class TfliteBuild:
    """The .tflite files written (by our format name), the seconds each step took, and what failed."""

    files: dict[str, Path]
    seconds: dict[str, float]
    log_tail: str = ""
    missing: dict[str, str] = field(default_factory=dict)
    rewrites: dict[str, int] = field(default_factory=dict)


def build_tflite(onnx_path: Path, work_dir: Path, formats: tuple[str, ...], calib_nchw: np.ndarray, *,
                 layout: str = "nhwc", int8_io: str = "int8", batch_size: int = 1) -> TfliteBuild:
    """Convert ``onnx_path`` (not modified) to the TFLite ``formats`` inside ``work_dir``.

    ``calib_nchw``: normalized float32 images (N, C, H, W). TFLite's converter calibrates the
    int8 flavour on all of them (the only calibration here: onnx2tf itself runs the first batch
    for its own checks, and the float flavours need none).
    """
    from converters import tflite_convert

    wanted = [f for f in formats if f in TFLITE_FORMATS]
    work_dir.mkdir(parents=True, exist_ok=True)
    model_copy = work_dir / "model.onnx"
    rewrites = _prepare_copy(onnx_path, model_copy, batch_size)
    nhwc = layout == "nhwc"
    calib = np.ascontiguousarray(calib_nchw.transpose(0, 2, 3, 1) if nhwc else calib_nchw, dtype=np.float32)
    np.save(work_dir / "calib.npy", calib[:batch_size])  # onnx2tf's test inference runs one batch
    np.save(work_dir / SAMPLE_FILE, _sample_images(calib_nchw))
    zero = np.zeros((1, 1, 1, 1), np.float32)
    kwargs: dict[str, Any] = dict(
        input_onnx_file_path=str(model_copy),
        output_folder_path=str(work_dir / "tf"),
        custom_input_op_name_np_data_path=[[TF_INPUT, str(work_dir / "calib.npy"), zero, zero + 1]],
        not_use_onnxsim=True,  # the ONNX artifact is simplified already
        keep_ncw_or_nchw_or_ncdhw_input_names=[TF_INPUT] if not nhwc else None,
        disable_model_save=True,  # we only want the Keras model; tflite_convert writes the files
        non_verbose=True,
        verbosity="error",
    )
    seconds: dict[str, float] = {}
    files: dict[str, Path] = {}
    missing: dict[str, str] = {}
    with _quiet() as log, _in_directory(work_dir), _offline_samples(work_dir):
        import onnx2tf

        failure, model = None, None
        start = time.perf_counter()
        try:
            model = onnx2tf.convert(**kwargs)
        except SystemExit as exit_:
            failure = f"onnx2tf stopped (exit {exit_.code})"
        except Exception as err:  # noqa: BLE001 - any onnx2tf/TensorFlow crash is a failed conversion
            failure = f"onnx2tf failed: {type(err).__name__}: {err}"
        seconds["onnx2tf"] = time.perf_counter() - start
        if failure is None:
            function = tflite_convert.concrete_function(model)
            for fmt in wanted:
                start = time.perf_counter()
                try:
                    data = tflite_convert.convert(model, function, fmt, calib, int8_io)
                except Exception as err:  # noqa: BLE001 - one failed flavour is recorded, the others go on
                    missing[fmt] = f"TFLite converter failed for {fmt}: {type(err).__name__}: {_last_line(err)}"
                else:
                    files[fmt] = work_dir / f"model_{fmt}.tflite"
                    files[fmt].write_bytes(data)
                seconds[fmt] = time.perf_counter() - start
    if failure is not None:
        raise Onnx2TfError(f"{failure}: {_tail(log.text)}")
    return TfliteBuild(files, seconds, _tail(log.text), missing, rewrites)


def _last_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _prepare_copy(src: Path, dst: Path, batch_size: int) -> dict[str, int]:
    """A copy of the model with a fixed batch, plain I/O names (onnx2tf keys calibration by input name)
    and XNNPACK-friendly activations (``onnx_rewrite``)."""
    import onnx

    from converters.onnx_rewrite import (ambiguous_channel_shuffles_to_conv, channel_pads_to_conv,
                                         decompose_hard_activations, maxpool_pads_to_zero_pads)

    model = onnx.load(str(src))
    initializers = {i.name for i in model.graph.initializer}
    graph_input = next(i for i in model.graph.input if i.name not in initializers)
    renames = {graph_input.name: TF_INPUT, model.graph.output[0].name: TF_OUTPUT}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
        for i, name in enumerate(node.output):
            if name in renames:
                node.output[i] = renames[name]
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        if value.name in renames:
            value.name = renames[value.name]
    for value in (graph_input, model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        dims[0].ClearField("dim_param")
        dims[0].dim_value = batch_size
    rewrites = decompose_hard_activations(model)
    rewrites["channel Pad"] = channel_pads_to_conv(model)
    rewrites["channel shuffle"] = ambiguous_channel_shuffles_to_conv(model)
    rewrites["MaxPool padding"] = maxpool_pads_to_zero_pads(model)
    onnx.save_model(model, str(dst), save_as_external_data=False)
    return {k: v for k, v in rewrites.items() if v}


def _sample_images(calib_nchw: np.ndarray) -> np.ndarray:
    """onnx2tf's 20x128x128x3 sample file, made from our own (normalized) images."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(calib_nchw, np.float32))
    x = x[:, :3] if x.shape[1] >= 3 else x.expand(-1, 3, -1, -1)
    x = x[torch.arange(20) % x.shape[0]]
    x = F.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)


@contextlib.contextmanager
def _in_directory(path: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _offline_samples(work_dir: Path) -> Iterator[None]:
    """Make onnx2tf's sample-image helper read our file only; it never downloads."""
    import onnx2tf.onnx2tf as main_module
    import onnx2tf.utils.common_functions as common

    def local_only() -> np.ndarray:
        path = work_dir / SAMPLE_FILE
        if not path.is_file():
            raise Onnx2TfError(f"{path} is missing and mobile-compress never downloads onnx2tf's sample images")
        return np.load(path)

    saved = (main_module.download_test_image_data, common.download_test_image_data)
    main_module.download_test_image_data = local_only
    common.download_test_image_data = local_only
    try:
        yield
    finally:
        main_module.download_test_image_data, common.download_test_image_data = saved


@contextlib.contextmanager
def _quiet() -> Iterator[Captured]:
    """onnx2tf and TensorFlow print a lot, from Python and from C++: into the command's log, off the
    terminal (``mobile_compress.logs``); the text is kept for error messages. TensorFlow's Python
    logger is held at ERROR meanwhile, so that onnx2tf's own lines end the text."""
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        with third_party_output() as captured:
            yield captured
    finally:
        tf_logger.setLevel(level)


def _tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
