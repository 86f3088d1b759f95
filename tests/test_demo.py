"""`mobile-compress demo`: the embedded recipe covers the whole chain and goes through deploy's code path.

The default tests check the recipe, the device rule and that the demo is deploy's path; the slow
ones run the demo at reduced settings (the hidden --quick: one epoch per stage) on the host and
assert on its report, and run `mobile-compress demo` exactly as a user types it, held to its
10-minute promise.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from android_harness.transport import AttachedDevice, TransportError
from workflows.cli import main
from mobile_compress.errors import UserError
from workflows.deploy import device_choice
from workflows.recipes import load_recipe
from workflows.demo import demo_config, demo_recipe, write_demo_recipe

VENV_BIN = Path(sys.executable).parent


def _kinds(recipe: dict) -> list[str]:
    return [next(iter(s)) for s in recipe["stages"]]


@pytest.mark.parametrize("quick", [False, True])
def test_embedded_recipe_is_the_whole_chain_and_valid(tmp_path, quick) -> None:
    raw = demo_recipe(quick)
    assert raw["data"] == "builtin"
    assert _kinds(raw) == ["train", "distill", "prune", "quantize", "convert", "export-app"]
    stages = {next(iter(s)): next(iter(s.values())) for s in raw["stages"]}
    assert stages["distill"]["teacher"] == "@train" and stages["quantize"]["method"] == "qat"
    assert {"onnx", "fp32", "int8"} <= set(stages["convert"]["formats"]) and stages["export-app"]["format"] == "int8"
    recipe = load_recipe(write_demo_recipe(tmp_path, quick))
    assert [s.kind for s in recipe.stages] == _kinds(raw)
    assert "mobile-compress deploy" in (tmp_path / "recipe.yaml").read_text()  # how to rerun or edit it


def _lister(*devices):
    return lambda kind: [AttachedDevice(serial, state, "test", {}) for serial, state in devices]


def test_demo_takes_the_one_phone_and_otherwise_the_host_with_the_reason(tmp_path) -> None:
    config, choice = demo_config(tmp_path / "a", lister=_lister())
    assert config.host and choice.reason == "no Android phone is attached"
    assert [d.label for d in config.settings.delegates] == ["cpu-1t"]
    config, choice = demo_config(tmp_path / "b", lister=_lister(("A", "device"), ("B", "device")))
    assert config.host and "2 devices are attached" in choice.reason

    def unreachable(serial):
        raise TransportError("connection refused")

    config, choice = demo_config(tmp_path / "c", lister=_lister(("R5CT1", "device")), opener=unreachable,
                                 log=lambda m: None)
    assert config.host and "R5CT1 cannot be profiled" in choice.reason and "connection refused" in choice.reason


def test_demo_on_a_single_virtual_phone_profiles_there(tmp_path, monkeypatch) -> None:
    from test_profile_flow import open_virtual, virtual_device
    from android_harness.transport import keys
    from android_harness.virtual_device.fake_benchmark_model import write_launcher

    monkeypatch.setenv(keys.ENV_KEY, str(tmp_path / "keys" / "adbkey"))  # both ends' key; never ~/.android
    monkeypatch.setenv("MOBILE_COMPRESS_BENCHMARK_MODEL", str(write_launcher(tmp_path / "bm" / "benchmark_model")))
    with virtual_device(tmp_path) as dev:
        serial = dev.serial
        config, choice = demo_config(tmp_path / "run", lister=_lister((serial, "device")), opener=open_virtual,
                                     log=lambda m: None)
    assert not config.host and choice.serial == serial == config.device
    assert [d.label for d in config.settings.delegates] == ["cpu-1t", "gpu-fp32", "nnapi"]


def test_demo_is_the_deploy_of_its_embedded_recipe_and_says_when_it_is_on_the_host(tmp_path, monkeypatch,
                                                                                  capsys) -> None:
    """The one code path: `demo` hands deploy its written recipe; the host fallback is announced before any work."""
    from workflows.cli import cmd_demo, cmd_deploy

    seen = []

    def deploy(config):
        seen.append(config)
        raise UserError("stop here")  # what deploy does with the config is tested in test_deploy.py

    monkeypatch.setattr(device_choice, "list_devices", _lister())
    monkeypatch.setattr(cmd_demo, "run_deploy", deploy)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    out = capsys.readouterr().out
    assert "no Android phone is attached" in out and "NOT ON A PHONE" in out
    [config] = seen
    assert Path(config.recipe) == tmp_path / "demo" / "recipe.yaml" and config.host and not config.resume
    assert config.host_reason == "no Android phone is attached"
    assert cmd_demo.report is cmd_deploy.report  # the same table, files and exit status as deploy


@pytest.mark.slow
def test_quick_demo_runs_the_chain_through_deploy_and_says_it_measured_on_the_host(tmp_path, monkeypatch,
                                                                                     capsys) -> None:
    monkeypatch.setattr(device_choice, "list_devices", _lister())
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "NOT ON A PHONE" in text and "no Android phone is attached" in text
    assert "demo finished in" in text and "latency p50" in text
    report = json.loads((out / "deploy" / "deploy.json").read_text())
    assert report["measured_on"]["mode"] == "host" and report["measured_on"]["note"] == "no Android phone is attached"
    assert report["before"]["arch"] == "resnet56" and report["before"]["format"] == "fp32"
    assert report["after"]["arch"] == "mobilenet_v2" and report["after"]["format"] == "int8"
    assert report["after"]["tflite"].endswith("after.tflite") and report["after"]["top1"] is not None
    assert report["before"]["eval_images"] == report["after"]["eval_images"] == 359  # the whole digits test split
    [cpu] = report["delegates"]
    assert cpu["delegate"] == "cpu-1t" and cpu["before"]["status"] == cpu["after"]["status"] == "ok"
    # every artifact of the chain is there: ONNX, both TFLite flavours and the app bundle
    assert list((out / "05_convert").rglob("*.onnx")) and list((out / "05_convert").rglob("*int8*.tflite"))
    assert {"model.tflite", "labels.txt", "MODEL_CARD.md", "MainActivity.kt"} <= {
        p.name for p in (out / "06_export_app").iterdir()}
    page = (out / "deploy" / "deploy.html").read_text()
    assert "not a phone" in page and "<svg" in page


@pytest.mark.slow
def test_demo_as_a_user_types_it_finishes_within_ten_minutes(tmp_path) -> None:
    exe = shutil.which("mobile-compress", path=str(VENV_BIN)) or str(VENV_BIN / "mobile-compress")
    start = time.monotonic()
    proc = subprocess.run([exe, "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    elapsed = time.monotonic() - start
    load = os.getloadavg()
    print(f"demo wall time {elapsed:.0f} s, load average after it {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < 600, f"the demo took {elapsed:.0f} s"
    report = tmp_path / "runs" / "demo" / "deploy"
    assert (report / "deploy.html").is_file() and (report / "deploy.json").is_file()
    assert "latency p50" in proc.stdout and "demo finished in" in proc.stdout
    assert "epoch" in proc.stdout + proc.stderr and "stage 06_export_app" in proc.stdout  # progress throughout


def test_prune_and_quantize_stages_take_augment(tmp_path) -> None:
    """The demo turns augmentation off in every stage; prune and quantize read it like train and distill."""
    from mobile_compress.errors import UserError

    recipe = load_recipe(write_demo_recipe(tmp_path))
    by_kind = {s.kind: s.options for s in recipe.stages}
    assert not any(by_kind[k].augment for k in ("train", "distill", "prune", "quantize"))
    for index, kind in ((2, "prune"), (3, "quantize")):
        parts = write_demo_recipe(tmp_path).read_text().split("augment: false")
        text = "augment: false".join(parts[:index + 1]) + "augment: maybe" + "augment: false".join(parts[index + 1:])
        (tmp_path / "recipe.yaml").write_text(text)
        with pytest.raises(UserError, match=rf"stages\[{index}\]\.{kind}\.augment: 'maybe' is not true or false"):
            load_recipe(tmp_path / "recipe.yaml")
