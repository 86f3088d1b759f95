"""Measure the per-layer latency table that drives latency-targeted pruning (NetAdapt style).

Converting a model with onnx2tf costs seconds, so the table is not built by timing every
layer at every width (hundreds of conversions). Instead a handful of whole-model
variants with random per-group widths are pruned, converted to fp32 .tflite and timed
(on the host LiteRT interpreter, ``mobile_compress.litert.time_model``, or on a phone), and a per-layer
linear model is fitted by non-negative least squares:

    latency = base + sum over layers of  a[kind] * MACs(layer) + b * output elements(layer)

with one coefficient per layer kind (1x1 conv, kxk conv, depthwise conv, linear): the
kinds differ a lot in time per MAC (a depthwise MAC is far slower than a 1x1 MAC on
XNNPACK), which is exactly why MACs alone mislead. Each layer then gets its own entry
(its kind's coefficients applied to its own shape), so the pruning core can price every
candidate width of every layer without converting anything. ``info`` records the
measured and fitted latency of every variant, so the fit quality is visible. The variants
are timed by a ``Timer``: the host interpreter by default, or ``device_timer(serial)``,
which runs them on a phone through the profiler (benchmark_model over adb), so that a
latency target means the phone's latency.

Cost, measured on the project's shared 2-core host: one variant (ONNX export, onnx2tf,
timing) took 28-40 s for MobileNetV2-0.5 at 32x32, so the default 8 conversions take
about 5 minutes, against hundreds of conversions for a per-layer, per-width sweep.

``obtain_latency_table`` is what the prune command and the recipes' prune stage call: the given
table, the one an interrupted run saved in its folder, or a new one, measured and saved there.
"""
from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from android_harness.delegates import DelegateConfig
from mobile_compress.errors import UserError
from mobile_compress.litert import time_model
from mobile_compress.pruning import LatencyTable, LayerLatency, build_graph, example_input
from mobile_compress.pruning import allowed_widths
from mobile_compress.pruning import CostModel, LayerCount
from mobile_compress.pruning import prune_model
from profiler.api import Opener, profile
from profiler.device_job import ProfileSettings
from profiler.devices import open_device
from profiler.model_id import identify

KINDS = ("conv1x1", "convkxk", "dwconv", "linear")
#: The delegates a phone's table can be timed on (one thread each); the host interpreter is XNNPACK.
TABLE_DELEGATES = ("cpu", "gpu", "nnapi")
#: Where a prune run keeps the table it measured, so that a resumed run prices with the same table.
LATENCY_FILE = "latency_table.json"


def layer_kind(layer: LayerCount) -> str | None:
    if layer.kind == "bn":
        return None
    if layer.kind in ("dwconv", "linear"):
        return layer.kind
    return "conv1x1" if layer.kernel == 1 else "convkxk"


def convert_fp32(model: nn.Module, input_size: tuple[int, int], work: Path) -> Path:
    """``model`` as an fp32 .tflite (ONNX export, then onnx2tf) inside ``work``; returns its path."""
    from converters.onnx2tf_runner import build_tflite
    from converters.onnx_export import export_onnx
    from converters.source import Source

    model = model.eval().cpu()
    source = Source("checkpoint", work, tuple(input_size), 3, module=model)
    onnx_path = work / "model.onnx"
    export_onnx(source, onnx_path, opset=18)
    calib = np.random.default_rng(0).standard_normal((2, 3, *input_size)).astype(np.float32)
    build = build_tflite(onnx_path, work / "onnx2tf", ("fp32",), calib)
    if "fp32" not in build.files:
        raise RuntimeError(f"onnx2tf produced no fp32 model: {build.missing.get('fp32', 'unknown reason')}")
    return Path(build.files["fp32"])


def tflite_latency_ms(model: nn.Module, input_size: tuple[int, int], work: Path, *, num_threads: int = 1,
                      runs: int = 30, min_seconds: float = 1.0, statistic: str = "min") -> float:
    """Host LiteRT latency (``statistic``: "min" or "median" of the runs) of ``model`` as fp32 .tflite."""
    path = convert_fp32(model, input_size, work)
    if statistic == "min":
        return host_timer(num_threads=num_threads, runs=runs, min_seconds=min_seconds)({"model": path})["model"]
    return time_model(path, num_threads=num_threads, runs=runs, min_seconds=min_seconds).median_ms


def interleaved_min_ms(paths: dict[str, Path], *, rounds: int = 5, runs: int = 20,
                       num_threads: int = 1) -> dict[str, float]:
    """Fastest run of each .tflite, timed round-robin so a burst of load hits every model alike."""
    best = {key: float("inf") for key in paths}
    for _ in range(rounds):
        for key, path in paths.items():
            samples = time_model(path, num_threads=num_threads, runs=runs).samples_ms
            best[key] = min(best[key], min(samples))
    return best


