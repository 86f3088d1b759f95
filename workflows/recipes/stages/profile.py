"""`profile`: the .tflite files of the stage before it on phones over ADB (or on the host's LiteRT)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from android_harness.delegates import KINDS, expand
from workflows.recipes.fields import Fields
from workflows.recipes.stages.base import OTHER, TFLITE, ParseContext, RunContext, StageResult
from mobile_compress.report import environment
from profiler.api import profile
from profiler.device_job import ProfileSettings


@dataclass
class ProfileOptions:
    devices: list[str]  # serials, ["auto"], or ["host"]
    delegates: list[str]
    threads: list[int]
    runs: int
    warmup: int
    transport: str | None


class ProfileStage:
    kind = "profile"
    consumes = TFLITE
    produces = OTHER

    def parse(self, f: Fields, ctx: ParseContext) -> ProfileOptions:
        devices = f.str_list("devices", ["auto"]) or ["auto"]
        if "host" in devices and len(devices) > 1:
            raise f.error("devices", devices, "mixes host with phones", hint="use [host] alone, or phone serials")
        delegates = f.str_list("delegates", ["cpu"]) or ["cpu"]
        bad = [d for d in delegates if d not in KINDS]
        if bad:
            raise f.error("delegates", delegates, f"names unknown delegate(s) {', '.join(bad)}",
                          hint=f"choose from {', '.join(KINDS)}")
        threads = f.raw("threads", [1])
        if not isinstance(threads, list) or not threads or not all(
                isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in threads):
            raise f.error("threads", threads, "is not a list of thread counts >= 1", hint="e.g. threads: [1, 4]")
        return ProfileOptions(devices=devices, delegates=delegates, threads=threads, runs=f.int("runs", 50),
                              warmup=f.int("warmup", 1, minimum=0), transport=f.str("transport"))

    def run(self, o: ProfileOptions, ctx: RunContext) -> StageResult:
        source = next(r for r in reversed(ctx.results) if r.artifact == ctx.input)
        models = [Path(a["path"]) for a in source.metrics.get("artifacts", {}).values()
                  if a.get("path") and str(a["path"]).endswith(".tflite")]
        settings = ProfileSettings(models=models, delegates=expand(o.delegates, threads=o.threads),
                                   num_runs=o.runs, warmup_runs=o.warmup)
        env = environment().to_dict()
        if o.devices == ["host"]:
            outputs = profile(settings, ctx.stage_dir, host=True, environment=env, progress=ctx.log)
        else:
            from profiler.devices import open_device, resolve_serials

            serials = resolve_serials(o.devices, o.transport)
            outputs = profile(settings, ctx.stage_dir, serials=serials, environment=env, progress=ctx.log,
                              opener=lambda serial: open_device(serial, o.transport))
        runs = [{"device": r.device, "model": r.model, "delegate": r.delegate, "status": r.status, "error": r.error,
                 "median_ms": (r.latency or {}).get("median_ms"), "mean_ms": (r.latency or {}).get("mean_ms")}
                for r in outputs.records]
        return StageResult(str(outputs.json), OTHER, {"runs": runs, "csv": str(outputs.csv), "html": str(outputs.html)})
