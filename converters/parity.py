"""Run the same real images through the reference and every artifact, and compare.

The reference is PyTorch (checkpoint or .pt2), or ONNX Runtime on the user's own
.onnx. Integer models get their inputs quantized and their outputs dequantized with
the tensors' own scale and zero point, so every figure is in logit units.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.config import Thresholds
from mobile_compress.litert import dequantize, interpreter, quantize
from mobile_compress.logs import third_party_output


@dataclass
class Parity:
    """Agreement of one artifact with the reference over ``samples`` images."""

    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    max_abs_reference: float
    cosine_min: float
    cosine_mean: float
    top1_agreement: float
    top1_accuracy: float | None = None
    reference_top1_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(reference: np.ndarray, output: np.ndarray, labels: np.ndarray | None = None) -> Parity:
    """Figures for ``output`` against ``reference`` (both (N, classes) float)."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    out = np.asarray(output, np.float64).reshape(len(output), -1)
    diff = np.abs(ref - out)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = np.where(norms > 0, (ref * out).sum(axis=1) / np.maximum(norms, 1e-300), 1.0)
    agree = float(np.mean(ref.argmax(1) == out.argmax(1)))
    acc = ref_acc = None
    if labels is not None and len(labels) == len(ref):
        acc = float(np.mean(out.argmax(1) == labels))
        ref_acc = float(np.mean(ref.argmax(1) == labels))
    return Parity(len(ref), float(diff.max()), float(diff.mean()), float(np.abs(ref).max()),
                  float(cosine.min()), float(cosine.mean()), agree, acc, ref_acc)


def judge(fmt: str, parity: Parity, thresholds: Thresholds, float_ops: int = 0) -> list[str]:
    """The thresholds ``fmt`` breaks, each as a sentence naming the artifact and the figure."""
    problems = []
    if fmt in ("onnx", "fp32"):
        bar = thresholds.fp32_rel_max_diff * parity.max_abs_reference
        if not parity.max_abs_diff <= bar:
            problems.append(f"{fmt}: max|diff| {parity.max_abs_diff:.3g} exceeds {thresholds.fp32_rel_max_diff:g} x "
                            f"max|logit| = {bar:.3g}")
    elif fmt == "fp16":
        if not parity.cosine_mean >= thresholds.fp16_min_cosine:
            problems.append(f"fp16: mean cosine similarity {parity.cosine_mean:.6f} is below "
                            f"{thresholds.fp16_min_cosine:g} (worst image {parity.cosine_min:.6f})")
    elif fmt in ("dynamic", "int8"):
        if not parity.top1_agreement >= thresholds.int8_min_top1:
            problems.append(f"{fmt}: top-1 agreement {parity.top1_agreement:.1%} is below "
                            f"{thresholds.int8_min_top1:.1%}")
    if fmt == "int8" and float_ops and not thresholds.allow_float_fallback:
        problems.append(f"int8: {float_ops} op(s) fall back to float (see float_fallback in report.json; "
                        "--allow-float-fallback accepts them)")
    return problems


# ----------------------------------------------------------------------------- runners


def run_torch(module: Any, x_nchw: np.ndarray, batch: int | None = None) -> np.ndarray:
    """The PyTorch reference; ``batch``: the fixed batch a .pt2 program accepts (last chunk padded)."""
    import torch

    step = batch or 32
    outs = []
    with torch.no_grad():
        for i in range(0, len(x_nchw), step):
            chunk = np.ascontiguousarray(x_nchw[i:i + step], dtype=np.float32)
            n = len(chunk)
            if batch and n < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
            outs.append(module(torch.from_numpy(chunk)).float().numpy()[:n])
    return np.concatenate(outs).reshape(len(x_nchw), -1)


def run_onnx(path: Path, x_nchw: np.ndarray) -> np.ndarray:
    """ONNX Runtime on CPU, one image at a time when the batch is fixed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    step = meta.shape[0] if isinstance(meta.shape[0], int) else len(x_nchw)
    outs = []
    for i in range(0, len(x_nchw), step):
        chunk = np.ascontiguousarray(x_nchw[i:i + step], dtype=np.float32)
        if len(chunk) < step:  # last partial chunk of a fixed-batch model
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), 0)])
            outs.append(session.run(None, {meta.name: chunk})[0][: len(x_nchw) - i])
        else:
            outs.append(session.run(None, {meta.name: chunk})[0])
    return np.concatenate(outs).reshape(len(x_nchw), -1)


def run_tflite(path: Path, x_nchw: np.ndarray, layout: str) -> np.ndarray:
    """LiteRT interpreter (as on Android CPU), one image at a time; quantize in, dequantize out.

    It uses every core (up to 4): XNNPACK's results do not depend on the thread count.
    """
    with third_party_output():  # LiteRT announces its delegates ("INFO: Created TensorFlow Lite XNNPACK ...")
        interp = interpreter(path, delegates=True, num_threads=min(4, os.cpu_count() or 1))
        interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    x = x_nchw.transpose(0, 2, 3, 1) if layout == "nhwc" else x_nchw
    batch = int(inp["shape"][0]) or 1
    results = []
    for i in range(0, len(x), batch):
        chunk = np.asarray(x[i:i + batch], np.float32)
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
        interp.set_tensor(inp["index"], quantize(chunk, inp))
        interp.invoke()
        y = dequantize(interp.get_tensor(out["index"]), out)
        results.append(y[: batch - pad] if pad else y)
    return np.concatenate(results).reshape(len(x), -1)
