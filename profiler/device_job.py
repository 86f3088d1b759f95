"""Profiling every model x delegate on one device, keeping whatever finished when something fails.

Failures are scoped as narrowly as they happen: a delegate that fails is recorded and the
next delegate runs; a model that cannot be pushed (storage full, corrupt file) is recorded
for its delegates and the next model goes on; a device that drops off is reconnected and the
run retried once, and only if that fails are its remaining runs recorded as not run.
"""
from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from android_harness.benchmark_binary import locate
from android_harness.charging import charging_suspended
from android_harness.delegates import DelegateConfig, big_core_mask
from android_harness.device_info import parse_dumpsys_battery
from android_harness.session import BenchmarkTimeout, DeviceSession, RunnerOptions, reconnect_quietly, unsafe_name
from android_harness.transport import Transport, TransportError, quote
from android_harness.transport import DeviceDisconnectedError, DeviceStorageFullError, DeviceUnauthorizedError
from mobile_compress.errors import UserError
from profiler.measure import latency_from_output, memory_from, read_mem_samples
from profiler.model_check import check_tflite
from profiler.model_id import ModelId, identify, safe_name
from profiler.op_profile import parse_op_profile
from profiler.parse import parse_log
from profiler.power import measure_power, read_samples
from profiler.results import ResultStore, RunRecord, run_key
from profiler.thermal import snapshot_from_dir

log = logging.getLogger(__name__)
OP_CSV = "op_profile.csv"  # --profiling_output_csv_file, in the run's device folder


@dataclass
class ProfileSettings:
    """What to run on every device, and how."""

    models: list[Path]
    delegates: list[DelegateConfig]
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    benchmark_model: str | None = None  # explicit path; else env var or cache (android_harness.benchmark_binary)
    num_runs: int = 50
    warmup_runs: int = 1
    min_secs: float | None = None
    op_profiling: bool = False
    peak_memory: bool = False  # --report_peak_memory_footprint: benchmark_model's own periodic peak (costs speed)
    unplug: bool = False  # `dumpsys battery unplug` for the job, `reset` after
    allow_charging: bool = False
    extra_flags: list[str] = field(default_factory=list)


@dataclass
class DeviceFacts:
    """What the job needs to know about a device (filled from android_harness.device_info)."""

    serial: str
    abi: str
    max_freq_khz: list[int | None] = field(default_factory=list)
    charging: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)  # model, SoC, Android version ... for the report


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def profile_device(transport: Transport, facts: DeviceFacts, settings: ProfileSettings, store: ResultStore,
                   progress: Callable[[str], None] = lambda msg: None) -> None:
    """Every pending run of ``settings`` on one device, each recorded in ``store`` as it ends."""
    models = identify(settings.models)
    pending = [(m, d) for m in models for d in settings.delegates if not store.done(facts.serial, m, d.label)]
    if not pending:
        progress(f"{facts.serial}: every run already recorded in {store.path}")
        return
    announce_replaced(models, store, progress)
    recorded: set[str] = set()  # keys this job has written, so a lost device marks only the rest

    def add(record: RunRecord) -> None:
        recorded.add(record.key)
        store.add(record)

    def not_run(message: str) -> None:
        for model, delegate in pending:
            if run_key(facts.serial, model.key, delegate.label) not in recorded:
                add(RunRecord.of(model, device=facts.serial, delegate=delegate.label, status="error",
                                 error=message, device_info=facts.info, delegate_config=asdict(delegate),
                                 measured_at=now()))

    try:
        binary = locate(facts.abi, settings.benchmark_model)
    except UserError as err:
        not_run(f"{err.message} ({err.hint})")
        return
    try:
        with DeviceSession(transport) as session, charging_suspended(transport, settings.unplug):
            bench = session.push(binary.path, "benchmark_model", 0o755)
            for model in models:
                todo = [d for m, d in pending if m == model]
                if todo:
                    _profile_model(session, bench, model, todo, facts, settings, add, store.out_dir, progress)
    except DeviceUnauthorizedError as err:
        not_run(f"device {facts.serial} is unauthorized: {err}. Accept this computer's RSA key on the phone "
                "(the 'Allow USB debugging?' prompt), then run the same command again; finished runs are kept")
    except DeviceStorageFullError as err:
        not_run(f"device {facts.serial} has no space left in /data/local/tmp for the runner and benchmark_model "
                f"({err}); free some space (adb shell rm ...) and run again")
    except DeviceDisconnectedError as err:
        not_run(f"device {facts.serial} disconnected and did not come back after a reconnect: {err}. "
                "Finished runs are kept; run the same command again to do the rest")
    except TransportError as err:
        not_run(f"device {facts.serial}: {err}")


def announce_replaced(models: list[ModelId], store: ResultStore, progress: Callable[[str], None]) -> None:
    """Say when a model file changed since its runs were recorded: it is measured again, its old runs dropped."""
    for model in models:
        if store.replaced(model):
            progress(f"{model.path} changed since it was profiled into {store.path} (sha256 now "
                     f"{model.sha256[:12]}); measuring it again, its earlier runs are replaced")


