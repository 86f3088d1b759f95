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
    (lambda r: r["stages"].append({"prune": {"target": "macs=0.5", "latency_device": "PHONE1"}}),
     "recipe.yaml: stages[2].prune.latency_device: 'PHONE1' applies to latency targets only"),
    (lambda r: r["stages"].append({"prune": {"target": "latency=0.7", "latency_table": "missing.json"}}),
     "recipe.yaml: stages[2].prune.latency_table: 'missing.json' does not exist"),
    (lambda r: r["stages"].append({"prune": {"target": "latency=0.7", "latency_table": "recipe.yaml"}}),
     "recipe.yaml: stages[2].prune.latency_table: "),  # ... recipe.yaml is not valid JSON
    (lambda r: r["stages"].append({"prune": {"target": "latency=0.7", "latency_table": "d.npz",
                                             "latency_device": "PHONE1"}}),
     "recipe.yaml: stages[2].prune.latency_device: 'PHONE1' is not used when latency_table is given"),
    (lambda r: r["stages"].append({"prune": {"target": "latency=0.7", "latency_delegate": "gpu"}}),
     "recipe.yaml: stages[2].prune.latency_delegate: 'gpu' applies with latency_device only"),
    (lambda r: r["stages"].append({"prune": {"target": "latency=0.7", "latency_device": "PHONE1",
                                             "latency_delegate": "tpu"}}),
     "recipe.yaml: stages[2].prune.latency_delegate: 'tpu' is not one of cpu, gpu, nnapi"),
    (lambda r: r["stages"].append({"prune": {"target": "latency=0.7", "latency_device": "PHONE1",
                                             "latency_transport": "usb3"}}),
     "recipe.yaml: stages[2].prune.latency_transport: 'usb3' is not one of auto"),
    (lambda r: r["stages"].append({"prune": {"target": "latency=0.7", "latency_device": 7}}),
     "recipe.yaml: stages[2].prune.latency_device: 7 is not a non-empty string"),
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
    assert json.loads((tmp_path / "run" / "05_quantize" / "quantize.json").read_text())["method"] == "qat"
    assert result.results[6].metrics["converted_by"] is None  # the convert stage's int8 model takes int8 input
    assert by_stage["08_profile"] and by_stage["08_profile"][0]["profiled_ms"] is not None


# ----------------------------------------------------------------------------- latency targets


def _untrained(path: Path, size: int, classes: int, **meta) -> Path:
    """A ResNet-20 checkpoint as a prune (or convert) stage's input, so no training stage is needed."""
    import torch

    import models
    from mobile_compress.data.normalization import IMAGENET
    from mobile_compress.training import CheckpointMeta, save_checkpoint

    torch.manual_seed(0)
    model = models.create("resnet20", num_classes=classes)
    meta = {"normalization": IMAGENET.to_dict(), "labels": [str(i) for i in range(classes)], **meta}
    save_checkpoint(path, model, CheckpointMeta(arch="resnet20", num_classes=classes, input_size=size, **meta))
    return path


def _table_for(checkpoint: Path):
    """A table that prices every layer by its MACs and outputs, the shape a measured one has."""
    from mobile_compress.pruning import LatencyTable, LayerLatency, build_graph, example_input
    from mobile_compress.training import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    graph = build_graph(model, example_input(model, meta.input_size))
    return LatencyTable(0.001, {u.name: LayerLatency(1e-8, 1e-6) for u in graph.uses.values() if u.kind != "bn"},
                        {"runtime": "priced by the test"})


def _latency_recipe(tmp_path: Path, **prune) -> Path:
    _npz(tmp_path / "d.npz")
    _untrained(tmp_path / "ck", 8, 3)
    return _write(tmp_path, {"data": "d.npz", "latency": False, "stages": [
        {"prune": {"input": "ck", "target": "latency=0.7", "epochs_per_step": 0, **prune}}]})


def test_latency_target_prunes_with_a_saved_table(tmp_path) -> None:
    path = _latency_recipe(tmp_path, latency_table="table.json")
    _table_for(tmp_path / "ck").save(tmp_path / "table.json")
    result = run_recipe(load_recipe(path), tmp_path / "run", log=lambda m: None)
    metrics = result.results[0].metrics
    assert metrics["latency_after_ms"] <= 0.7 * metrics["latency_before_ms"]
    assert metrics["macs_after"] < metrics["macs_before"] and metrics["latency_table"] == str(tmp_path / "table.json")
    assert not (tmp_path / "run" / "01_prune" / "latency_table.json").exists(), "a given table is not copied"


