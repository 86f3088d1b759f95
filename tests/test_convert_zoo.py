"""Conversion coverage: every zoo model, at its full input size and with the small-input stem, at
every width, converts to ONNX and all four TFLite flavours, each of which loads and runs, and
the ONNX and fp32 TFLite artifacts compute what PyTorch computes (max|diff| <= 1e-4 x max|logit|).

The weights are fresh, with BatchNorm statistics and a linear-probe classifier fitted on the
built-in digits (``mobile_compress.zoo_checkpoint``): trained weights for every variant do not
exist. The fp32 bar is a property of the conversion alone and is asserted. The fp16 and int8
bars measure rounding against how well the classes are separated, which fresh features do
poorly, so their figures are printed (and tabulated by benchmarks/convert_zoo.py), not asserted.
"""
from __future__ import annotations

import pytest

import models
from converters import ConvertConfig, convert
from mobile_compress.zoo_checkpoint import zoo_checkpoint

WIDTHS = (0.5, 0.75, 1.0)


def coverage_cases() -> list[tuple[str, dict]]:
    cases = []
    for name in models.names():
        spec = models.spec(name)
        widths = WIDTHS if "width_mult" in spec.options else (None,)
        stems = (False, True) if "small_input" in spec.options else (None,)
        for width in widths:
            for small in stems:
                options = {}
                if width is not None:
                    options["width_mult"] = width
                if small:
                    options["small_input"] = True
                cases.append((name, options))
    return cases


# Fresh MobileNetV2 at 224 has near-collinear pooled features: even ONNX Runtime differs from
# PyTorch by ~1.8e-4 x max|logit| (the fp32 bar is 1e-4), so the bar cannot tell a conversion
# error from float reordering on these weights. Known, kept visible: trained weights are needed.
ILL_CONDITIONED = {("mobilenet_v2", False)}


def case_id(case: tuple[str, dict]) -> str:
    name, options = case
    return "-".join([name] + [f"{k}={v}" for k, v in sorted(options.items())])


def test_the_matrix_covers_every_model_and_both_stems():
    cases = coverage_cases()
    assert {name for name, _ in cases} == set(models.names())
    assert any(o.get("small_input") for n, o in cases if n == "shufflenet_v2_x1_0")
    assert {o.get("width_mult") for n, o in cases if n == "mobilenet_v3_small"} == set(WIDTHS)


def marked(case: tuple[str, dict]):
    name, options = case
    if (name, bool(options.get("small_input"))) in ILL_CONDITIONED:
        return pytest.param(case, marks=pytest.mark.xfail(reason="fresh weights are ill-conditioned at 224: even "
                                                                  "ONNX Runtime misses the fp32 bar", strict=False))
    return case


@pytest.mark.slow
@pytest.mark.parametrize("case", [marked(c) for c in coverage_cases()], ids=case_id)
def test_zoo_model_converts_to_every_format_within_parity(case, tmp_path):
    name, options = case
    checkpoint = zoo_checkpoint(name, tmp_path / "ck", **options)
    report = convert(ConvertConfig(source=checkpoint, out_dir=tmp_path / "out", calib="builtin",
                                   calib_samples=32, parity_samples=32, progress=False))
    assert [a.format for a in report.artifacts] == ["onnx", "fp32", "fp16", "dynamic", "int8"]
    errors = [f"{a.format}: {a.error}" for a in report.artifacts if a.error]
    assert not errors, errors
    exact = [f"{a.format}: {'; '.join(a.problems)}" for a in report.artifacts if a.format in ("onnx", "fp32") and a.problems]
    assert not exact, exact
    for a in report.artifacts:
        print(f"{case_id(case)} {a.format}: cosine {a.parity.cosine_min:.6f}, top-1 agreement "
              f"{a.parity.top1_agreement:.1%}, float ops {len(a.float_fallback or [])}")
