"""End-to-end conversion: checkpoint/.pt2/.onnx -> ONNX + TFLite with parity, offline.

One small model (MobileNetV2 width 0.35, small-input stem, 32x32, trained eight epochs on
the built-in digits, to about 96% top-1) is converted to every format once per module; the
other tests reuse its outputs or convert only what they need. The int8 bar needs a model that
separates the classes: one SGD epoch left it at chance, where rounding flips top-1 at random,
and four epochs (about 87%) left margins so thin that int8 flipped 3 of 50 answers.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from workflows.cli import main

CALIB = ["--calib", "builtin", "--calib-samples", "32", "--parity-samples", "100"]


def _block_network(mp: pytest.MonkeyPatch) -> list:
    """Make every outgoing connection fail (and record it), in this process."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args and isinstance(args[0], socket.socket) else args)
        raise OSError("network disabled by the test")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket.socket, "connect_ex", refuse)
    mp.setattr(socket, "create_connection", refuse)
    mp.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from mobile_compress.training.job import TrainJob, run_train_job
    from mobile_compress.training import TrainConfig

    out = tmp_path_factory.mktemp("ckpt") / "run"
    job = TrainJob(model="mobilenet_v2", data="builtin", out_dir=str(out), image_size=32,
                   options={"width_mult": 0.35, "small_input": True},
                   config=TrainConfig(epochs=8, batch_size=32, optimizer="adamw", lr=3e-3, weight_decay=0.0,
                                      progress=False))
    return Path(run_train_job(job).checkpoint)


@pytest.fixture(scope="module")
def converted(checkpoint, tmp_path_factory):
    """Every format from the checkpoint, NHWC, int8 I/O, with networking disabled."""
    out = tmp_path_factory.mktemp("converted")
    with pytest.MonkeyPatch.context() as mp:
        attempts = _block_network(mp)
        rc = main(["convert", str(checkpoint), "--out", str(out), "--quiet", *CALIB])
    report = json.loads((out / "report.json").read_text())
    return rc, out, report, attempts


def _artifact(report: dict, fmt: str) -> dict:
    return next(a for a in report["artifacts"] if a["format"] == fmt)


def test_every_format_is_written_and_meets_its_bar(converted) -> None:
    rc, out, report, _ = converted
    assert rc == 0, report["problems"]
    assert report["passed"] and report["problems"] == []
    assert [a["format"] for a in report["artifacts"]] == ["onnx", "fp32", "fp16", "dynamic", "int8"]
    for name in ("model.onnx", "model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite",
                 "model_int8.tflite"):
        assert (out / name).stat().st_size > 10_000, name
    for art in report["artifacts"]:
        p = art["parity"]
        assert p["samples"] == 100 and art["passed"], art
        assert set(p) >= {"max_abs_diff", "mean_abs_diff", "cosine_min", "top1_agreement"}
    assert _artifact(report, "fp32")["parity"]["max_abs_diff"] <= 1e-4 * _artifact(report, "fp32")["parity"]["max_abs_reference"]
    assert _artifact(report, "fp16")["parity"]["cosine_min"] >= 0.9999
    assert _artifact(report, "int8")["parity"]["top1_agreement"] >= 0.98
    int8_io = _artifact(report, "int8")["io"]
    assert int8_io["ranges"].startswith("observers: min/max over 32 calibration images")
    transfer = int8_io["range_transfer"]  # every int8 activation carries an observed range
    assert transfer["matched"] == transfer["activations"] > 0 and not transfer["unmapped"] and not transfer["conflicts"]
    assert report["reference"] == "pytorch" and report["data"] == "builtin"
    assert _artifact(report, "onnx")["parity"]["reference_top1_accuracy"] >= 0.5  # agreement means something
    assert report["normalization"]["mean"] == pytest.approx([0.3095] * 3, abs=1e-3)  # the checkpoint's digits stats


def test_conversion_never_touches_the_network(converted) -> None:
    rc, _, _, attempts = converted
    assert rc == 0 and attempts == []


