"""`mobile-compress deploy`: a tiny recipe run, pushed to the virtual ADB device and profiled before/after,
and the mistakes that must stop it before any work (no phone, several phones, a bad recipe).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from android_harness.transport import AttachedDevice
from workflows.cli import main
from mobile_compress.errors import UserError
from workflows.deploy import device_choice
from workflows.deploy.sides import Side
from workflows.deploy.report import DeployReport, change, comparison_rows, format_report, MODEL_METRICS
from profiler.model_id import file_sha256
from profiler.results import RunRecord
from test_profile_flow import TINY, adb_key, virtual_benchmark, virtual_device  # noqa: F401 - fixtures and the device
from test_recipes import _npz

pytestmark = pytest.mark.usefixtures("single_thread")

TRAINING = {"epochs": 1, "batch_size": 8, "progress": False, "device": "cpu"}
FAST_PROFILE = ["--runs", "3", "--warmup", "1", "--min-secs", "0", "--baseline", "1", "--sample-interval", "0.05"]


def _recipe(tmp_path: Path, **edits) -> Path:
    """Train a small MobileNetV2 (the 'before'), prune it to half its MACs, convert to fp32 TFLite (the 'after')."""
    _npz(tmp_path / "d.npz")
    recipe = {"name": "tiny-deploy", "data": "d.npz", "latency": False, "stages": [
        {"train": {"model": "mobilenet_v2", "image_size": 8, "options": {"width_mult": 0.25, "small_input": True},
                   "training": TRAINING}},
        {"prune": {"target": "macs=0.5", "epochs_per_step": 1, "training": TRAINING}},
        {"convert": {"formats": ["fp32"], "calib_samples": 8, "parity_samples": 8}},
    ]}
    recipe.update(edits)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _lister(*devices: tuple[str, str]):
    calls = []

    def lister(kind):
        calls.append(kind)
        return [AttachedDevice(serial, state, "test", {}) for serial, state in devices]

    lister.calls = calls
    return lister


# ----------------------------------------------------------------------------- end to end, on the virtual device


@pytest.mark.slow  # two real conversions: ~1 min on 2 cores
def test_deploy_on_the_virtual_device_end_to_end(tmp_path, adb_key, virtual_benchmark, capsys) -> None:  # noqa: F811
    recipe, out = _recipe(tmp_path), tmp_path / "run"
    with virtual_device(tmp_path) as dev:
        serial = dev.serial
        argv = ["deploy", str(recipe), "--device", serial, "--transport", "adb-shell-tcp", "--out", str(out),
                "--delegates", "gpu,cpu", *FAST_PROFILE]
        code = main(argv)
        captured = capsys.readouterr()
        sandbox = dev.sandbox.root
        pushed = sandbox / "data/local/tmp/mobile-compress/tiny-deploy"
        pushed_files = sorted(p.name for p in pushed.iterdir()) if pushed.is_dir() else []
        leftovers = sorted(p.name for p in (sandbox / "data/local/tmp").iterdir())
        # a second call with --resume keeps every finished stage, the before conversion and the ok runs
        assert main(argv + ["--resume"]) == 0
        again = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    report = json.loads((out / "deploy" / "deploy.json").read_text())
    assert report["schema"] == "mobile-compress/deploy" and report["measured_on"]["mode"] == "device"
    assert report["measured_on"]["serial"] == serial
    assert report["measured_on"]["device_info"]["model"] == "Virtual Phone"
    before, after = report["before"], report["after"]
    assert before["checkpoint"].endswith("01_train/best") and before["format"] == "fp32"
    assert after["checkpoint"].endswith("prune/final") and after["format"] == "fp32"
    assert after["macs"] < before["macs"] and after["params"] < before["params"]
    assert after["size_bytes"] < before["size_bytes"]
    assert before["top1"] is not None and after["top1"] is not None
    assert before["eval_images"] == after["eval_images"] > 0
    runs = {d["delegate"]: d for d in report["delegates"]}
    assert list(runs) == ["gpu-fp32", "cpu-1t"]
    for role in ("before", "after"):
        cpu = runs["cpu-1t"][role]
        assert cpu["status"] == "ok" and cpu["median_ms"] > 0 and cpu["mem_mb"] > 0
        assert cpu["power_mw"] is not None and cpu["mj_per_inference"] > 0  # the virtual battery's rail
        # the virtual phone has no GPU: recorded as failed, and the cpu runs after it went on
        assert runs["gpu-fp32"][role]["status"] == "failed" and "GPU" in runs["gpu-fp32"][role]["error"]
    # the deployed model is on the phone, byte for byte; the profiler's working folder is gone
    deployed = Path(after["tflite"])
    assert report["pushed"]["ok"] and pushed_files == [Path(report["pushed"]["device_path"]).name]
    assert (pushed / pushed_files[0]).read_bytes() == deployed.read_bytes()
    assert leftovers == ["mobile-compress"]
    # the views: one terminal table, CSV rows per figure, an HTML page with the profiler's plots
    assert "latency p50" in captured.out and "cpu-1t" in captured.out
    assert "x faster" in captured.out or "x slower" in captured.out
    assert "phone 127.0.0.1" in captured.out
    rows = list(csv.DictReader((out / "deploy" / "deploy.csv").open()))
    figures = {(r["metric"], r["delegate"]) for r in rows}
    assert {("MACs", ""), (".tflite size", ""), ("top-1 of the .tflite", ""), ("latency p50", "cpu-1t"),
            ("memory", "cpu-1t"), ("power above idle", "cpu-1t"), ("latency p50", "gpu-fp32")} <= figures
    gpu = next(r for r in rows if r["metric"] == "latency p50" and r["delegate"] == "gpu-fp32")
    assert gpu["before_status"] == "failed" and "GPU" in gpu["note"]
    page = (out / "deploy" / "deploy.html").read_text()
    assert page.count("<svg") >= 5 and "before · cpu-1t" in page and "after · cpu-1t" in page
    assert "profile/profile.html" in page and (out / "deploy" / "profile" / "profile.html").is_file()
    assert "finished in an earlier run, kept" in again.out and "already in" in again.out


# ----------------------------------------------------------------------------- mistakes stop it before any work


def test_no_device_is_one_clear_error_naming_device(tmp_path, monkeypatch, capsys) -> None:
    lister = _lister()
    monkeypatch.setattr(device_choice, "list_devices", lister)
    out = tmp_path / "run"
    assert main(["deploy", str(_recipe(tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--device auto: no Android device is attached" in err and "--host" in err and "Traceback" not in err
    assert lister.calls and not out.exists()


def test_several_devices_ask_for_one_by_serial(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(device_choice, "list_devices", _lister(("R5CT1", "device"), ("emulator-5554", "device")))
    out = tmp_path / "run"
    assert main(["deploy", str(_recipe(tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 devices are attached (R5CT1 (device), emulator-5554 (device))" in err
    assert "--device SERIAL" in err and not out.exists()


def test_the_only_device_unauthorized_says_how_to_allow_it(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(device_choice, "list_devices", _lister(("R5CT1", "unauthorized")))
    assert main(["deploy", str(_recipe(tmp_path)), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "R5CT1, is unauthorized" in err and "Allow USB debugging" in err


def test_bad_recipe_fails_first_naming_the_key(tmp_path, monkeypatch, capsys) -> None:
    lister = _lister(("R5CT1", "device"))
    monkeypatch.setattr(device_choice, "list_devices", lister)
    recipe = _recipe(tmp_path)
    data = yaml.safe_load(recipe.read_text())
    data["stages"][1]["prune"]["target"] = "macs=2"
    recipe.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    assert main(["deploy", str(recipe), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "recipe.yaml: stages[1].prune.target 'macs=2'" in err
    assert not lister.calls and not out.exists(), "the recipe is checked before the phone is looked for"


def test_recipe_without_a_tflite_stage_is_refused_before_work(tmp_path, capsys) -> None:
    recipe = _recipe(tmp_path)
    data = yaml.safe_load(recipe.read_text())
    data["stages"].pop()
    recipe.write_text(yaml.safe_dump(data))
    assert main(["deploy", str(recipe), "--host", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "recipe.yaml: stages: no stage produces a .tflite to deploy" in err and "export-app" in err
    assert not (tmp_path / "run").exists()


def test_option_mistakes(tmp_path, capsys) -> None:
    recipe = _recipe(tmp_path)
    assert main(["deploy", str(recipe), "--host", "--device", "R5CT1"]) == 2
    assert "--host and --device R5CT1" in capsys.readouterr().err
    assert main(["deploy", str(recipe), "--host", "--delegates", "tpu"]) == 2
    assert "unknown delegate 'tpu'" in capsys.readouterr().err
    assert main(["deploy", str(tmp_path / "missing.yaml"), "--host"]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


def test_a_device_that_cannot_be_opened_or_has_no_benchmark_model_stops_before_work(
        tmp_path, adb_key, virtual_benchmark, monkeypatch, capsys) -> None:  # noqa: F811
    recipe, out = _recipe(tmp_path), tmp_path / "run"
    assert main(["deploy", str(recipe), "--device", "127.0.0.1:1", "--transport", "adb-shell-tcp",
                 "--out", str(out)]) == 2
    assert "--device 127.0.0.1:1: cannot open the device" in capsys.readouterr().err
    monkeypatch.setenv("MOBILE_COMPRESS_BENCHMARK_MODEL", str(tmp_path / "nowhere" / "benchmark_model"))
    with virtual_device(tmp_path) as dev:
        assert main(["deploy", str(recipe), "--device", dev.serial, "--transport", "adb-shell-tcp",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "benchmark_model not found" in err and "android_aarch64_benchmark_model" in err
    assert not out.exists()


# ----------------------------------------------------------------------------- the comparison itself


def _record(model: str, delegate: str, status: str = "ok", median: float | None = None, **extra) -> RunRecord:
    latency = None if median is None else {"n": 10, "mean_ms": median * 1.1, "median_ms": median, "min_ms": median,
                                            "max_ms": median * 1.5}
    return RunRecord(device="R5CT1", model=model, delegate=delegate, status=status, latency=latency, **extra)


def test_comparison_rows_say_what_the_deploy_bought() -> None:
    before = Side("before", "t/best", "b.tflite", "fp32", "x", arch="resnet20", params=270_000, macs=40_000_000,
                  size_bytes=1_100_000, top1=96.0, eval_images=359, eval_split="test")
    after = Side("after", "s/best", "a.tflite", "int8", "y", arch="mobilenet_v2", params=90_000, macs=5_000_000,
                 size_bytes=275_000, top1=95.2, eval_images=359, eval_split="test")
    records = [_record("before.tflite", "cpu-1t", median=4.0, power={"above_baseline_mw": 800.0}),
               _record("after.tflite", "cpu-1t", median=1.0, power={"above_baseline_mw": 600.0}),
               _record("before.tflite", "gpu-fp32", "failed", error="Failed to apply GPU delegate"),
               _record("after.tflite", "gpu-fp32", median=0.5)]
    report = DeployReport("r.yaml", "run", before, after, records, {"mode": "device", "serial": "R5CT1"})
    rows = {(r["metric"], r["delegate"]): r for r in comparison_rows(report)}
    assert rows[("top-1 of the .tflite", "")]["change"] == "-0.80 pts"
    assert rows[(".tflite size", "")]["change"] == "4.00x smaller" and rows[(".tflite size", "")]["unit"] == "bytes"
    assert rows[("MACs", "")]["change"] == "8.00x fewer"
    assert rows[("latency p50", "cpu-1t")]["change"] == "4.00x faster"
    assert rows[("power above idle", "cpu-1t")]["change"] == "1.33x less"
    gpu = rows[("latency p50", "gpu-fp32")]
    assert gpu["before"] is None and gpu["after"] == 0.5 and gpu["change"] is None
    assert gpu["before_status"] == "failed" and "Failed to apply GPU delegate" in gpu["note"]
    text = format_report(report)
    assert "failed" in text and "4.00x faster" in text and "phone R5CT1" in text
    assert change(MODEL_METRICS[1], 100, 200) == "2.00x larger"


def test_deploy_csv_is_formula_safe_and_the_files_are_replaced_whole(tmp_path, monkeypatch) -> None:
    import workflows.deploy.report as deploy_report

    before = Side("before", "t/best", "b.tflite", "fp32", "x", arch="resnet20", top1=96.0, size_bytes=-1)
    after = Side("after", "s/best", "a.tflite", "int8", "y", arch="mobilenet_v2", top1=95.2, size_bytes=-1)
    evil = "=HYPERLINK(\"http://evil.example\",\"x\")"
    records = [_record("before.tflite", evil, median=4.0), _record("after.tflite", evil, median=1.0)]
    report = DeployReport("r.yaml", "run", before, after, records, {"mode": "device", "serial": "R5CT1"})
    files = deploy_report.write_report(report, tmp_path)
    rows = {(r["metric"], r["delegate"]): r for r in csv.DictReader(files.csv.open(newline="", encoding="utf-8"))}
    top1 = rows[("top-1 of the .tflite", "")]
    assert top1["change"] == "'-0.80 pts"  # text starting with '-' is a formula to a spreadsheet
    assert (top1["before"], top1["after"]) == ("96.0", "95.2") and rows[(".tflite size", "")]["before"] == "-1"
    assert rows[("latency p50", "'" + evil)]["change"] == "4.00x faster"
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(deploy_report, "render_html", lambda r: "<html>" * 1000 + "\ud800")  # fails mid-write
    with pytest.raises(UnicodeEncodeError):
        deploy_report.write_report(report, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old  # the previous page, and no temp file


def test_deploy_takes_the_runs_of_its_own_files_by_path_and_content(tmp_path) -> None:
    """A run folder moved and deployed again: profile.json also holds the old folder's before/after.tflite runs.

    Those are other files of the same names; the deploy compares the runs of the files it has now.
    """
    import shutil

    from android_harness.delegates import DelegateConfig
    from workflows.deploy.run import DeployConfig, _profile
    from profiler.device_job import ProfileSettings

    def deploy_profile(run: Path):
        models = run / "deploy" / "models"
        config = DeployConfig("recipe.yaml", ProfileSettings(models=[], delegates=[DelegateConfig("cpu", threads=1)],
                                                             num_runs=3, warmup_runs=1, min_secs=0.0))
        records, _ = _profile(config, [models / "before.tflite", models / "after.tflite"], run / "deploy", None,
                              lambda serial: None, lambda message: None)
        return {(Path(r.model_path), r.model_sha256): r for r in records}

    first = tmp_path / "first" / "deploy" / "models"
    first.mkdir(parents=True)
    shutil.copyfile(TINY, first / "before.tflite")
    (first / "after.tflite").write_bytes(TINY.read_bytes() + b"\0" * 4096)  # other bytes, same graph
    assert len(deploy_profile(tmp_path / "first")) == 2
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "first", moved)
    runs = deploy_profile(moved)
    models = (moved / "deploy" / "models").resolve()
    now = [models / "before.tflite", models / "after.tflite"]
    assert sorted(runs) == sorted((path, file_sha256(path)) for path in now)  # these files' runs, both measured
    assert {r.status for r in runs.values()} == {"ok"}
    assert {Path(r.model).stem for r in runs.values()} == {"before", "after"}  # how the report tells the sides apart
    stored = json.loads((moved / "deploy" / "profile" / "profile.json").read_text())["runs"]
    assert len(stored) == 4  # the first folder's runs are still in the file, and were not taken


def test_host_choice_and_device_choice_share_one_rule() -> None:
    none, one, two = _lister(), _lister(("R5CT1", "device")), _lister(("A", "device"), ("B", "offline"))
    assert device_choice.find_phone(lister=none).host
    assert device_choice.find_phone(lister=one).serial == "R5CT1"
    assert device_choice.choose_device("auto", lister=one) == "R5CT1"
    choice = device_choice.find_phone(lister=two)
    assert choice.host and "2 devices are attached (A (device), B (offline))" in choice.reason
    with pytest.raises(UserError, match="2 devices are attached"):
        device_choice.choose_device("auto", lister=two)
    assert device_choice.choose_device("XYZ", lister=none) == "XYZ"  # a named serial is not looked up


def _float_report() -> DeployReport:
    """A host deploy whose figures are long floats, with a gpu run that failed for a long reason."""
    before = Side("before", "t/best", "b.tflite", "fp32", "x", arch="resnet56", params=855_770, macs=41_279_146,
                  size_bytes=3_459_876, top1=97.49303621169916, eval_images=359, eval_split="test")
    after = Side("after", "s/best", "a.tflite", "int8", "y", arch="mobilenet_v2", params=589_706, macs=6_001_122,
                 size_bytes=771_234, top1=96.65738161559888, eval_images=359, eval_split="test")
    reason = "Failed to apply GPU delegate: " + "OpenCL library not found in /vendor/lib64 " * 12 + "<end>"
    records = [_record("before.tflite", "cpu-1t", median=4.123456789, memory={"vm_hwm_mb": 42.54010009765625}),
               _record("after.tflite", "cpu-1t", median=1.0123456789, memory={"vm_hwm_mb": 20.987654321}),
               _record("before.tflite", "gpu-fp32", "failed", error=reason),
               _record("after.tflite", "gpu-fp32", "failed", error=reason)]
    return DeployReport("r.yaml", "run", before, after, records, {"mode": "host", "note": "no phone"},
                        timings={"chain": 101.23456789}, environment={"cores": 2, "memory_gib": 23.540279388427734})


def test_deploy_page_and_table_show_no_float_repr() -> None:
    import re

    from workflows.deploy.report import render_html
    from mobile_compress.report.numbers import RAW_FLOAT

    report = _float_report()
    page = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", render_html(report), flags=re.S))
    text = format_report(report)
    for view in (page, text):
        assert not RAW_FLOAT.findall(view), RAW_FLOAT.findall(view)
        assert "97.49 %" in view and "3.3 MiB" in view and "753.2 KiB" in view and "41.28 M" in view
        assert "4.123 ms" in view and "4.536 ms" in view and "42.5 MB" in view  # p50 and mean, before, cpu
    assert "memory 23.5 GiB" in page and "chain 101 s" in page


def test_deploy_page_keeps_a_failed_runs_reason_in_its_own_row_and_tables_in_their_block() -> None:
    import re

    from workflows.deploy.report import render_html

    page = render_html(_float_report())
    [table] = re.findall(r"<div class='wide'><table class='report'>.*?</table></div>", page, flags=re.S)
    [gpu] = [row for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S) if "gpu-fp32" in row]
    cells = re.findall(r"<td class='([^']*)'>(.*?)</td>", gpu)
    assert [text for _, text in cells[:4]] == ["latency p50", "gpu-fp32", "failed", "failed"]
    assert cells[-1][0] == "text note" and "both: Failed to apply GPU delegate" in cells[-1][1]
    assert "&lt;end&gt;" in cells[-1][1]  # the whole reason, in the row's own last cell, which wraps
