"""Host mode: the same report from this computer's LiteRT interpreter, for when no phone is attached.

Every record is labelled ``mode: host`` and ``device: host`` so nobody mistakes a desktop
CPU's figures for a phone's. Only the cpu delegate exists here; others are recorded as
skipped. Per-run samples are available, so latency carries p50/p90/p99 and a 95% CI.
"""
from __future__ import annotations

import platform
from dataclasses import asdict
from typing import Callable

from android_harness.delegates import DelegateConfig
from mobile_compress.litert import InterpreterCrash, time_isolated
from profiler.device_job import ProfileSettings, announce_replaced, now
from profiler.measure import latency_from_samples
from profiler.model_check import check_tflite
from profiler.model_id import ModelId, identify
from profiler.results import ResultStore, RunRecord

HOST = "host"


def host_info() -> dict[str, str]:
    from mobile_compress.report import environment

    env = environment()
    return {"mode": "host", "cpu": env.cpu, "cores": str(env.cores), "machine": platform.machine(),
            "note": "host LiteRT interpreter, not a phone"}


def profile_host(settings: ProfileSettings, store: ResultStore,
                 progress: Callable[[str], None] = lambda msg: None) -> None:
    info = host_info()
    models = identify(settings.models)
    if all(store.done(HOST, m, d.label) for m in models for d in settings.delegates):
        progress(f"host: every run already recorded in {store.path}")
        return
    announce_replaced(models, store, progress)
    for model in models:
        problem = check_tflite(model.path)
        for delegate in settings.delegates:
            if store.done(HOST, model, delegate.label):
                continue
            progress(f"host: {model.name} on {delegate.label}")
            store.add(_run(model, delegate, settings, info, problem))


def _run(model: ModelId, delegate: DelegateConfig, settings: ProfileSettings, info: dict[str, str],
         problem: str | None) -> RunRecord:
    record = RunRecord.of(model, device=HOST, delegate=delegate.label, status="ok", mode="host",
                          device_info=info, delegate_config=asdict(delegate), measured_at=now())
    if problem:
        record.status, record.error = "error", problem
        return record
    if delegate.kind != "cpu":
        record.status, record.error = "skipped", f"host mode runs the CPU interpreter only, not {delegate.kind}"
        return record
    try:
        timing = time_isolated(model.path, num_threads=delegate.threads, xnnpack=delegate.xnnpack,
                               warmup=settings.warmup_runs, runs=settings.num_runs,
                               min_seconds=settings.min_secs or 0.0)
    except InterpreterCrash as err:
        record.status, record.error = "error", str(err)
        return record
    except (ValueError, RuntimeError) as err:
        record.status, record.error = "failed", f"LiteRT could not run {model.name}: {err}"
        return record
    record.latency = latency_from_samples(timing.samples_ms, init_ms=timing.init_ms, first_ms=timing.first_ms).to_dict()
    record.coverage = [{"delegate": "XNNPACK" if delegate.xnnpack else "none (builtin kernels)",
                        "state": "host interpreter", "kernels": None, "nodes_replaced": None, "nodes_total": None}]
    return record