def test_network_block_really_stops_onnx2tf_downloads(tmp_path, monkeypatch) -> None:
    """Proof that the block above would have failed the conversion had onnx2tf tried to download."""
    import onnx2tf.utils.common_functions as common

    attempts = _block_network(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no sample file here, so onnx2tf's helper would download
    with pytest.raises(Exception):
        common.download_test_image_data()
    assert attempts


def test_onnx_artifact_is_checked_simplified_self_contained(converted) -> None:
    import onnx

    _, out, report, _ = converted
    assert sorted(p.name for p in out.iterdir()) == ["mobile-compress.log", "model.onnx", "model_dynamic.tflite",
                                                    "model_fp16.tflite", "model_fp32.tflite", "model_int8.tflite",
                                                    "report.json"]  # the log holds the libraries' output
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert report["opset"] == 18 and _artifact(report, "onnx")["io"]["opset"] == 18
    assert _artifact(report, "onnx")["io"]["simplified"] is True
    assert report["batch"] == 1
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_tflite_io_types_and_layout(converted) -> None:
    _, _, report, _ = converted
    for fmt in ("fp32", "fp16", "dynamic"):
        io = _artifact(report, fmt)["io"]
        assert io["dtype"] == "float32/float32" and io["shape"] == [1, 32, 32, 3], fmt  # NHWC by default
    int8 = _artifact(report, "int8")
    assert int8["io"]["dtype"] == "int8/int8" and int8["io"]["input_quantization"][0] > 0
    assert int8["float_fallback"] == []
    assert "DEQUANTIZE" in _artifact(report, "fp16")["ops"]  # fp16 weights, float32 compute and I/O


def test_onnx_source_nchw_uint8_leaves_the_file_alone(converted, tmp_path) -> None:
    _, out, _, _ = converted
    user_file = tmp_path / "user.onnx"
    shutil.copyfile(out / "model.onnx", user_file)
    before = hashlib.sha256(user_file.read_bytes()).hexdigest()
    rc = main(["convert", str(user_file), "--out", str(tmp_path / "out"), "--formats", "fp32,int8",
               "--layout", "nchw", "--int8-io", "uint8", "--normalization", "digits", "--quiet", *CALIB])
    assert hashlib.sha256(user_file.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "user.onnx"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rc == 0, report["problems"]
    assert report["reference"] == "onnxruntime" and report["source_kind"] == "onnx"
    assert _artifact(report, "fp32")["io"]["shape"] == [1, 3, 32, 32]
    int8 = _artifact(report, "int8")
    assert int8["io"]["dtype"] == "uint8/uint8" and int8["io"]["shape"] == [1, 3, 32, 32]
    assert int8["parity"]["top1_agreement"] >= 0.98 and int8["float_fallback"] == []
    assert int8["io"]["ranges"].startswith("onnx2tf calibration (onnx source")


def test_pt2_source_and_a_broken_threshold_exit_nonzero_naming_the_artifact(checkpoint, tmp_path, capsys) -> None:
    import torch

    from mobile_compress.training.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    program = torch.export.export(model.eval(), (torch.zeros(1, 3, 32, 32),))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    out = tmp_path / "out"
    rc = main(["convert", str(tmp_path / "model.pt2"), "--out", str(out), "--formats", "onnx,fp16,int8",
               "--int8-io", "float", "--normalization", "digits", "--fp16-min-cosine", "1.01", "--quiet", *CALIB])
    err = capsys.readouterr().err
    assert rc == 1
    assert "fp16: mean cosine similarity" in err and "below 1.01" in err
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False and report["source_kind"] == "pt2"
    assert _artifact(report, "onnx")["passed"] and (out / "model.onnx").is_file()  # the others are still written
    int8 = _artifact(report, "int8")
    assert int8["passed"] and int8["io"]["dtype"] == "float32/float32" and (out / "model_int8.tflite").is_file()
    assert int8["io"]["ranges"].startswith("onnx2tf calibration (pt2 source")
    assert not _artifact(report, "fp16")["passed"] and (out / "model_fp16.tflite").is_file()


def test_int8_ranges_from_onnx2tf_on_request_and_when_ours_fail(checkpoint, tmp_path, monkeypatch) -> None:
    import converters.range_transfer as range_transfer

    rc = main(["convert", str(checkpoint), "--out", str(tmp_path / "asked"), "--formats", "int8",
               "--int8-ranges", "onnx2tf", "--quiet", *CALIB])
    asked = _artifact(json.loads((tmp_path / "asked" / "report.json").read_text()), "int8")
    assert rc == 0 and asked["passed"] and asked["io"]["ranges"] == "onnx2tf calibration (asked for)"
    assert "range_transfer" not in asked["io"]

    def broken(*args, **kwargs):
        raise RuntimeError("a range transfer that went wrong")

    monkeypatch.setattr(range_transfer, "transfer_ranges", broken)
    rc = main(["convert", str(checkpoint), "--out", str(tmp_path / "auto"), "--formats", "int8", "--quiet", *CALIB])
    auto = _artifact(json.loads((tmp_path / "auto" / "report.json").read_text()), "int8")
    assert rc == 0 and auto["passed"] and (tmp_path / "auto" / "model_int8.tflite").is_file()
    assert auto["io"]["ranges"] == ("onnx2tf calibration (observed ranges failed: int8 with observed ranges failed: "
                                    "RuntimeError: a range transfer that went wrong)")
    rc = main(["convert", str(checkpoint), "--out", str(tmp_path / "ours"), "--formats", "int8",
               "--int8-ranges", "observers", "--quiet", *CALIB])
    ours = _artifact(json.loads((tmp_path / "ours" / "report.json").read_text()), "int8")
    assert rc == 1 and "a range transfer that went wrong" in ours["error"]  # asked for ours: no silent fallback


def test_a_broken_artifact_fails_with_its_name_and_figure(checkpoint, tmp_path, monkeypatch, capsys) -> None:
    """Corrupt the ONNX model on its way out: parity must catch it and the command must fail."""
    import onnx.numpy_helper as nh

    import converters.onnx_export as onnx_export

    real = onnx_export.simplify

    def broken(model):
        model, ok = real(model)
        init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        init.CopyFrom(nh.from_array(nh.to_array(init) * 1.5, init.name))
        return model, ok

    monkeypatch.setattr(onnx_export, "simplify", broken)
    rc = main(["convert", str(checkpoint), "--out", str(tmp_path / "out"), "--formats", "onnx", "--quiet", *CALIB])
    err = capsys.readouterr().err
    assert rc == 1
    assert "onnx: max|diff|" in err and "exceeds 0.0001 x max|logit|" in err


def test_dynamic_batch_onnx(checkpoint, tmp_path) -> None:
    import onnxruntime as ort

    rc = main(["convert", str(checkpoint), "--out", str(tmp_path), "--formats", "onnx", "--dynamic-batch",
               "--quiet", *CALIB])
    assert rc == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["batch"] == "dynamic"
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    y = session.run(None, {session.get_inputs()[0].name: np.zeros((5, 3, 32, 32), np.float32)})[0]
    assert y.shape == (5, 10)


def _identity_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


@pytest.mark.parametrize("argv, message", [
    (["convert", "no/such/dir", "--out", "x"], "does not exist"),
    (["convert", "{ckpt}", "--out", "{tmp}", "--formats", "onnx,tflite"], "unknown format 'tflite'"),
    (["convert", "{ckpt}", "--out", "{tmp}", "--input-size", "32x"], "bad input size"),
    (["convert", "{ckpt}", "--out", "{tmp}", "--input-size", "0"], "bad input size"),
    (["convert", "{ckpt}", "--out", "{tmp}", "--calib", "no/such/data"], "no/such/data"),
    (["convert", "{onnx}", "--out", "{tmp}"], "--calib"),
    (["convert", "{onnx}", "--out", "{tmp}", "--calib", "builtin", "--normalization", "digits", "--int8-ranges",
      "observers"], "--int8-ranges observers needs a checkpoint"),
    (["convert", "{txt}", "--out", "{tmp}"], "not a checkpoint, .pt2 or .onnx"),
])
def test_user_mistakes_exit_2_with_a_message(checkpoint, tmp_path, capsys, argv, message) -> None:
    _identity_onnx(tmp_path / "model.onnx")
    (tmp_path / "notes.txt").write_text("hi")
    values = {"ckpt": str(checkpoint), "tmp": str(tmp_path / "out"), "onnx": str(tmp_path / "model.onnx"),
              "txt": str(tmp_path / "notes.txt")}
    argv = [a.format(**values) for a in argv]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and "Traceback" not in err
