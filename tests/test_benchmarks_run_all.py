"""benchmarks/run_all.py: the summary from constructed results files, the goal verdicts, and the
resume / failure logic of the runner with the real steps replaced by fakes (no training here)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

import models

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import results_layout as layout  # noqa: E402
import run_all  # noqa: E402
import stages_cifar10  # noqa: E402
import summary_cifar10 as summary  # noqa: E402


def _write(root: Path, step: str, data) -> Path:
    path = layout.results_path(root, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


ENV = {"date": "2026-11-22 10:00 UTC", "cpu": "Test CPU", "cores": 2, "memory_gib": 8.0, "os": "Linux",
       "python": "3.11.7", "versions": {"torch": "2.13.0"}, "accelerator": "no GPU"}


def _results(root: Path, *, qat_mnv2: float = 76.0, kd_logit: float = 70.5, ratio: float = 0.8,
             int8_ms: float = 1.0) -> None:
    ckpt = str(root / "train_cifar10" / "mobilenet_v2" / "best")
    _write(root, "train", [
        {"model": "resnet56", "role": "teacher", "checkpoint": str(root / "train_cifar10" / "resnet56" / "best")},
        {"model": "mobilenet_v2", "role": "student", "checkpoint": ckpt}])
    zoo = [{"model": name, "input": 224, "convert_s": 30.0, "ms": {"fp32": 10.0, "int8": 4.0}}
           for name in models.names() if name != "mobilenet_v2"]
    _write(root, "convert", {"environment": ENV, "rows": [
        {"model": "mobilenet_v2", "input": 224, "convert_s": 40.0, "ms": {"fp32": 16.0, "int8": int8_ms, "onnx": 15.5}},
        *zoo]})
    _write(root, "quantize", {"environment": ENV, "args": {"models": "mobilenet_v2,shufflenet_v2_x1_0"}, "rows": [
        {"model": "mobilenet_v2", "checkpoint": ckpt, "test_images": 10000, "fp32_top1": 76.13, "ptq_top1": 75.5,
         "qat_top1": qat_mnv2, "qat_sim_top1": qat_mnv2 + 0.1, "qat_agreement_with_sim": 0.995,
         "torch_ptq_top1": 75.9},
        {"model": "shufflenet_v2_x1_0", "error": "RuntimeError: boom"}]})
    _write(root, "prune", [
        {"model": "resnet56", "method": "unpruned", "checkpoint": "c", "macs": 125_000_000, "top1": 79.8,
         "tflite_ms": 2.8},
        {"model": "resnet56", "method": "ours", "checkpoint": "c", "macs": 62_000_000, "top1": 79.3,
         "top1_drop": 0.5, "tflite_ms": 1.6, "mac_cut": 0.5, "latency_cut": 0.5 * ratio,
         "latency_cut_per_mac_cut": ratio},
        {"model": "resnet56", "method": "ours-min0", "checkpoint": "c", "macs": 62_500_000, "top1": 75.0},
        {"model": "resnet56", "method": "torch-pruning", "checkpoint": "c", "error": "RuntimeError: shapes"}])
    _write(root, "distill", {
        "mobilenet_v2/none": {"done": True, "student": "mobilenet_v2", "variant": "none", "last_top1": 70.0},
        "mobilenet_v2/logit": {"done": True, "student": "mobilenet_v2", "variant": "logit", "last_top1": kd_logit},
        "mobilenet_v2/at": {"done": True, "student": "mobilenet_v2", "variant": "at", "last_top1": 69.0},
        "mobilenet_v2/hint": {"done": False, "settings": {}}})
    _write(root, "stages", {"environment": ENV, "rows": [
        {"stage": "baseline", "label": "mobilenet_v2 fp32 (student)", "model": "mobilenet_v2", "peer": None,
         "test_images": 500, "size_bytes": 8_900_000, "macs": 87_976_448, "top1_tflite": 76.2, "top1_onnx": 76.2,
         "tflite_ms": 1.234, "onnx_ms": 1.5, "parity_passed": True, "parity_problems": [], "error": None},
        {"stage": "quantized", "label": "mobilenet_v2 PTQ int8", "model": "mobilenet_v2", "peer": "PTQ baseline",
         "test_images": 500, "size_bytes": 2_710_000, "macs": 87_976_448, "top1_tflite": 75.4, "tflite_ms": 0.61,
         "parity_passed": None, "parity_problems": [], "error": None},
        {"stage": "pruned", "label": "resnet56 pruned (ours, fine-tuned)", "model": "resnet56", "peer": None,
         "error": "FileNotFoundError: no checkpoint"}]})


# --- summary and verdicts ------------------------------------------------------------------------

def test_summary_renders_every_table_from_the_results_files(tmp_path):
    _results(tmp_path)
    text = summary.render(tmp_path, {"distill": {"status": "failed", "error": "exit status 1: killed"}},
                          "python benchmarks/run_all.py --x", "- Date: now")
    assert "Command: `python benchmarks/run_all.py --x`" in text
    # the stage table: accuracy on the .tflite, size, MACs, host latency, ONNX Runtime beside it
    assert ("| baseline | mobilenet_v2 fp32 (student) |  | 76.20 | 500 | 8.90 MB | 87.98 M | 1.234 | 1.500 | 76.20 | pass |"
            in text)
    assert "| quantized | mobilenet_v2 PTQ int8 | PTQ baseline | 75.40 | 500 | 2.71 MB |" in text
    assert "| pruned | resnet56 pruned (ours, fine-tuned) |  | fails: FileNotFoundError: no checkpoint" in text
    # every peer the issue names, from the scripts' own results
    assert "| PTQ baseline (int8 .tflite) | mobilenet_v2 | 75.50 % | QAT int8 76.00 % |" in text
    assert "| PyTorch quantization (torch.ao FX PTQ, scored in PyTorch) | mobilenet_v2 | 75.90 % |" in text
    assert "| Torch-Pruning (2× fewer MACs, same fine-tune) | resnet56 | fails: RuntimeError: shapes |" in text
    assert "| student without KD (same budget) | mobilenet_v2 | 70.00 % | logit KD 70.50 % |" in text
    assert "| ONNX Runtime fp32 (1 thread) | mobilenet_v2 (224) | 15.50 ms | LiteRT fp32 16.00 ms" in text
    # machine and versions as the files recorded them; the step table with the recorded failure
    assert "- convert (2026-11-22 10:00 UTC): Test CPU, 2 cores, 8 GiB, no GPU" in text
    assert "| distill | `distill_cifar10.py` | failed: exit status 1: killed |" in text
    assert "| train | `train_cifar10.py` | results present |" in text
    text = summary.render(tmp_path, {}, "cmd", "env", complete={"train": True, "prune": False})
    assert "| train | `train_cifar10.py` | results complete |" in text
    assert "| prune | `prune_cifar10.py` | results incomplete |" in text


def _by_goal(found):
    return {v.goal: v for v in found}


def test_verdicts_follow_the_numbers(tmp_path):
    _results(tmp_path)
    found = _by_goal(summary.verdicts(summary.load_all(tmp_path)))
    assert found["mobilenet_v2: QAT int8 .tflite within 0.3 points of fp32"].status == summary.MET
    assert found["mobilenet_v2: QAT int8 at least as good as PTQ int8"].status == summary.MET
    assert found["shufflenet_v2_x1_0: QAT int8 .tflite within 0.3 points of fp32"].status == summary.NOT_MEASURED
    assert "RuntimeError: boom" in found["shufflenet_v2_x1_0: QAT int8 at least as good as PTQ int8"].measured
    sim = found["mobilenet_v2: QAT .tflite = its fake-quant model (≥ 99% top-1 agreement, ≤ 0.2 points)"]
    assert sim.status == summary.MET and "agreement 99.50%" in sim.measured
    assert found["resnet56: pruned to 2× fewer MACs, within 1 point of the unpruned model"].status == summary.MET
    assert found["resnet56: latency cut at least 70% of the MAC cut"].status == summary.MET
    kd = found["mobilenet_v2: KD at least 1 point above no-KD"]
    assert kd.status == summary.NOT_MET and "best logit 70.50 vs no KD 70.00 (+0.50)" in kd.measured
    speed = found["int8 faster than fp32 on every zoo model (host LiteRT, XNNPACK, 1 thread)"]
    assert speed.status == summary.MET and f"{len(models.names())}/{len(models.names())} models" in speed.measured
    assert found["shufflenet_v2: latency cut at least 70% of the MAC cut"].status == summary.NOT_MEASURED
    assert found["mobilenet_v3_small: QAT int8 at least as good as PTQ int8"].status == summary.NOT_MEASURED
    assert found["shufflenet_v2_x1_0: KD at least 1 point above no-KD"].status == summary.NOT_MEASURED
    assert found["MobileNetV2 to ONNX and four TFLite flavours in at most 60 s"].status == summary.MET
    assert found["every converted stage artifact passes the parity bars"].status == summary.MET


def test_simulation_verdict_prefers_the_comparison_on_every_test_image(tmp_path):
    # 3 flips in the 200-image parity set read as 98.5 %; the run's pass over all 10,000 images says 99.56 %
    row = {"model": "mobilenet_v2", "fp32_top1": 76.13, "ptq_top1": 76.0, "qat_top1": 76.73, "qat_sim_top1": 76.72,
           "qat_agreement_with_sim": 0.985}
    verdict = _by_goal(summary.quantization_goals({"rows": [row]}))[
        "mobilenet_v2: QAT .tflite = its fake-quant model (≥ 99% top-1 agreement, ≤ 0.2 points)"]
    assert verdict.status == summary.NOT_MET
    row["qat_vs_sim"] = {"agreement": 99.56, "fake_quant_top1": 76.70, "tflite_top1": 76.73, "images": 10000}
    verdict = _by_goal(summary.quantization_goals({"rows": [row]}))[
        "mobilenet_v2: QAT .tflite = its fake-quant model (≥ 99% top-1 agreement, ≤ 0.2 points)"]
    assert verdict.status == summary.MET and "99.56% on 10000 test images" in verdict.measured


def test_verdicts_turn_when_the_numbers_miss(tmp_path):
    _results(tmp_path, qat_mnv2=75.0, kd_logit=71.5, ratio=0.5, int8_ms=20.0)
    found = _by_goal(summary.verdicts(summary.load_all(tmp_path)))
    assert found["mobilenet_v2: QAT int8 .tflite within 0.3 points of fp32"].status == summary.NOT_MET
    assert found["mobilenet_v2: QAT int8 at least as good as PTQ int8"].status == summary.NOT_MET
    assert found["resnet56: latency cut at least 70% of the MAC cut"].status == summary.NOT_MET
    assert found["mobilenet_v2: KD at least 1 point above no-KD"].status == summary.MET
    speed = found["int8 faster than fp32 on every zoo model (host LiteRT, XNNPACK, 1 thread)"]
    assert speed.status == summary.NOT_MET and "smallest speed-up 0.80× (mobilenet_v2)" in speed.measured
    _write(tmp_path, "convert", {"rows": [{"model": "resnet20", "input": 32, "ms": {"fp32": 1.0, "int8": 0.5}}]})
    partial = _by_goal(summary.verdicts(summary.load_all(tmp_path)))
    speed = partial["int8 faster than fp32 on every zoo model (host LiteRT, XNNPACK, 1 thread)"]
    assert speed.status == summary.NOT_MEASURED and "not timed: mobilenet_v2" in speed.measured  # a subset proves nothing
    text = summary.render(tmp_path, {}, "cmd", "env")
    assert "| **not met** |" in text


def test_missing_results_are_not_measured_never_met(tmp_path):
    found = summary.verdicts(summary.load_all(tmp_path))
    assert found and all(v.status == summary.NOT_MEASURED for v in found)
    layout.results_path(tmp_path, "prune").parent.mkdir(parents=True)
    layout.results_path(tmp_path, "prune").write_text('[{"model": "resnet56", "meth')  # cut short by a kill
    assert layout.load(tmp_path, "prune") is None


# --- the stage collection reads the scripts' layouts ----------------------------------------------

def test_stages_collects_each_scripts_artifacts(tmp_path):
    _results(tmp_path)
    report = layout.quantize_report(tmp_path, "mobilenet_v2", "qat")
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"artifacts": [{"format": "int8", "path": "/x/model_int8.tflite"}]}))
    found = {c.label: c for c in stages_cifar10.collect(tmp_path)}
    assert found["resnet56 fp32 (teacher)"].checkpoint.endswith("resnet56/best")
    assert found["mobilenet_v2 distilled (logit KD)"].checkpoint == str(
        layout.distill_checkpoint(tmp_path, "mobilenet_v2", "logit"))
    assert found["mobilenet_v2 without KD"].peer == "student without KD"
    assert found["resnet56 pruned (ours, fine-tuned)"].checkpoint == str(layout.prune_checkpoint(tmp_path, "resnet56"))
    assert "resnet56 pruned (torch-pruning, fine-tuned)" not in found  # the peer failed: nothing to measure
    assert not [label for label in found if "ours-min0" in label]  # other configurations of ours are no stage
    # prune_cifar10 started from a checkpoint of its own ("c"), so that start is a baseline row too.
    assert found["resnet56 fp32 (unpruned start of prune_cifar10)"].checkpoint == "c"
    qat = found["mobilenet_v2 QAT int8"]
    assert qat.tflite == "/x/model_int8.tflite" and qat.preprocess_from.endswith("mobilenet_v2/best")
    assert "mobilenet_v2 PTQ int8" not in found  # no PTQ report written


# --- the runner: resume, failures, arguments -------------------------------------------------------

def _fake_steps(calls: list[str], fail: str | None = None):
    def runner(step, argv, log_file):
        calls.append(step.name)
        if step.name == fail:
            raise run_all.StepFailed("exit status 1: out of memory")
        _write(ROOT[0], step.name, {"rows": [1]})

    steps = tuple(run_all.Step(name, f"{name}.py", lambda s: ["--x"], lambda d: bool((d or {}).get("rows")),
                               reads=("train", "quantize") if name == "stages" else ())
                  for name in ("train", "quantize", "stages"))
    return steps, runner


ROOT: list[Path] = []


def test_runner_skips_complete_steps_records_failures_and_goes_on(tmp_path):
    ROOT[:] = [tmp_path]
    calls: list[str] = []
    steps, runner = _fake_steps(calls, fail="quantize")
    settings = run_all.Settings("data", tmp_path)
    state = run_all.run_steps(steps, settings, runner=runner, echo=lambda s: None)
    assert calls == ["train", "quantize", "stages"]  # the failure did not stop the chain
    assert state["quantize"]["status"] == "failed" and "out of memory" in state["quantize"]["error"]
    assert state["train"]["status"] == "ok" and state["stages"]["status"] == "ok"
    assert json.loads((tmp_path / "run_all" / "state.json").read_text())["quantize"]["status"] == "failed"

    calls.clear()
    steps, runner = _fake_steps(calls)
    state = run_all.run_steps(steps, settings, runner=runner, echo=lambda s: None)
    # resume: train is complete and skipped; quantize runs again; stages is stale (quantize is newer) and reruns
    assert calls == ["quantize", "stages"]
    assert state["train"]["status"] == "results complete, skipped" and state["quantize"]["status"] == "ok"

    calls.clear()
    assert run_all.run_steps(steps, settings, runner=runner, echo=lambda s: None)
    assert calls == []  # everything complete and fresh
    run_all.run_steps(steps, settings, runner=runner, echo=lambda s: None, force={"train"}, only={"train"})
    assert calls == ["train"]


def test_a_step_that_ends_without_complete_results_is_not_ok(tmp_path):
    steps = (run_all.Step("train", "t.py", lambda s: [], lambda d: False),)
    state = run_all.run_steps(steps, run_all.Settings("d", tmp_path), runner=lambda *a: None, echo=lambda s: None)
    assert state["train"]["status"] == "finished, results incomplete"


def test_run_script_streams_logs_and_reports_the_exit(tmp_path):
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text("print('step one'); print('step two')\n")
    bad.write_text("import sys\nprint('working')\nsys.exit('no CIFAR-10 folder at /nowhere')\n")
    seen: list[str] = []
    run_all.run_script(run_all.Step("good", str(good), list, bool), ["--a"], tmp_path / "logs" / "good.log",
                       seen.append)
    assert seen == ["  good | step one", "  good | step two"]
    assert "step two" in (tmp_path / "logs" / "good.log").read_text()
    with pytest.raises(run_all.StepFailed, match="exit status 1: no CIFAR-10 folder at /nowhere"):
        run_all.run_script(run_all.Step("bad", str(bad), list, bool), [], tmp_path / "logs" / "bad.log",
                           lambda s: None)


def test_the_real_steps_arguments_and_completeness(tmp_path):
    steps = {s.name: s for s in run_all.STEPS}
    settings = run_all.Settings("/data/cifar10", tmp_path, budget_minutes=100, test_images=500,
                                extra={"prune": ["--epochs", "1"]})
    train = steps["train"].arguments(settings)
    assert train == ["--data", "/data/cifar10", "--out", str(tmp_path / "train_cifar10"), "--budget-minutes", "30.0"]
    distill = steps["distill"].arguments(settings)
    assert distill[distill.index("--budget-minutes") + 1] == "40.0"
    assert distill[distill.index("--teacher") + 1] == str(tmp_path / "train_cifar10" / "resnet56" / "best")
    no_budget = steps["distill"].arguments(run_all.Settings("/d", tmp_path))
    assert no_budget[no_budget.index("--budget-minutes") + 1] == str(run_all.DISTILL_DEFAULT_MINUTES)
    quantize = steps["quantize"].arguments(settings)
    assert quantize[quantize.index("--qat-minutes") + 1] == "3.3" and "--resume" not in quantize
    assert steps["prune"].arguments(settings)[-2:] == ["--test-images", "500"]

    assert not steps["train"].complete([{"model": "resnet56"}])
    assert steps["train"].complete([{"model": "resnet56"}, {"model": "mobilenet_v2"}])
    assert steps["quantize"].complete({"args": {"models": "a,b"}, "rows": [{"model": "a"}, {"model": "b"}]})
    assert not steps["quantize"].complete({"args": {"models": "a,b"}, "rows": [{"model": "a"}]})
    assert not steps["prune"].complete([{"model": "resnet56"}])
    from distill_cifar10 import STUDENTS, VARIANTS

    runs = {f"{s}/{v}": {"done": True, "student": s, "variant": v} for s in STUDENTS for v in VARIANTS}
    assert steps["distill"].complete(runs)
    runs["mobilenet_v2/at"]["done"] = False
    assert not steps["distill"].complete(runs)


def test_summary_only_prints_and_writes_the_section(tmp_path, monkeypatch, capsys):
    _results(tmp_path)
    written = {}
    monkeypatch.setattr(run_all, "update_section", lambda name, body: written.update({name: body}))
    assert run_all.main(["--summary-only", "--root", str(tmp_path), "--no-write"]) == 0
    assert "### Goals (" in capsys.readouterr().out and not written
    assert run_all.main(["--summary-only", "--root", str(tmp_path)]) == 0
    assert "| mobilenet_v2 | 75.50 % | QAT int8 76.00 % |" in written["run_all"]
    with pytest.raises(SystemExit, match="unknown step"):
        run_all.main(["--only", "trian", "--root", str(tmp_path)])


def test_stale_results_make_the_measuring_step_rerun(tmp_path):
    _results(tmp_path)
    stages = next(s for s in run_all.STEPS if s.name == "stages")
    old = time.time() - 100
    for step in ("train", "quantize", "prune", "distill"):
        os.utime(layout.results_path(tmp_path, step), (old, old))
    assert run_all.is_done(stages, tmp_path)
    os.utime(layout.results_path(tmp_path, "prune"), None)  # prune wrote new results after the measurement
    os.utime(layout.results_path(tmp_path, "stages"), (old + 1, old + 1))
    assert not run_all.is_done(stages, tmp_path)


@pytest.mark.slow
def test_stages_measures_checkpoints_and_files_for_real(tmp_path):
    """A small zoo checkpoint on the built-in digits: converted, scored on its .tflite and .onnx, timed."""
    from mobile_compress.zoo_checkpoint import zoo_checkpoint

    ckpt = str(zoo_checkpoint("resnet20", tmp_path / "ck", num_classes=10))
    first = stages_cifar10.measure([stages_cifar10.Candidate("baseline", "resnet20 fp32", "resnet20", ckpt,
                                                             checkpoint=ckpt)],
                                   Path("builtin"), tmp_path / "work", test_images=40, rounds=1, runs=3,
                                   log=lambda s: None)[0]
    assert first.error is None and first.test_images == 40 and first.parity_passed
    assert first.macs > 0 and first.size_bytes == Path(first.tflite).stat().st_size
    assert 0 <= first.top1_tflite <= 100 and abs(first.top1_tflite - first.top1_onnx) <= 2.5  # one image of 40
    assert first.tflite_ms > 0 and first.onnx_ms > 0
    rows = stages_cifar10.measure([
        stages_cifar10.Candidate("pruned", "a kept file", "resnet20", ckpt, tflite=first.tflite, macs=123,
                                 peer="Torch-Pruning"),
        stages_cifar10.Candidate("pruned", "a missing file", "resnet20", ckpt, tflite=str(tmp_path / "no.tflite"))],
        Path("builtin"), tmp_path / "work2", test_images=40, rounds=1, runs=3, log=lambda s: None)
    assert rows[0].error is None and rows[0].top1_tflite == first.top1_tflite and rows[0].macs == 123
    assert rows[0].onnx is None and rows[0].onnx_ms is None and rows[0].tflite_ms > 0
    assert rows[1].error.startswith("FileNotFoundError") and rows[1].tflite_ms is None


def test_main_runs_real_processes_records_a_failure_and_summarises(tmp_path, monkeypatch, capsys):
    """The whole command with two stand-in scripts: one writes its results, one crashes."""
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    target = layout.results_path(tmp_path, "train")
    good.write_text("import json, pathlib, sys\n"
                    f"p = pathlib.Path({str(target)!r}); p.parent.mkdir(parents=True, exist_ok=True)\n"
                    "p.write_text(json.dumps({'rows': [1], 'argv': sys.argv[1:]}))\nprint('trained')\n")
    bad.write_text("raise RuntimeError('CUDA is not here')\n")
    monkeypatch.setattr(run_all, "STEPS", (
        run_all.Step("train", str(good), lambda s: ["--budget", str(s.budget_minutes)], lambda d: bool(d.get("rows"))),
        run_all.Step("quantize", str(bad), lambda s: [], lambda d: True)))
    monkeypatch.setattr(run_all, "update_section", lambda name, body: None)
    code = run_all.main(["--root", str(tmp_path), "--budget-minutes", "10", "--extra", "train=--seed 3"])
    out = capsys.readouterr().out
    assert code == 1  # a step failed; the others ran and the summary was still written
    assert "  train | trained" in out and "[2/2] quantize: failed (exit status 1: RuntimeError: CUDA is not here" in out
    assert json.loads(target.read_text())["argv"] == ["--budget", "10.0", "--seed", "3"]
    state = run_all.read_state(tmp_path)
    assert state["train"]["status"] == "ok" and state["quantize"]["status"] == "failed"
    assert "| quantize | `quantize_cifar10.py` | failed: exit status 1: RuntimeError: CUDA is not here" in out
    assert (tmp_path / "run_all" / "logs" / "quantize.log").read_text().count("CUDA is not here") >= 1
