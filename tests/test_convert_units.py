"""Conversion pieces that need no TensorFlow: options, parity figures, verdicts, (de)quantization."""
from __future__ import annotations

import numpy as np
import pytest

from converters.config import FORMATS, ConvertConfig, Thresholds, parse_formats, parse_input_size
from converters.parity import compare, judge
from mobile_compress.litert import dequantize, quantize
from mobile_compress.errors import UserError


def test_parse_formats() -> None:
    assert parse_formats("int8,onnx") == ("onnx", "int8")  # canonical order
    assert parse_formats("all") == FORMATS
    assert parse_formats(" FP16 , dynamic ") == ("fp16", "dynamic")
    for bad in ("onnx,tflite", "", ","):
        with pytest.raises(UserError):
            parse_formats(bad)


def test_parse_input_size() -> None:
    assert parse_input_size("224") == (224, 224)
    assert parse_input_size("160x224") == (160, 224)
    assert parse_input_size("160,224") == (160, 224)
    assert parse_input_size(32) == (32, 32)
    for bad in ("x", "0", "-3", "1x2x3", "abc", "99999"):
        with pytest.raises(UserError, match="bad input size"):
            parse_input_size(bad)


def test_config_validation() -> None:
    for kwargs in ({"layout": "chw"}, {"int8_io": "int16"}, {"opset": 13}, {"parity_samples": 0},
                   {"formats": ("onnx", "bogus")}):
        with pytest.raises(UserError):
            ConvertConfig("src", "out", **kwargs).validate()
    ConvertConfig("src", "out", formats="onnx,int8").validate()


def test_compare_figures() -> None:
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]])
    out = ref + np.array([[0.0, 0.0, 0.5], [0.0, 3.0, 0.0]])
    p = compare(ref, out, labels=np.array([2, 1]))
    assert p.max_abs_diff == pytest.approx(3.0)
    assert p.mean_abs_diff == pytest.approx(3.5 / 6)
    assert p.max_abs_reference == pytest.approx(3.0)
    assert p.top1_agreement == pytest.approx(0.5)
    assert p.top1_accuracy == pytest.approx(1.0) and p.reference_top1_accuracy == pytest.approx(0.5)
    assert 0 < p.cosine_min < p.cosine_mean < 1
    assert compare(ref, ref).cosine_min == pytest.approx(1.0)


def test_judge_names_the_artifact_and_the_figure() -> None:
    ref = np.random.default_rng(0).normal(size=(50, 10))
    bar = Thresholds()
    assert judge("fp32", compare(ref, ref + 1e-7), bar) == []
    [msg] = judge("fp32", compare(ref, ref + 1e-2), bar)
    assert msg.startswith("fp32: max|diff|") and "max|logit|" in msg
    assert judge("fp16", compare(ref, ref + 1e-3), bar) == []
    [msg] = judge("fp16", compare(ref, -ref), bar)
    assert msg.startswith("fp16: mean cosine similarity") and "worst image" in msg
    shuffled = ref.copy()
    shuffled[:5] = shuffled[:5, ::-1]
    [msg] = judge("int8", compare(ref, shuffled), bar)
    assert msg.startswith("int8: top-1 agreement 90.0%")
    assert judge("int8", compare(ref, ref), bar, float_ops=2)[0].startswith("int8: 2 op(s) fall back to float")
    assert judge("int8", compare(ref, ref), Thresholds(allow_float_fallback=True), float_ops=2) == []


def test_fp16_bar_is_the_mean_cosine_so_one_image_with_near_zero_logits_does_not_decide_it() -> None:
    # As measured on MobileNetV3-Small x0.75 at 224: fp16 rounding adds an error of about the same
    # size to every image; on the one image whose logits are all small it is a larger angle.
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(100, 10)) * 7.0
    ref[0] /= 8.0
    noise = rng.normal(size=ref.shape) * 0.04
    p = compare(ref, ref + noise)
    assert p.cosine_min < 0.9999 < p.cosine_mean
    assert judge("fp16", p, Thresholds()) == []
    everywhere = compare(ref, ref + noise * 10)  # the same error, ten times larger, on every image
    assert everywhere.cosine_mean < 0.9999
    assert judge("fp16", everywhere, Thresholds())


def test_quantize_round_trip() -> None:
    x = np.linspace(-1, 1, 101, dtype=np.float32)
    for dtype, zero in ((np.int8, -1), (np.uint8, 127)):
        detail = {"dtype": dtype, "quantization": (2.1 / 255, zero)}
        q = quantize(x, detail)
        assert q.dtype == dtype
        assert np.abs(dequantize(q, detail) - x).max() <= 1.05 / 255 + 1e-6
    assert quantize(x, {"dtype": np.float32, "quantization": (0.0, 0)}) is not x
