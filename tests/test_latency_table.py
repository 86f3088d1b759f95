"""The measured per-layer latency table (slow: it converts a few variants with onnx2tf)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models
from mobile_compress.pruning import LatencyTable, PruneConfig, prune
from profiler.latency_table import build_latency_table, tflite_latency_ms

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]


def test_table_from_few_conversions_drives_a_latency_target(tmp_path: Path) -> None:
    model = models.create("mobilenet_v2", num_classes=10, small_input=True, width_mult=0.5).eval()
    table = build_latency_table(model, 32, variants=6, runs=20, min_seconds=0.5, log=lambda s: None)
    assert table.info["conversions"] == 7
    prunable = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert set(prunable) <= set(table.layers)
    assert table.info["max_relative_error"] < 0.35  # a 6-coefficient fit of 7 timed variants on a busy host
    table.save(tmp_path / "t.json")
    result = prune(model, PruneConfig(target="latency=0.6"), 32, latency=LatencyTable.load(tmp_path / "t.json"))
    assert result.latency_after_ms <= 0.6 * result.latency_before_ms
    before = tflite_latency_ms(model, (32, 32), tmp_path / "a", runs=30, min_seconds=1.0)
    after = tflite_latency_ms(result.model, (32, 32), tmp_path / "b", runs=30, min_seconds=1.0)
    assert after < 0.85 * before  # measured, on a shared CPU: the cut is real, the exact figure is noisy
