"""benchmarks/prune_cifar10.py: its configurations of ours, the cuts against the control, the
per-method rows that let processes share a model and a killed run resume, and the peer's
handling of ResNet's zero-padded shortcuts (no training or conversion here)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

import models
from mobile_compress.counting import count_macs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import prune_cifar10 as bench  # noqa: E402


def _args(**kw) -> argparse.Namespace:
    base = dict(target=0.5, allocation="global", min_keep=0.3, variants="min0,uniform", peer_everywhere=False,
                timing_rounds=1)
    return argparse.Namespace(**{**base, **kw})


def test_ours_configurations_from_the_flags() -> None:
    configs = bench.ours_configs(_args())
    assert list(configs) == ["ours", "ours-min0", "ours-uniform"]
    assert configs["ours"].min_keep == 0.3 and configs["ours-min0"].min_keep == 0.0
    assert configs["ours-uniform"].allocation == "uniform"
    assert bench.method_order("shufflenet_v2", _args()) == ["unpruned", bench.CONTROL, *configs]
    assert bench.method_order("resnet56", _args())[-1] == "torch-pruning"
    with pytest.raises(SystemExit, match="min1.5"):
        bench.ours_configs(_args(variants="min1.5"))


def test_cuts_are_against_the_unpruned_model_and_the_control_is_not_timed(monkeypatch, tmp_path: Path) -> None:
    rows = [{"model": "m", "method": "unpruned", "macs": 100, "top1": 90.0},
            {"model": "m", "method": bench.CONTROL, "macs": 100, "top1": 91.0},
            {"model": "m", "method": "ours", "macs": 50, "top1": 89.5},
            {"model": "m", "method": "torch-pruning", "error": "RuntimeError: x"}]
    assert [r["method"] for r in rows if bench.timed(r)] == ["unpruned", "ours"]
    monkeypatch.setattr(bench, "interleaved_min_ms", lambda paths, **_: {"unpruned": 2.0, "ours": 1.2})
    bench.add_latency(rows, {"unpruned": tmp_path, "ours": tmp_path}, _args())
    ours = rows[2]
    assert ours["mac_cut"] == pytest.approx(0.5) and ours["latency_cut"] == pytest.approx(0.4)
    assert ours["latency_cut_per_mac_cut"] == pytest.approx(0.8)
    assert ours["top1_drop"] == pytest.approx(0.5) and ours["top1_drop_vs_control"] == pytest.approx(1.5)
    assert rows[1]["top1_drop"] == pytest.approx(-1.0) and "mac_cut" not in rows[1]
    for row in rows:  # one file per (model, method): what resume and --methods rely on
        bench.save_row(tmp_path, row)
    assert [r["method"] for r in bench.model_rows(tmp_path, "m", _args(variants=""))] == \
        ["unpruned", bench.CONTROL, "ours"]


def test_torch_pruning_keeps_resnet_zero_padded_shortcuts_valid() -> None:
    pytest.importorskip("torch_pruning")
    model = models.create("resnet20", num_classes=10).eval()
    pruned = bench.torch_pruning(model, 0.5)
    assert count_macs(pruned, 32) <= 0.51 * count_macs(model, 32)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert pruned.layer3[0].conv2.out_channels == 64  # the residual stream is left whole