def _profile_model(session: DeviceSession, bench: str, model: ModelId, delegates: list[DelegateConfig],
                   facts: DeviceFacts, settings: ProfileSettings, add: Callable[[RunRecord], None], out_dir: Path,
                   progress: Callable[[str], None]) -> None:
    def record(delegate: DelegateConfig, status: str, error: str | None = None, **fields: Any) -> None:
        add(RunRecord.of(model, device=facts.serial, delegate=delegate.label, status=status, error=error,
                         device_info=facts.info, delegate_config=asdict(delegate), measured_at=now(), **fields))

    problem = check_tflite(model.path)
    if problem:
        for d in delegates:
            record(d, "error", problem)
        return
    remote_name = f"{model.tag}{model.path.suffix}"  # unique per file: two model.tflite never share a device path
    try:
        remote_model = session.push(model.path, remote_name)
    except DeviceStorageFullError as err:
        for d in delegates:
            record(d, "error", f"device storage full while pushing {model.name} ({model.path.stat().st_size} "
                               f"bytes): {err}. Free space in /data/local/tmp on {facts.serial}")
        session.transport.shell(f"rm -f {quote(session.dir + '/' + remote_name)}")
        return
    for delegate in delegates:
        progress(f"{facts.serial}: {model.name} on {delegate.label}")
        attempts = 0
        while True:
            attempts += 1
            try:
                record_fields = _run_one(session, bench, remote_model, model, delegate, facts, settings, out_dir)
                record(delegate, attempts=attempts, **record_fields)
                break
            except BenchmarkTimeout as err:
                refused = refused_files(err.result.refused) if err.result is not None else []
                record(delegate, "failed", f"timed out: {err}", attempts=attempts, refused_files=refused)
                break
            except DeviceStorageFullError as err:
                record(delegate, "error", f"device storage full: {err}", attempts=attempts)
                break
            except DeviceDisconnectedError as err:
                if attempts == 1 and reconnect_quietly(session.transport):
                    progress(f"{facts.serial}: link dropped ({err}); reconnected, retrying {delegate.label}")
                    continue
                raise


def _run_one(session: DeviceSession, bench: str, remote_model: str, model: ModelId, delegate: DelegateConfig,
             facts: DeviceFacts, settings: ProfileSettings, out_dir: Path) -> dict[str, Any]:
    """One run's fields for its RunRecord (status ok or failed)."""
    device_library = None
    if delegate.kind == "external" and delegate.library and Path(delegate.library).is_file():
        device_library = session.push(delegate.library)
    command = [bench, f"--graph={remote_model}", *delegate.flags(device_library),
               f"--num_runs={settings.num_runs}", f"--warmup_runs={settings.warmup_runs}"]
    if settings.min_secs is not None:
        command.append(f"--min_secs={settings.min_secs:g}")
    tag = safe_name(f"{model.tag}-{delegate.label}")
    if settings.op_profiling:
        command += ["--enable_op_profiling=true", f"--profiling_output_csv_file={session.out_dir(tag)}/{OP_CSV}"]
    if settings.peak_memory:
        command.append("--report_peak_memory_footprint=true")
    command += settings.extra_flags
    options = RunnerOptions(**asdict(settings.runner))
    if delegate.kind == "cpu" and delegate.big_cores:
        options.cpu_mask = big_core_mask(facts.max_freq_khz)
    raw_rel = Path("raw") / safe_name(facts.serial) / model.tag / delegate.label
    local = out_dir / raw_rel
    result = session.run(tag, command, local, options)
    stdout = (local / "stdout.txt").read_text(errors="replace") if (local / "stdout.txt").is_file() else ""
    runs = parse_log(stdout)
    output = runs[-1] if runs else None
    fields: dict[str, Any] = {"raw_dir": str(raw_rel), "refused_files": refused_files(result.refused)}
    fields["thermal_before"] = snapshot_from_dir(local, "before").to_dict()
    fields["thermal_after"] = snapshot_from_dir(local, "after").to_dict()
    if output is None or result.exit_code != 0 or output.failed or not output.complete:
        fields["status"] = "failed"
        reason = (output.errors[-3:] if output and output.errors else []) or [stdout.strip().splitlines()[-1]
                                                                            if stdout.strip() else "no output"]
        fields["error"] = f"benchmark_model exited with {result.exit_code}: " + " | ".join(reason)
        if output is not None:
            fields["coverage"] = [asdict(c) for c in output.coverage]
        return fields
    latency = latency_from_output(output)
    fields["status"] = "ok"
    fields["latency"] = latency.to_dict()
    fields["memory"] = memory_from(output, read_mem_samples(local / "mem.tsv")).to_dict()
    fields["power"] = measure_power(read_samples(local / "baseline.tsv"), read_samples(local / "power.tsv"),
                                    inference_ms=latency.mean_ms, charging=_charging(local, facts),
                                    allow_charging=settings.allow_charging).to_dict()
    fields["coverage"] = [asdict(c) for c in output.coverage]
    ops = (parse_op_profile((local / OP_CSV).read_text(errors="replace")) if (local / OP_CSV).is_file()
           else output.op_profile)
    if ops is not None:
        fields["slowest_ops"] = [asdict(r) for r in ops.slowest(10)]
    return fields


def refused_files(names: list[str]) -> list[dict[str, str]]:
    """The names ``DeviceSession.pull_dir`` did not pull, each with why, for the run's record."""
    # pull_dir refuses a name that is not a plain file name, or else one whose target resolves outside the folder
    return [{"name": name, "reason": unsafe_name(name) or "its target would lie outside the run folder"}
            for name in names]


def _charging(local: Path, facts: DeviceFacts) -> bool | None:
    """Plugged in at the start of this run (after any `dumpsys battery unplug`), per the runner's dumpsys."""
    dump = local / "battery_before.txt"
    text = dump.read_text(errors="replace") if dump.is_file() else ""
    if "Battery Service" not in text:
        return facts.charging
    return parse_dumpsys_battery(text).plugged
