"""The numbers of the stage table: what each stage's artifact costs and how well it does.

Checkpoints: top-1 on the recipe data's test split (the checkpoint's own preprocessing),
parameters, MACs, weights.pt size and a *PyTorch* CPU latency (batch 1, one thread, median),
labelled as such because it is not what a phone runs. TFLite files: the parity report's top-1
on its labelled images, the source checkpoint's parameters and MACs, the .tflite size and the
host LiteRT latency (``mobile_compress.litert.time_model``, one thread, XNNPACK). A figure that
does not apply is None (shown as "—").
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import models
from mobile_compress.counting import count_macs, count_parameters
from mobile_compress.quantization import is_quantized
from mobile_compress.training import EvalJob, run_eval_job
from mobile_compress.structure import replay
from mobile_compress.training import CheckpointMeta, load_checkpoint

LATENCY_RUNS = 20


def torch_cpu_latency_ms(model: torch.nn.Module, input_size: int | tuple[int, int], runs: int = LATENCY_RUNS) -> float:
    """Median wall time of one batch-1 forward on one CPU thread, after warm-up."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    x = torch.zeros(1, 3, h, w)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.eval()
        samples = []
        with torch.no_grad():
            for i in range(runs + 3):
                start = time.perf_counter()
                model(x)
                if i >= 3:
                    samples.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(threads)
    return float(np.median(samples))


def _shape(meta: CheckpointMeta) -> tuple[int, int, int]:
    size = meta.input_size
    return (3, size, size) if isinstance(size, int) else (3, *size)


def macs_of(model: torch.nn.Module, meta: CheckpointMeta) -> int:
    """MACs at the checkpoint's input size. A fake-quant (QAT) model computes its convolutions inside
    wrappers the counter does not see, so it is counted on its float structure (same layers, same MACs)."""
    if is_quantized(meta):
        float_meta = replace(meta, transforms=[t for t in meta.transforms if t.get("kind") != "qat"])
        model = replay(models.create(meta.arch, num_classes=meta.num_classes, **meta.options),
                       float_meta.transforms, "checkpoint.json")
    return count_macs(model, _shape(meta))


def checkpoint_row(path: str, data: str | None, cache_dir: str | None, latency: bool) -> dict[str, Any]:
    model, meta = load_checkpoint(path)
    size = meta.input_size if isinstance(meta.input_size, int) else tuple(meta.input_size)
    row: dict[str, Any] = {"artifact": str(Path(path).name), "params": count_parameters(model),
                           "macs": macs_of(model, meta),
                           "size_bytes": (Path(path) / "weights.pt").stat().st_size,
                           "top1": None, "eval_images": None, "tflite_ms": None, "torch_ms": None}
    if data is not None:
        result = run_eval_job(EvalJob(path, data, cache_dir=cache_dir)).result
        row["top1"], row["eval_images"] = result.top1, result.n
    if latency:
        row["torch_ms"] = torch_cpu_latency_ms(model, size)
    return row


def tflite_rows(metrics: dict[str, Any], source_checkpoint: str | None, latency: bool) -> list[dict[str, Any]]:
    from mobile_compress.litert import time_model

    params = macs = None
    if source_checkpoint is not None:
        model, meta = load_checkpoint(source_checkpoint)
        params, macs = count_parameters(model), macs_of(model, meta)
    rows = []
    for fmt, art in (metrics.get("artifacts") or {}).items():
        if not art.get("path") or not str(art["path"]).endswith(".tflite"):
            continue
        acc = art.get("top1_accuracy")
        row = {"artifact": Path(art["path"]).name, "params": params, "macs": macs, "size_bytes": art.get("size_bytes"),
               "top1": None if acc is None else 100.0 * acc, "eval_images": art.get("parity_samples"),
               "tflite_ms": None, "torch_ms": None}
        if latency:
            try:
                row["tflite_ms"] = time_model(art["path"], num_threads=1, runs=LATENCY_RUNS).median_ms
            except Exception as err:  # noqa: BLE001 - one artifact that will not run is recorded, not fatal
                row["error"] = f"{type(err).__name__}: {err}"
        rows.append(row)
    return rows
