"""``deploy``: run a recipe, put its result on the phone, and measure it against the model it started from.

Order, chosen so that every mistake surfaces before the long work: validate the recipe, pick
and open the phone (and find a benchmark_model for its ABI), then run the recipe (resumable),
convert the starting model to fp32 TFLite, score both .tflite files on the same held-out
images, profile both on every requested delegate (a failing delegate is recorded, the rest go
on; rerunning keeps the runs already done), push the deployed model to the phone, and write
one report. The demo is this same path on an embedded recipe, measured on the host when no
single phone is attached.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from android_harness.transport import Transport, TransportError, quote
from mobile_compress.errors import UserError
from workflows.deploy.sides import (Side, bundle_input_normalization, convert_original,
                                                    deployable_stage, final_tflite, measure, original_source)
from workflows.deploy.report import DeployReport, ReportFiles, format_report, write_report
from workflows.deploy.device_choice import Lister, choose_device
from workflows.recipes.recipe import load_recipe
from workflows.recipes.runner import run_recipe
from workflows.recipes.stages import Ref
from mobile_compress.report import environment
from profiler.device_job import DeviceFacts, ProfileSettings
from profiler.model_id import identify
from profiler.reports import refused_note

DEPLOY_DIR = "deploy"  # inside the run directory, beside the stage folders
DEVICE_DIR = "/data/local/tmp/mobile-compress"  # where the deployed model is left on the phone

#: Opens one device: (transport, facts) or TransportError; tests pass one for the virtual device.
Opener = Callable[[str], "tuple[Transport, DeviceFacts]"]


@dataclass
class DeployConfig:
    """``settings``: what to profile and how (its ``models`` are filled in here); ``device``: a serial or auto."""

    recipe: str | Path
    settings: ProfileSettings
    out_dir: str | Path | None = None  # default runs/<recipe name>
    device: str = "auto"
    host: bool = False  # measure on this computer's LiteRT instead of a phone
    host_reason: str | None = None  # why the host (shown in the report), when chosen for the user
    transport: str | None = None
    resume: bool = False
    overwrite: bool = False  # replace what the run folder holds (see mobile_compress.run_folder)
    eval_samples: int | None = 1000  # held-out images both .tflite files are scored on
    calib_samples: int = 100  # for the starting model's fp32 conversion (parity images)
    parity_samples: int = 100
    device_dir: str = DEVICE_DIR


@dataclass
class DeployResult:
    run_dir: Path
    report: DeployReport
    files: ReportFiles
    table: str
    failed_runs: int = 0
    pushed: bool = False
    warnings: list[str] = field(default_factory=list)


def run_deploy(config: DeployConfig, log: Callable[[str], None] = print, lister: Lister | None = None,
               opener: Opener | None = None) -> DeployResult:
    started = time.monotonic()
    recipe = load_recipe(config.recipe)
    after_index = deployable_stage(recipe)
    serial, facts = (None, None) if config.host else preflight(config, lister, opener, log)
    open_device = opener or _default_opener(config.transport)
    run_dir = Path(config.out_dir) if config.out_dir else Path("runs") / recipe.name
    deploy_dir = run_dir / DEPLOY_DIR
    timings: dict[str, float] = {}

    log(f"deploy: running recipe {recipe.path} ({len(recipe.stages)} stages) in {run_dir}")
    t = time.monotonic()
    run = run_recipe(recipe, run_dir, resume=config.resume, log=log, overwrite=config.overwrite)
    timings["recipe"] = time.monotonic() - t

    t = time.monotonic()
    source = original_source(recipe)
    start_checkpoint = run.results[source.index].artifact if isinstance(source, Ref) else str(source)
    before_tflite, error = convert_original(start_checkpoint, deploy_dir / "before_convert", recipe.data,
                                            recipe.cache_dir, config.calib_samples, config.parity_samples, log)
    after_result = run.results[after_index]
    after_path, after_format = final_tflite(after_result, recipe.stages[after_index].label)
    if after_result.source_checkpoint is None:
        raise UserError(f"stage {recipe.stages[after_index].label} did not record the checkpoint it converted",
                        hint="run the recipe again in a new --out")
    timings["convert_before"] = time.monotonic() - t

    t = time.monotonic()
    log("deploy: scoring both .tflite files on the same held-out images")
    models_dir = deploy_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    before = Side("before", start_checkpoint, _copy(before_tflite, models_dir / "before.tflite"), "fp32",
                  "the recipe's starting model, converted to fp32 TFLite by deploy", error=error)
    after = Side("after", after_result.source_checkpoint, _copy(after_path, models_dir / "after.tflite"),
                 after_format, f"{after_path.name} of stage {recipe.stages[after_index].label}")
    measure(before, recipe.data, config.eval_samples, recipe.cache_dir)
    measure(after, recipe.data, config.eval_samples, recipe.cache_dir, bundle_input_normalization(after_path))
    timings["accuracy"] = time.monotonic() - t

    t = time.monotonic()
    records, profile_files = _profile(config, [Path(s.tflite) for s in (before, after) if s.tflite], deploy_dir,
                                      serial, open_device, log)
    timings["profile"] = time.monotonic() - t

    pushed = {} if serial is None else _push(serial, open_device, after_path, config.device_dir, recipe.name, log)
    timings["total"] = time.monotonic() - started
    if serial is None:
        from profiler.host_job import host_info

        measured_on = {"mode": "host", "serial": None, "device_info": host_info(),
                       "note": config.host_reason or "--host was given"}
    else:
        measured_on = {"mode": "device", "serial": serial, "device_info": facts.info if facts else {}}
    report = DeployReport(recipe=str(recipe.path), run_dir=str(run_dir), before=before, after=after, records=records,
                          measured_on=measured_on, pushed=pushed, timings={k: round(v, 1) for k, v in timings.items()},
                          profile_files=profile_files, environment=environment().to_dict())
    files = write_report(report, deploy_dir)
    table = format_report(report)
    warnings = [w for w in (before.error, after.error) if w]
    if pushed and not pushed.get("ok"):
        warnings.append(f"the deployed model was not pushed: {pushed.get('error')}")
    warnings += [f"{r.model} on {r.delegate}: {refused_note(r)}" for r in records if r.refused_files]
    failed = sum(r.status in ("failed", "error") for r in records)
    return DeployResult(run_dir, report, files, table, failed_runs=failed, pushed=bool(pushed.get("ok")),
                        warnings=warnings)


def _default_opener(transport: str | None) -> Opener:
    from profiler.devices import open_device

    return lambda serial: open_device(serial, transport)


def preflight(config: DeployConfig, lister: Lister | None, opener: Opener | None,
               log: Callable[[str], None]) -> tuple[str, DeviceFacts]:
    """The phone, opened once before any work: its facts, and a benchmark_model for its ABI (or the fix)."""
    from android_harness.benchmark_binary import locate

    serial = choose_device(config.device, config.transport, lister)
    try:
        transport, facts = (opener or _default_opener(config.transport))(serial)
    except TransportError as err:
        raise UserError(f"--device {serial}: cannot open the device: {err}",
                        hint="check `mobile-compress devices`; for a phone on the network, `adb connect HOST:PORT`"
                        ) from None
    try:
        binary = locate(facts.abi, config.settings.benchmark_model)
    finally:
        transport.close()
    log(f"deploy: device {facts.serial}: {facts.info.get('model', '?')} ({facts.abi}), "
        f"benchmark_model from {binary.source}")
    return serial, facts


def _copy(path: Path | None, target: Path) -> str | None:
    """The .tflite under a fixed name (before/after), so the profile's runs say which side they are."""
    if path is None:
        return None
    shutil.copyfile(path, target)
    return str(target)


