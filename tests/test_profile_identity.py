"""A profile knows a model by its path and content hash, never by its file name alone.

``profile a/model.tflite b/model.tflite`` measures and reports both; a rerun into the same
--out with another file of the same name measures that file; a resume reuses only the
runs of the very same file. Shown on the virtual ADB device, the in-test shell device,
the host, and through the command line.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from android_harness.delegates import DelegateConfig
from profiler.api import profile
from profiler.results import load
from test_profile_flow import (FACTS, TINY, LocalShellDevice, adb_key, fake_benchmark,  # noqa: F401 - fixtures
                               open_virtual, quick, settings, virtual_benchmark, virtual_device)


def two_same_named(tmp_path: Path) -> tuple[Path, Path]:
    """a/model.tflite and b/model.tflite with different bytes (b carries trailing padding LiteRT ignores)."""
    a, b = tmp_path / "models" / "a" / "model.tflite", tmp_path / "models" / "b" / "model.tflite"
    a.parent.mkdir(parents=True)
    b.parent.mkdir(parents=True)
    shutil.copyfile(TINY, a)
    b.write_bytes(TINY.read_bytes() + b"\0" * 4096)
    return a, b


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def by_name(records) -> dict:
    return {r.model: r for r in records}


def test_identity_is_path_and_content() -> None:
    from profiler.model_id import display_names, identify

    names = display_names([Path("/m/a/model.tflite"), Path("/m/b/model.tflite"), Path("/m/x.tflite")])
    assert names == {Path("/m/a/model.tflite"): "a/model.tflite", Path("/m/b/model.tflite"): "b/model.tflite",
                     Path("/m/x.tflite"): "x.tflite"}
    assert display_names([Path("/m/a/one.tflite"), Path("/n/b/two.tflite")])[Path("/n/b/two.tflite")] == "two.tflite"
    runs = display_names([Path("/x/run/model.tflite"), Path("/y/run/model.tflite"), Path("/model.tflite")])
    assert list(runs.values()) == ["x/run/model.tflite", "y/run/model.tflite", "/model.tflite"]
    [tiny] = identify([TINY, TINY.parent / ".." / TINY.parent.name / TINY.name])  # one file, named twice
    assert tiny.sha256 == sha(TINY) and tiny.name == "tiny.tflite" and tiny.path == TINY.resolve()


def test_same_named_models_are_two_rows_on_the_virtual_device(tmp_path: Path, adb_key, virtual_benchmark) -> None:
    a, b = two_same_named(tmp_path)
    out = tmp_path / "out"
    with virtual_device(tmp_path) as dev:
        both = profile(quick(models=[a, b]), out, serials=[dev.serial], opener=open_virtual, progress=lambda m: None)
        rows = by_name(both.records)
        assert sorted(rows) == ["a/model.tflite", "b/model.tflite"]
        assert {r.status for r in both.records} == {"ok"}
        assert (rows["a/model.tflite"].model_sha256, rows["b/model.tflite"].model_sha256) == (sha(a), sha(b))
        assert rows["a/model.tflite"].raw_dir != rows["b/model.tflite"].raw_dir
        assert "b/model.tflite" in both.csv.read_text() and "a/model.tflite" in both.html.read_text()

        # the same files again: a resume reuses both runs, nothing is measured
        first = json.loads((out / "profile.json").read_text())["runs"]
        messages: list[str] = []
        profile(quick(models=[a, b]), out, serials=[dev.serial], opener=open_virtual, progress=messages.append)
        assert any("already recorded" in m for m in messages)
        assert json.loads((out / "profile.json").read_text())["runs"] == first

        # a/model.tflite replaced by other bytes: measured again, its old figures dropped, and said so
        a.write_bytes(TINY.read_bytes() + b"\0" * 8192)
        messages.clear()
        changed = profile(quick(models=[a]), out, serials=[dev.serial], opener=open_virtual, progress=messages.append)
    rows = by_name(changed.records)
    assert sorted(rows) == ["a/model.tflite", "b/model.tflite"] and len(changed.records) == 2
    assert rows["a/model.tflite"].model_sha256 == sha(a) and rows["a/model.tflite"].status == "ok"  # measured anew
    assert any(f"{a.resolve()} changed" in m and "measuring it again" in m for m in messages)
    assert len(load(out / "profile.json")) == 2


def test_a_same_named_model_from_another_folder_is_measured_not_reused(tmp_path: Path, fake_benchmark: Path) -> None:
    a, b = two_same_named(tmp_path)
    device = LocalShellDevice(tmp_path / "device")
    out = tmp_path / "out"
    one = settings(delegates=[DelegateConfig("cpu", threads=1)], models=[a])
    profile(one, out, serials=["LOCAL1"], opener=lambda s: (device, FACTS), progress=lambda m: None)
    device.commands.clear()
    second = profile(settings(delegates=[DelegateConfig("cpu", threads=1)], models=[b]), out, serials=["LOCAL1"],
                     opener=lambda s: (device, FACTS), progress=lambda m: None)
    assert any("benchmark_model" in c for c in device.commands)  # b ran
    rows = by_name(second.records)
    assert sorted(rows) == ["a/model.tflite", "b/model.tflite"]  # names from both folders, told apart
    assert rows["b/model.tflite"].model_sha256 == sha(b) and rows["b/model.tflite"].model_path == str(b.resolve())


def test_host_mode_keeps_same_named_models_apart(tmp_path: Path) -> None:
    a, b = two_same_named(tmp_path)
    outputs = profile(quick(models=[a, b], num_runs=2), tmp_path / "out", host=True, progress=lambda m: None)
    rows = by_name(outputs.records)
    assert sorted(rows) == ["a/model.tflite", "b/model.tflite"] and {r.status for r in outputs.records} == {"ok"}


def test_cli_profile_two_same_named_models_and_the_out_rule(tmp_path: Path, capsys) -> None:
    from workflows.cli import main

    a, b = two_same_named(tmp_path)
    out = tmp_path / "out"
    common = ["--host", "--threads", "1", "--runs", "2", "--out", str(out)]
    assert main(["profile", str(a), str(b), *common]) == 0
    table = capsys.readouterr().out
    assert "a/model.tflite" in table and "b/model.tflite" in table
    runs = json.loads((out / "profile.json").read_text())["runs"]
    assert sorted((r["model"], r["model_sha256"]) for r in runs) == [("a/model.tflite", sha(a)),
                                                                   ("b/model.tflite", sha(b))]
    # the same --out again is refused unless told what to do with it
    assert main(["profile", str(b), *common]) == 2
    err = capsys.readouterr().err
    assert "already holds" in err and "profile.json" in err and "--resume" in err and "--overwrite" in err
    assert main(["profile", str(a), str(b), *common, "--resume"]) == 0
    assert "already recorded" in capsys.readouterr().err
    assert json.loads((out / "profile.json").read_text())["runs"] == runs  # the same files: reused as they were
    assert main(["profile", str(b), *common, "--overwrite"]) == 0
    assert "deleted the earlier results" in capsys.readouterr().err
    runs = json.loads((out / "profile.json").read_text())["runs"]
    assert [(r["model"], r["model_sha256"]) for r in runs] == [("model.tflite", sha(b))]  # replaced, not merged
    assert main(["profile", str(a), "--host", "--out", str(a.parent), "--overwrite"]) == 2
    assert "which this command reads" in capsys.readouterr().err and a.is_file()


def test_profile_json_of_the_older_schema_is_refused_clearly(tmp_path: Path) -> None:
    """Its runs carry no path or hash, so nothing in it can be told to be the same model."""
    from mobile_compress.errors import UserError
    from profiler.results import ResultStore

    (tmp_path / "profile.json").write_text(json.dumps({"schema": "mobile-compress/profile", "schema_version": 1,
                                                       "runs": [{"device": "X", "model": "model.tflite",
                                                                 "delegate": "cpu", "status": "ok"}]}))
    with pytest.raises(UserError, match="schema_version 1"):
        ResultStore(tmp_path)


def test_a_replaced_file_drops_its_old_runs_on_every_device(tmp_path: Path) -> None:
    from profiler.model_id import identify
    from profiler.results import ResultStore, RunRecord

    a, b = two_same_named(tmp_path)
    [old_a, old_b] = identify([a, b])
    store = ResultStore(tmp_path / "out")
    for device in ("PHONE_A", "PHONE_B"):
        for model in (old_a, old_b):
            store.add(RunRecord.of(model, device=device, delegate="cpu-1t", status="ok"))
    a.write_bytes(b.read_bytes() + b"\0")
    [new_a] = identify([a])
    assert len(store.replaced(new_a)) == 2 and not store.done("PHONE_A", new_a, "cpu-1t")
    store.add(RunRecord.of(new_a, device="PHONE_A", delegate="cpu-1t", status="ok"))
    kept = sorted((r.device, r.model, r.model_sha256 == new_a.sha256) for r in ResultStore(tmp_path / "out").records)
    assert kept == [("PHONE_A", "a/model.tflite", True), ("PHONE_A", "b/model.tflite", False),
                    ("PHONE_B", "b/model.tflite", False)]