def test_latency_table_is_measured_in_the_stage_folder_and_reused_on_resume(tmp_path, monkeypatch) -> None:
    """Measuring is replaced by a recorder; the run is killed after the table was saved, then resumed."""
    import workflows.recipes.stages.prune as prune_stage
    from profiler import latency_table

    recipe = load_recipe(_latency_recipe(tmp_path))
    measured: list[str] = []
    monkeypatch.setattr(latency_table, "build_latency_table",
                        lambda source, **_: measured.append(source) or _table_for(Path(source)))
    real_job = prune_stage.run_prune_job

    def killed(job):
        raise RuntimeError("killed")

    monkeypatch.setattr(prune_stage, "run_prune_job", killed)
    lines: list[str] = []
    with pytest.raises(RuntimeError, match="killed"):
        run_recipe(recipe, tmp_path / "run", log=lines.append)
    saved = tmp_path / "run" / "01_prune" / "latency_table.json"
    assert [Path(m).resolve() for m in measured] == [(tmp_path / "ck").resolve()] and saved.is_file()
    assert any("measuring a per-layer latency table on the host LiteRT interpreter" in line for line in lines)

    monkeypatch.setattr(prune_stage, "run_prune_job", real_job)
    result = run_recipe(recipe, tmp_path / "run", resume=True, log=lines.append)
    assert len(measured) == 1 and any(f"reusing {saved}" in line for line in lines)
    metrics = result.results[0].metrics
    assert metrics["latency_table"] == str(saved)
    assert metrics["latency_after_ms"] <= 0.7 * metrics["latency_before_ms"]


@pytest.mark.slow
def test_latency_target_on_builtin_digits_measures_the_host_and_cuts_the_latency(tmp_path) -> None:
    """The table measured for real (8 onnx2tf conversions, about 70 s on 2 cores), then the input and the result
    converted and timed on the host interpreter, round-robin, fastest run of each."""
    from mobile_compress.data.normalization import DIGITS
    from mobile_compress.pruning import LatencyTable
    from mobile_compress.training import load_checkpoint
    from profiler.latency_table import convert_fp32, interleaved_min_ms

    ck = _untrained(tmp_path / "ck", 32, 10, normalization=DIGITS.to_dict())
    recipe = {"data": "builtin", "latency": False, "stages": [
        {"prune": {"input": "ck", "target": "latency=0.7", "epochs_per_step": 0}}]}
    result = run_recipe(load_recipe(_write(tmp_path, recipe)), tmp_path / "run", log=print)
    metrics = result.results[0].metrics
    table = LatencyTable.load(tmp_path / "run" / "01_prune" / "latency_table.json")
    assert table.info["runtime"].startswith("host LiteRT interpreter") and table.info["conversions"] == 8
    assert metrics["latency_after_ms"] <= 0.7 * metrics["latency_before_ms"]
    assert metrics["macs_after"] < metrics["macs_before"]
    paths = {}
    for name, checkpoint in (("before", ck), ("after", result.results[0].artifact)):
        model, _ = load_checkpoint(checkpoint)
        (tmp_path / name).mkdir()
        paths[name] = convert_fp32(model, (32, 32), tmp_path / name)
    timed = interleaved_min_ms(paths)
    print("host LiteRT ms:", timed, "table:", metrics["latency_before_ms"], "->", metrics["latency_after_ms"])
    assert timed["after"] < timed["before"]


# ----------------------------------------------------------------------------- export-app after convert


def test_export_app_bundles_the_model_of_the_convert_stage_before_it(tmp_path, monkeypatch) -> None:
    """One onnx2tf conversion for both stages; the bundle's model differs from the convert stage's only by metadata:
    the same operators, the same outputs, and the convert stage's parity figures on its card."""
    import converters
    import workflows.recipes.stages.convert as convert_stage
    from converters.parity import run_tflite
    from converters.tflite_inspect import op_counts
    from mobile_compress.data.normalization import DIGITS

    real_convert = converters.convert
    sources: list[str] = []

    def counted(config):
        sources.append(config.source)
        return real_convert(config)

    monkeypatch.setattr(converters, "convert", counted)
    monkeypatch.setattr(convert_stage, "convert", counted)
    _untrained(tmp_path / "ck", 16, 10, normalization=DIGITS.to_dict(), extra={"data": "builtin"})
    recipe = {"data": "builtin", "latency": False, "stages": [
        {"convert": {"input": "ck", "formats": ["fp32"], "calib_samples": 8, "parity_samples": 20}},
        {"export-app": {"input": "ck", "format": "fp32", "eval_samples": 20, "latency_runs": 0}}]}
    lines: list[str] = []
    result = run_recipe(load_recipe(_write(tmp_path, recipe)), tmp_path / "run", log=lines.append)
    assert len(sources) == 1, f"converted {len(sources)} times: {sources}"
    converted, bundled = result.results
    assert bundled.metrics["converted_by"] == converted.artifact
    assert any("bundling the fp32 model of" in line for line in lines)

    model = Path(converted.metrics["artifacts"]["fp32"]["path"])
    bundle = tmp_path / "run" / "02_export_app" / "model.tflite"
    assert bundle.stat().st_size > model.stat().st_size  # the metadata and the labels
    assert op_counts(bundle) == op_counts(model)
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    assert np.array_equal(run_tflite(bundle, x, "nhwc"), run_tflite(model, x, "nhwc"))
    report = json.loads((Path(converted.artifact) / "report.json").read_text())
    card = json.loads((tmp_path / "run" / "02_export_app" / "model_card.json").read_text())
    assert card["accuracy"]["parity"]["figures"] == next(a["parity"] for a in report["artifacts"]
                                                         if a["format"] == "fp32")
