"""The one conversion flow (converters.api), without TensorFlow: onnx2tf's build is replaced by a recorder.

What is checked: options are refused before any model loads, the float and the quantized-checkpoint paths
are steps of one flow (same checks, same progress account), and the calibration images are calibrated on
once: by our observers when their ranges make the int8 model, by TFLite's converter only when it makes it.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from converters import ConvertConfig, convert
from mobile_compress.errors import UserError

CALIB = 32


@pytest.fixture(scope="module")
def float_checkpoint(tmp_path_factory) -> Path:
    from mobile_compress.zoo_checkpoint import zoo_checkpoint

    return zoo_checkpoint("mobilenet_v2", tmp_path_factory.mktemp("flow") / "float", calibration_images=16,
                          width_mult=0.25, small_input=True)


@pytest.fixture(scope="module")
def quantized_checkpoint(float_checkpoint, tmp_path_factory) -> Path:
    import torch

    from mobile_compress.quantization import calibrate, prepare
    from mobile_compress.quantization.rebuild import spec_for
    from mobile_compress.training import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(float_checkpoint)
    shape = (1, 3, 32, 32)
    qmodel = prepare(model, shape)
    images = torch.randn(8, 3, 32, 32)
    calibrate(qmodel, torch.utils.data.TensorDataset(images, torch.zeros(8, dtype=torch.long)), 8)
    qmeta = replace(meta, transforms=[*meta.transforms, spec_for("ptq", shape)])
    return save_checkpoint(tmp_path_factory.mktemp("flow") / "ptq", qmodel, qmeta)


@pytest.fixture
def builds(monkeypatch) -> list[tuple[tuple[str, ...], int]]:
    """Every onnx2tf build asked for, as (formats, images it may calibrate on); each build fails."""
    import converters.onnx2tf_runner as runner

    calls: list[tuple[tuple[str, ...], int]] = []

    def record(onnx_path, work_dir, formats, calib_nchw, **kwargs):
        calls.append((tuple(formats), len(calib_nchw)))
        raise runner.Onnx2TfError("onnx2tf replaced by the test")

    monkeypatch.setattr(runner, "build_tflite", record)
    return calls


def _config(source: Path, out: Path, **kw) -> ConvertConfig:
    kw = {"formats": ("onnx", "fp32", "int8"), "calib": "builtin", "calib_samples": CALIB, "parity_samples": 8,
          "progress": False, **kw}
    return ConvertConfig(source=str(source), out_dir=str(out), **kw)


def _no_loading(monkeypatch) -> None:
    import converters.source as source

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(source, "load_source", refuse)


@pytest.mark.parametrize("where", ["missing", "checkpoint"])
def test_a_non_square_input_size_is_refused_before_any_model_loads(where, float_checkpoint, tmp_path,
                                                                  monkeypatch, capsys) -> None:
    from workflows.cli import main

    source = tmp_path / "no-such-checkpoint" if where == "missing" else float_checkpoint
    config = _config(source, tmp_path / "out", input_size=(32, 48))
    with pytest.raises(UserError, match="input size 32x48 is not square") as err:
        config.validate()
    assert "square --input-size" in err.value.hint
    _no_loading(monkeypatch)
    with pytest.raises(UserError, match="input size 32x48 is not square"):
        convert(config)
    assert main(["convert", str(source), "--out", str(tmp_path / "cli"), "--input-size", "32x48"]) == 2
    assert "input size 32x48 is not square" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cli").exists()


def test_a_quantized_checkpoint_is_checked_like_any_source_before_it_loads(quantized_checkpoint, tmp_path,
                                                                          monkeypatch) -> None:
    _no_loading(monkeypatch)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match="is a file"):
        convert(_config(quantized_checkpoint, tmp_path / "file"))
    with pytest.raises(UserError, match="converts to int8 \\(and onnx\\)"):
        convert(_config(quantized_checkpoint, tmp_path / "out", formats=("fp16",)))


def test_calibration_data_that_cannot_be_opened_is_refused_before_any_model_loads(float_checkpoint, tmp_path,
                                                                                 monkeypatch) -> None:
    _no_loading(monkeypatch)
    (tmp_path / "images.txt").write_text("not images")
    for calib, message in ((tmp_path / "no-such-folder", "--calib: dataset not found"),
                           (tmp_path / "images.txt", "--calib: .* is a file but not a .npz archive")):
        with pytest.raises(UserError, match=message) as err:
            convert(_config(float_checkpoint, tmp_path / "out", calib=str(calib)))
        assert "ImageFolder directory" in err.value.hint
    assert not (tmp_path / "out").exists()


def test_observers_on_a_source_they_cannot_observe_are_refused_before_it_loads(tmp_path, monkeypatch) -> None:
    _no_loading(monkeypatch)
    (tmp_path / "model.onnx").write_bytes(b"never read")
    with pytest.raises(UserError, match="--int8-ranges observers needs a checkpoint") as err:
        convert(_config(tmp_path / "model.onnx", tmp_path / "out", int8_ranges="observers"))
    assert "--int8-ranges onnx2tf" in err.value.hint and not (tmp_path / "out").exists()


def test_observed_ranges_are_calibrated_once_and_tflite_only_calibrates_what_it_makes(
        float_checkpoint, tmp_path, builds) -> None:
    from converters.range_transfer import PROBE_IMAGES

    report = convert(_config(float_checkpoint, tmp_path / "observed", int8_ranges="observers"))
    assert report.artifact("int8").io["ranges"].startswith(f"observers: min/max over {CALIB} calibration images")
    int8_builds = [n for formats, n in builds if "int8" in formats]
    assert builds[0] == (("fp32",), CALIB) and len(int8_builds) == 1
    # our observers calibrated on the images: TFLite's converter only lays out the int8 graph on the probes
    assert int8_builds == [PROBE_IMAGES] < [CALIB]
    builds.clear()
    report = convert(_config(float_checkpoint, tmp_path / "asked", int8_ranges="onnx2tf"))
    assert builds == [(("fp32", "int8"), CALIB)]  # TFLite makes the int8 model: it calibrates on every image
    assert report.artifact("int8").io["ranges"] == "onnx2tf calibration (asked for)"


def _steps(text: str) -> list[tuple[int, int]]:
    return [(int(i), int(n)) for i, n in re.findall(r"^\[(\d+)/(\d+)\] ", text, re.M)]


@pytest.mark.parametrize("kind,ranges", [("float", "auto"), ("float", "onnx2tf"), ("quantized", "auto")])
def test_every_path_counts_its_steps_right(kind, ranges, float_checkpoint, quantized_checkpoint, tmp_path, builds,
                                           capsys) -> None:
    """The auto fallback to onnx2tf's calibration (the build fails here) is counted too."""
    source = quantized_checkpoint if kind == "quantized" else float_checkpoint
    report = convert(_config(source, tmp_path / "out", int8_ranges=ranges, progress=True))
    steps = _steps(capsys.readouterr().err)
    assert [i for i, _ in steps] == list(range(1, len(steps) + 1)) and steps[-1][0] == steps[-1][1], steps
    assert all(i <= n for i, n in steps), steps
    assert (tmp_path / "out" / "report.json").is_file() and set(report.timings) >= {"load", "data", "reference", "onnx"}
    assert report.source_kind == ("quantized" if kind == "quantized" else "checkpoint")
    assert [a.format for a in report.artifacts] == (["onnx", "int8"] if kind == "quantized"
                                                    else ["onnx", "fp32", "int8"])
    assert report.artifact("onnx").error is None and report.artifact("int8").error



def test_conversions_and_app_exports_share_one_progress_account(capsys) -> None:
    import converters.app_bundle.export as app_export
    from converters.progress import Progress

    assert app_export.Progress is Progress  # export_app numbers its steps with it
    progress = Progress(4)
    progress.line("loading")
    with progress.step("onnx", "exporting"):
        pass
    with progress.section(2):  # a branch that ends after one of its two steps
        progress.line("converting")
    assert progress.total == progress.index == 3 and set(progress.timings) == {"onnx"}
    with progress.section(1, planned=False):  # a fallback nobody counted
        progress.line("again")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["[1/4] loading", "[2/4] exporting ...", "      onnx took 0.0 s", "[3/4] converting", "[4/4] again"]