@dataclass
class Variant:
    keep: dict[int, int]
    features: list[float]
    measured_ms: float


def _features(costs: CostModel, keep: dict[int, int]) -> list[float]:
    """[1, MACs per layer kind..., output elements]: the regressors of the latency fit."""
    sums = {k: 0.0 for k in KINDS}
    outputs = 0.0
    for layer in costs.layers:
        kind = layer_kind(layer)
        if kind is None:
            continue
        cin, cout = layer.channels(keep)
        sums[kind] += layer.macs(cin, cout)
        outputs += cout * layer.spatial
    return [1.0, *(sums[k] for k in KINDS), outputs]


# Times a set of fp32 .tflite files (name -> path) and returns name -> milliseconds.
Timer = Callable[[dict[str, Path]], dict[str, float]]


def host_timer(*, num_threads: int = 1, runs: int = 30, min_seconds: float = 1.0) -> Timer:
    """The host LiteRT interpreter (XNNPACK), the fastest run of each file."""
    def time_all(paths: dict[str, Path]) -> dict[str, float]:
        # On a shared host, other processes only ever add time, so the fastest run is the steadiest
        # estimate of the model's own cost (the median drifts with the load).
        return {name: float(min(time_model(path, num_threads=num_threads, runs=runs,
                                           min_seconds=min_seconds).samples_ms)) for name, path in paths.items()}

    time_all.description = f"host LiteRT interpreter, fp32 .tflite (XNNPACK), {num_threads} thread(s)"  # type: ignore[attr-defined]
    return time_all


def table_settings(delegate: str = "cpu") -> ProfileSettings:
    """How a latency table is timed on a phone: one delegate, 1 thread, 30 runs per variant."""
    return ProfileSettings(models=[], delegates=[DelegateConfig(delegate, threads=1)], num_runs=30)


def device_timer(serial: str, settings: ProfileSettings | None = None, *, opener: Opener | None = None,
                 out_dir: Path | None = None, progress: Callable[[str], None] = lambda message: None) -> Timer:
    """A phone through the profiler: every variant pushed and run by benchmark_model.

    ``settings``: the profiler's settings (its first delegate, runs, runner, benchmark_model);
    default ``table_settings()``. Each variant's time is its median run. A variant the
    phone cannot run stops the table with the profiler's error, naming the device.
    """
    settings = settings or table_settings()
    delegate = settings.delegates[0]

    def time_all(paths: dict[str, Path]) -> dict[str, float]:
        folder = out_dir or next(iter(paths.values())).parent / "profile"
        outputs = profile(replace(settings, models=list(paths.values()), delegates=[delegate]), folder,
                          serials=[serial], opener=opener or open_device, progress=progress)
        by_model = {r.model_key: r for r in outputs.records if r.delegate == delegate.label}
        timings = {}
        for name, path in paths.items():
            [model] = identify([path])
            record = by_model.get(model.key)
            latency = (record.latency or {}) if record else {}
            ms = latency.get("median_ms") or latency.get("p50_ms") or latency.get("mean_ms")
            if record is None or record.status != "ok" or not ms:
                why = record.error if record is not None and record.error else "no latency was recorded"
                raise UserError(f"latency table on {serial} ({delegate.label}): variant {name} did not run: {why}",
                                hint="check the device with `mobile-compress profile MODEL --device SERIAL` first, "
                                     "or build the table on the host")
            timings[name] = float(ms)
        return timings

    time_all.description = f"{serial}, {delegate.label} delegate, benchmark_model median"  # type: ignore[attr-defined]
    return time_all


