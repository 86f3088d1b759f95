"""zoo_checkpoint: a zoo architecture as a loadable checkpoint, probed or briefly trained."""
from __future__ import annotations

import torch

from mobile_compress.training import EvalJob, run_eval_job
from mobile_compress.training import load_checkpoint
from mobile_compress.zoo_checkpoint import evenly_spread, zoo_checkpoint


def test_evenly_spread_covers_the_range_and_caps_the_count():
    assert evenly_spread(10, 5) == [0, 2, 4, 6, 8]
    assert evenly_spread(3, 10) == [0, 1, 2]
    assert evenly_spread(1797, 64)[-1] < 1797 and len(evenly_spread(1797, 64)) == 64


def test_probe_checkpoint_has_data_statistics_and_says_how_it_was_made(tmp_path):
    path = zoo_checkpoint("resnet20", tmp_path / "ck", calibration_images=32)
    model, meta = load_checkpoint(path)
    first_bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert first_bn.running_var.abs().sum() > 0 and not torch.allclose(first_bn.running_var, torch.ones_like(first_bn.running_var))
    assert "linear-probe" in meta.extra["weights"]
    assert meta.input_size == 32 and meta.num_classes == 10


def test_trained_checkpoint_beats_the_probe_on_held_out_digits(tmp_path):
    probe = zoo_checkpoint("resnet20", tmp_path / "probe")
    trained = zoo_checkpoint("resnet20", tmp_path / "trained", train_epochs=3, train_images=320)
    _, meta = load_checkpoint(trained)
    assert meta.extra["weights"].startswith("trained 3 epochs on 320 images")
    probe_top1 = run_eval_job(EvalJob(str(probe), "builtin", split="test")).result.top1
    trained_top1 = run_eval_job(EvalJob(str(trained), "builtin", split="test")).result.top1
    assert trained_top1 > max(60.0, probe_top1 + 10), (probe_top1, trained_top1)
