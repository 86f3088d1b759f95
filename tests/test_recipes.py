"""Recipes: validation names the key, a recipe runs end to end, and a killed run resumes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mobile_compress.errors import UserError
from workflows.recipes import REGISTRY, load_recipe, run_recipe
from workflows.examples import all_examples
from workflows.recipes.table import stage_table
from mobile_compress.training import engine

# The example recipes that ship with the package (tests/test_examples.py covers listing and copying them).
EXAMPLES = [e.location for e in all_examples() if e.kind.name == "recipe"]

pytestmark = pytest.mark.usefixtures("single_thread")

TRAINING = {"epochs": 1, "batch_size": 8, "progress": False, "device": "cpu"}


def _npz(path: Path, n: int = 30, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = (rng.integers(0, 60, size=(n, size, size, 3)) + y[:, None, None, None] * 60).astype(np.uint8)
    np.savez(path, x=x, y=y)
    return path


def _write(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _tiny(tmp_path: Path, epochs: int = 1) -> dict:
    _npz(tmp_path / "d.npz")
    return {"data": "d.npz", "latency": False, "stages": [
        {"train": {"model": "resnet20", "image_size": 8, "training": {**TRAINING, "epochs": epochs}}},
        {"distill": {"teacher": "@train", "student": "mobilenet_v2", "image_size": 8, "kd": ["logit", "at"],
                     "options": {"width_mult": 0.25, "small_input": True}, "training": TRAINING}},
    ]}


# ----------------------------------------------------------------------------- validation


def _bad(tmp_path: Path, edit) -> str:
    recipe = _tiny(tmp_path)
    edit(recipe)
    with pytest.raises(UserError) as err:
        load_recipe(_write(tmp_path, recipe))
    return err.value.message


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r.update(stages="train"), "recipe.yaml: stages: expected a non-empty list"),
    (lambda r: r.update(colour="red"), "recipe.yaml: colour: unknown option"),
    (lambda r: r["stages"].append({"prun": {}}), "recipe.yaml: stages[2]: unknown stage kind 'prun'"),
    (lambda r: r["stages"][0]["train"].update(epochs=3), "recipe.yaml: stages[0].train.epochs: unknown option"),
    (lambda r: r["stages"][0]["train"]["training"].update(epochs=0),
     "recipe.yaml: stages[0].train.training.epochs: epochs = 0 is not valid"),
    (lambda r: r["stages"][0]["train"]["training"].update(lrate=1), "recipe.yaml: stages[0].train.training.lrate"),
    (lambda r: r["stages"][0]["train"].update(model="mobilenet_v9"), "recipe.yaml: stages[0].train.model"),
    (lambda r: r["stages"][0]["train"].update(options={"width_mult": 0.5}), "recipe.yaml: stages[0].train.options"),
    (lambda r: r["stages"][1]["distill"].update(temperature=-1), "recipe.yaml: stages[1].distill: temperature"),
    (lambda r: r["stages"][1]["distill"].update(kd="logit,dark"), "recipe.yaml: stages[1].distill: kd"),
    (lambda r: r["stages"][1]["distill"].update(teacher="@convert"), "recipe.yaml: stages[1].distill.teacher"),
    (lambda r: r["stages"][1]["distill"].update(teacher="@5"), "recipe.yaml: stages[1].distill.teacher"),
    (lambda r: r["stages"][1]["distill"].update(teacher="nowhere/best"), "recipe.yaml: stages[1].distill.teacher"),
    (lambda r: r["stages"][1]["distill"].update(cache_teacher=True, kd=["logit"]), "stages[1].distill.cache_teacher"),
    (lambda r: r.update(data="missing.npz"), "recipe.yaml: data: 'missing.npz' does not exist"),
    (lambda r: r["stages"].insert(0, {"convert": {}}), "recipe.yaml: stages[0].convert needs a checkpoint"),
    (lambda r: r["stages"].append({"convert": {"formats": ["fp32", "fp64"]}}), "recipe.yaml: stages[2].convert.formats"),
    (lambda r: r["stages"].append({"convert": {"thresholds": {"int8_min_top1": "high"}}}),
     "recipe.yaml: stages[2].convert.thresholds.int8_min_top1"),
    (lambda r: r["stages"].append({"prune": {"target": "macs=2"}}), "recipe.yaml: stages[2].prune.target 'macs=2'"),
    (lambda r: r["stages"].append({"prune": {"target": "macs=0.5", "criterion": "l7"}}),
     "recipe.yaml: stages[2].prune.criterion"),
    (lambda r: r["stages"].append({"prune": {"target": "macs=0.5", "min_keep": 1.5}}),
     "recipe.yaml: stages[2].prune: min_keep 1.5 must be a fraction"),
    (lambda r: r["stages"].append({"prune": {"target": "macs=0.5", "distill": {"alpha": 2}}}),
     "recipe.yaml: stages[2].prune.distill: alpha"),
    (lambda r: r["stages"].append({"quantize": {"method": "int4"}}), "recipe.yaml: stages[2].quantize.method"),
    (lambda r: r["stages"].append({"quantize": {"method": "ptq", "distill": {}}}),
     "recipe.yaml: stages[2].quantize.distill"),
    (lambda r: r["stages"].append({"factorize": {"energy": 0.9, "target": "macs=0.5"}}),
     "recipe.yaml: stages[2].factorize"),
    (lambda r: r["stages"].append({"factorize": {"energy": 0.9, "input": "@distill", "training": {"lr": -1}}}),
     "recipe.yaml: stages[2].factorize.training.lr"),
])
def test_validation_errors_name_the_key(tmp_path, edit, expected) -> None:
    assert expected in _bad(tmp_path, edit)


def test_yaml_syntax_error_names_the_line(tmp_path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("data: builtin\nstages:\n  - train: {model: resnet20\n")
    with pytest.raises(UserError, match=r"broken.yaml: not valid YAML \(line \d+"):
        load_recipe(path)


def test_invalid_recipe_fails_before_any_work(tmp_path, capsys) -> None:
    from workflows.cli import main

    recipe = _tiny(tmp_path)
    recipe["stages"].append({"convert": {"layout": "nchwx"}})
    out = tmp_path / "run"
    assert main(["run", str(_write(tmp_path, recipe)), "--out", str(out)]) == 2
    assert "stages[2].convert" in capsys.readouterr().err
    assert not out.exists(), "nothing may be written when the recipe is invalid"
    recipe["stages"].pop()
    assert main(["run", str(_write(tmp_path, recipe)), "--out", str(out), "--check"]) == 0
    assert "valid, 2 stage(s): train -> distill" in capsys.readouterr().out
    assert not out.exists()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_recipes_are_valid(path: Path) -> None:
    recipe = load_recipe(path, check_files=False)
    assert recipe.stages
    assert all(s.kind in REGISTRY for s in recipe.stages)
    # With the files checked too where they exist here (the CIFAR ones need the benchmark checkpoints).
    text = path.read_text()
    needed = [Path(w).expanduser() for w in text.split() if w.startswith("~/")]
    if all(p.exists() for p in needed):
        load_recipe(path, check_files=True)


def test_there_are_examples_for_the_common_cases() -> None:
    assert len(EXAMPLES) >= 3
    kinds = {p.name: [next(iter(s)) for s in yaml.safe_load(p.read_text())["stages"]] for p in EXAMPLES}
    assert any(k[0] == "distill" for k in kinds.values())
    assert any(k[0] == "train" and "convert" in k for k in kinds.values())


# ----------------------------------------------------------------------------- running and resuming


def test_tiny_recipe_runs_end_to_end(tmp_path) -> None:
    recipe = load_recipe(_write(tmp_path, _tiny(tmp_path)))
    lines: list[str] = []
    result = run_recipe(recipe, tmp_path / "run", log=lines.append)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert [s["status"] for s in state["stages"]] == ["done", "done"]
    for label in ("01_train", "02_distill"):
        metrics = json.loads((tmp_path / "run" / label / "metrics.json").read_text())
        assert (tmp_path / "run" / label / "best" / "weights.pt").is_file()
        assert metrics["table"][0]["params"] > 0 and metrics["table"][0]["top1"] is not None
    teacher = json.loads((tmp_path / "run" / "02_distill" / "best" / "checkpoint.json").read_text())
    assert teacher["extra"]["distillation"]["teacher"] == str((tmp_path / "run" / "01_train" / "best").resolve())
    assert [r["stage"] for r in result.rows] == ["01_train", "02_distill"]
    assert "02_distill" in lines[-1] and "top-1 %" in lines[-1]  # the table after the last stage
    with pytest.raises(UserError, match="already holds a run"):
        run_recipe(recipe, tmp_path / "run", log=lines.append)


def test_run_never_merges_into_a_folder_of_other_results_and_overwrite_replaces_a_run(tmp_path, capsys) -> None:
    from workflows.cli import main

    run = tmp_path / "run"
    run.mkdir()
    recipe = _write(run, _tiny(tmp_path) | {"data": str(tmp_path / "d.npz")})  # saved in its own run folder
    (run / "notes.txt").write_text("mine")
    assert main(["run", str(recipe), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "already holds results: notes.txt" in err and "--overwrite" in err and "Traceback" not in err
    assert (run / "notes.txt").read_text() == "mine" and not (run / "state.json").exists()

    (run / "notes.txt").unlink()  # the recipe alone is no result: the run starts
    assert main(["run", str(recipe), "--out", str(run)]) == 0
    first = (run / "01_train" / "best" / "weights.pt").stat().st_mtime_ns
    assert main(["run", str(recipe), "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["run", str(recipe), "--out", str(run), "--overwrite"]) == 0
    assert "--overwrite: deleted the earlier results" in capsys.readouterr().err
    assert (run / "01_train" / "best" / "weights.pt").stat().st_mtime_ns != first and recipe.is_file()


def test_crash_after_stage_one_resumes_from_stage_two(tmp_path, monkeypatch) -> None:
    recipe = load_recipe(_write(tmp_path, _tiny(tmp_path)))
    distill = REGISTRY["distill"]
    real_run = distill.run

    def crash(options, ctx):
        raise RuntimeError("killed")

    monkeypatch.setattr(distill, "run", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run_recipe(recipe, tmp_path / "run", log=lambda m: None)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert [s["status"] for s in state["stages"]] == ["done", "running"]
    first = (tmp_path / "run" / "01_train" / "best" / "weights.pt").stat().st_mtime_ns

    monkeypatch.setattr(distill, "run", real_run)
    result = run_recipe(recipe, tmp_path / "run", resume=True, log=lambda m: None)
    assert result.skipped == [0]
    assert (tmp_path / "run" / "01_train" / "best" / "weights.pt").stat().st_mtime_ns == first
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert [s["status"] for s in state["stages"]] == ["done", "done"]


def test_resume_continues_a_training_stage_from_its_last_epoch(tmp_path, monkeypatch) -> None:
    recipe = load_recipe(_write(tmp_path, _tiny(tmp_path, epochs=2)))
    real_save = engine.Trainer._save_epoch
    epochs_run: list[int] = []

    def save_then_die(self, epoch, stats, elapsed):
        real_save(self, epoch, stats, elapsed)
        epochs_run.append(epoch)
        if epoch == 0:
            raise KeyboardInterrupt  # killed right after the first epoch was committed

    monkeypatch.setattr(engine.Trainer, "_save_epoch", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "run", log=lambda m: None)
    monkeypatch.setattr(engine.Trainer, "_save_epoch", real_save)
    lines: list[str] = []
    original = engine.Trainer._run_epoch

    def count(self, epoch, loader):
        epochs_run.append(epoch)
        return original(self, epoch, loader)

    monkeypatch.setattr(engine.Trainer, "_run_epoch", count)
    run_recipe(recipe, tmp_path / "run", resume=True, log=lines.append)
    assert epochs_run[:2] == [0, 1]  # epoch 0 before the crash, then only epoch 1 of the train stage
    history = (tmp_path / "run" / "01_train" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2


def test_resume_refuses_a_changed_finished_stage(tmp_path) -> None:
    raw = _tiny(tmp_path)
    recipe = load_recipe(_write(tmp_path, raw))
    run_recipe(recipe, tmp_path / "run", log=lambda m: None, stop_after=0)
    raw["stages"][0]["train"]["training"]["lr"] = 0.2
    with pytest.raises(UserError, match=r"stages\[0\] changed"):
        run_recipe(load_recipe(_write(tmp_path, raw)), tmp_path / "run", resume=True, log=lambda m: None)
    with pytest.raises(UserError, match="nothing to resume"):
        run_recipe(recipe, tmp_path / "elsewhere", resume=True, log=lambda m: None)


def test_stage_table_shows_dashes_for_figures_that_do_not_apply() -> None:
    text = stage_table([{"stage": "01_train", "artifact": "best", "top1": 91.5, "eval_images": 359, "params": 1000,
                         "macs": 2_000_000, "size_bytes": 4096, "tflite_ms": None, "torch_ms": 1.25}])
    line = text.splitlines()[-1]
    assert "91.50" in line and "2.00 M" in line and "4 KiB" in line and "—" in line and "1.25" in line


@pytest.mark.slow
def test_builtin_digits_full_chain(tmp_path) -> None:
    """Every registered stage on the built-in digits at 16x16, one epoch each: the wiring, not the accuracy."""
    fast = {**TRAINING, "batch_size": 64}
    recipe = {"data": "builtin", "stages": [
        {"train": {"model": "resnet20", "image_size": 16, "training": fast}},
        {"distill": {"teacher": "@train", "student": "mobilenet_v2", "image_size": 16, "kd": ["logit", "hint"],
                     "options": {"width_mult": 0.5, "small_input": True}, "training": fast}},
        {"prune": {"target": "macs=0.7", "epochs_per_step": 1, "distill": {"kd": ["logit"]},
                   "training": {**fast, "lr": 0.01}}},
        {"factorize": {"energy": 0.9, "training": {**fast, "lr": 0.005}}},
        {"quantize": {"method": "qat", "calib_images": 64, "distill": {"kd": ["logit"]},
                      "training": {**fast, "lr": 0.002}}},
        {"convert": {"formats": ["fp32", "int8"], "calib_samples": 32, "parity_samples": 64}},
        {"export-app": {"format": "int8", "eval_samples": 64, "latency_runs": 5}},
        {"profile": {"devices": ["host"], "runs": 5}},
    ]}
    assert set(REGISTRY) == {next(iter(s)) for s in recipe["stages"]}, "the chain covers every stage kind"
    result = run_recipe(load_recipe(_write(tmp_path, recipe)), tmp_path / "run", log=print)
    by_stage = {}
    for row in result.rows:
        by_stage.setdefault(row["stage"], []).append(row)
    assert by_stage["03_prune"][0]["macs"] < by_stage["02_distill"][0]["macs"]
    assert any(r["artifact"].endswith(".tflite") and r["tflite_ms"] for r in by_stage["06_convert"])
    assert by_stage["07_export_app"][0]["artifact"] == "model.tflite"
    assert by_stage["08_profile"] and by_stage["08_profile"][0]["profiled_ms"] is not None