def build_latency_table(source: str | nn.Module, input_size: int | tuple[int, int] | None = None, *,
                        variants: int = 7, num_threads: int = 1, seed: int = 0, runs: int = 30,
                        min_seconds: float = 1.0, timer: Timer | None = None,
                        log: Callable[[str], None] = print) -> LatencyTable:
    """Fit a ``LatencyTable`` for ``source`` (a checkpoint directory or a module) from ``variants`` + 1 conversions.

    ``timer``: where the variants are timed; the host LiteRT interpreter (``num_threads``, ``runs``,
    ``min_seconds``) unless given, e.g. ``device_timer(serial)`` for a phone.
    """
    timer = timer or host_timer(num_threads=num_threads, runs=runs, min_seconds=min_seconds)
    if isinstance(source, nn.Module):
        model = source
        if input_size is None:
            raise ValueError("input_size is needed with a module")
    else:
        from mobile_compress.training import load_checkpoint

        model, meta = load_checkpoint(source)
        input_size = input_size or meta.input_size
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    model = model.eval().cpu()
    graph = build_graph(model, example_input(model, (3, *size)))
    costs = CostModel(graph, model)
    rng = random.Random(seed)
    keeps = [{g.index: g.size for g in graph.groups}]
    for _ in range(variants):
        share = rng.uniform(0.25, 1.0)  # an overall width, jittered per group, so widths and mixes both vary
        keeps.append({g.index: min((w for w in allowed_widths(g, 8) if w >= min(1.0, share * rng.uniform(0.7, 1.3))
                                    * g.size), default=g.size) for g in graph.groups})
    start = time.monotonic()
    work_root = Path(tempfile.mkdtemp(prefix="mobile-compress-latency-"))
    try:
        paths: dict[str, Path] = {}
        for i, keep in enumerate(keeps):
            removed = {u for g in graph.groups for u in rng.sample(g.units, g.size - keep[g.index])}
            variant, _ = prune_model(model, graph, removed)
            work = work_root / f"v{i}"
            work.mkdir()
            t = time.monotonic()
            with torch.no_grad():
                converted = convert_fp32(variant, size, work)
            paths[f"v{i}"] = converted.rename(work_root / f"variant{i}.tflite")
            shutil.rmtree(work, ignore_errors=True)
            log(f"  latency table: variant {i + 1}/{len(keeps)} converted: {costs.macs(keep) / 1e6:.2f} M MACs "
                f"({time.monotonic() - t:.0f} s)")
        timings = timer(paths)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    measured = [Variant(keep, _features(costs, keep), timings[f"v{i}"]) for i, keep in enumerate(keeps)]
    log("  latency table: " + ", ".join(f"{v.measured_ms:.3f}" for v in measured) + " ms")
    from scipy.optimize import nnls

    a = np.array([v.features for v in measured], dtype=np.float64)
    b = np.array([v.measured_ms for v in measured], dtype=np.float64)
    scale = np.maximum(a.max(axis=0), 1e-12)  # columns of very different magnitude: fit on scaled ones
    coef, _ = nnls(a / scale, b)
    coef = coef / scale
    predicted = a @ coef
    per_mac = dict(zip(KINDS, coef[1:1 + len(KINDS)]))
    layers = {layer.name: LayerLatency(float(per_mac[kind]), float(coef[-1]))
              for layer in costs.layers if (kind := layer_kind(layer)) is not None}
    info = {"runtime": getattr(timer, "description", "custom timer"),
            "conversions": len(measured), "seconds": round(time.monotonic() - start, 1),
            "coefficients": {"base_ms": float(coef[0]), **{f"ms_per_mac_{k}": float(v) for k, v in per_mac.items()},
                             "ms_per_output": float(coef[-1])},
            "variants": [{"macs": costs.macs(v.keep), "measured_ms": v.measured_ms, "fitted_ms": float(p)}
                         for v, p in zip(measured, predicted)],
            "max_relative_error": float(np.max(np.abs(predicted - b) / b))}
    return LatencyTable(float(coef[0]), layers, info)


@dataclass
class ObtainedTable:
    """A latency table and its file; ``measured``: built by this call (else read from ``path``)."""

    table: LatencyTable
    path: Path
    measured: bool


def obtain_latency_table(checkpoint: str | Path, out_dir: str | Path, table_path: str | Path | None = None, *,
                         device: str | None = None, delegate: str = "cpu", transport: str | None = None,
                         opener: Opener | None = None, reuse: bool = True,
                         progress: Callable[[str], None] = print) -> ObtainedTable:
    """The table a latency target prunes ``checkpoint`` against, measured only when there is none to read.

    ``table_path`` given: that file. Otherwise ``out_dir/latency_table.json`` when ``reuse`` and an
    earlier (interrupted) run saved one there. Otherwise measured -- on the phone ``device``
    (``delegate``, reached over ``transport`` or through ``opener``; the profiler's files go to
    ``out_dir/latency_profile``) or on the host LiteRT interpreter -- and saved there.
    """
    if table_path is not None:
        return ObtainedTable(LatencyTable.load(table_path), Path(table_path), measured=False)
    out = Path(out_dir)
    table_file = out / LATENCY_FILE
    if reuse and table_file.is_file():
        progress(f"latency table: reusing {table_file}, measured by the earlier run")
        return ObtainedTable(LatencyTable.load(table_file), table_file, measured=False)
    if delegate not in TABLE_DELEGATES:
        raise UserError(f"unknown latency delegate {delegate!r}", hint=f"choose one of {', '.join(TABLE_DELEGATES)}")
    timer = None
    if device is not None:
        timer = device_timer(device, table_settings(delegate),
                             opener=opener or (lambda serial: open_device(serial, transport)),
                             out_dir=out / "latency_profile", progress=progress)
    progress(f"measuring a per-layer latency table on {device or 'the host LiteRT interpreter'} "
             "(a few conversions) ...")
    table = build_latency_table(str(checkpoint), timer=timer, log=progress)
    out.mkdir(parents=True, exist_ok=True)
    table.save(table_file)
    return ObtainedTable(table, table_file, measured=True)