def _profile(config: DeployConfig, models: list[Path], deploy_dir: Path, serial: str | None, opener: Opener,
             log: Callable[[str], None]):
    from profiler.api import profile

    settings = replace(config.settings, models=models)
    out = deploy_dir / "profile"
    env = environment().to_dict()
    where = "this computer's LiteRT interpreter (host)" if serial is None else f"device {serial}"
    log(f"deploy: profiling {', '.join(m.name for m in models)} on {where}: "
        f"{', '.join(d.label for d in settings.delegates)}")
    if serial is None:
        outputs = profile(settings, out, host=True, environment=env, progress=log)
    else:
        outputs = profile(settings, out, serials=[serial], opener=opener, environment=env, progress=log)
    device = "host" if serial is None else serial
    # by path and content, not file name: runs of another before.tflite (a moved run folder) are not these
    keys = {m.key for m in identify(models)}
    records = [r for r in outputs.records if r.device == device and r.model_key in keys]
    files = {k: str(Path(p).relative_to(deploy_dir)) for k, p in
             (("json", outputs.json), ("csv", outputs.csv), ("html", outputs.html))}
    return records, files


def _push(serial: str, opener: Opener, model: Path, device_dir: str, name: str,
          log: Callable[[str], None]) -> dict:
    """The deployed model (and its labels, for a bundle) left in DEVICE_DIR/<recipe name>/ on the phone."""
    folder = f"{device_dir.rstrip('/')}/{name}"
    files = [model] + [p for p in (model.parent / "labels.txt",) if p.is_file()]
    record = {"serial": serial, "device_path": f"{folder}/{model.name}", "files": [f.name for f in files]}
    try:
        transport, _ = opener(serial)
    except TransportError as err:
        return {**record, "ok": False, "error": f"cannot open {serial}: {err}"}
    try:
        mkdir = transport.shell(f"mkdir -p {quote(folder)}")
        if not mkdir.ok:
            return {**record, "ok": False, "error": f"mkdir {folder} failed: {(mkdir.stderr or mkdir.stdout).strip()}"}
        for f in files:
            transport.push(f, f"{folder}/{f.name}")
        stat = transport.shell(f"stat -c %s {quote(record['device_path'])}")
        size = model.stat().st_size
        if not stat.ok or stat.stdout.strip() != str(size):
            return {**record, "ok": False, "error": f"{record['device_path']} is not on the device with {size} bytes "
                                                    f"after the push ({(stat.stdout + stat.stderr).strip()[:200]})"}
        log(f"deploy: pushed {model.name} ({size:,} bytes) to {serial}:{record['device_path']}")
        return {**record, "ok": True, "size_bytes": size}
    except TransportError as err:
        return {**record, "ok": False, "error": f"push to {serial} failed: {err}"}
    finally:
        try:
            transport.close()
        except TransportError:
            pass
