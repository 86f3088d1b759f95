"""Defaults that train: the rule behind TrainConfig's open fields, and every student family on the digits.

The slow test is the tour's promise: with no tuning flag, 2 epochs on the built-in digits give
each student family at least 90 % top-1 (before the rule, MobileNetV2 x0.5 ended at 13.65 %).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import models
from workflows.cli import build_parser
from workflows.cli.common import train_config
from mobile_compress.data import open_dataset
from mobile_compress.data.transforms import RandomHorizontalFlip
from mobile_compress.errors import UserError
from mobile_compress.training.job import TrainJob, run_train_job
from mobile_compress.training import TrainConfig, Trainer
from mobile_compress.training.config import DEFAULT_RULE
from mobile_compress.training.optim import build_optimizer, build_scheduler, raise_bn_momentum

DIGITS_TRAIN = 1438  # images in the built-in digits' train split
CIFAR10_TRAIN = 50_000


def warmup_steps(config: TrainConfig, train_images: int) -> int:
    return round(config.warmup_epochs * math.ceil(train_images / config.batch_size))


# ---------------------------------------------------------------------- the rule


def test_small_dataset_gets_small_batches_and_a_warmup_floor():
    c = TrainConfig(epochs=2).resolve(DIGITS_TRAIN)
    assert (c.batch_size, c.optimizer, c.lr) == (16, "sgd", 0.05)
    assert math.ceil(DIGITS_TRAIN / c.batch_size) == 90  # >= 50 steps per epoch, not 23
    assert warmup_steps(c, DIGITS_TRAIN) == 20  # 2 % of 180 steps is 4: the floor wins


def test_large_dataset_keeps_batch_64_and_warms_up_for_two_percent():
    c = TrainConfig(epochs=10).resolve(CIFAR10_TRAIN)
    assert (c.batch_size, c.lr) == (64, 0.05)
    assert warmup_steps(c, CIFAR10_TRAIN) == round(0.02 * 10 * 782)  # 156 steps, a fifth of an epoch
    assert TrainConfig(epochs=90).resolve(1_281_167).batch_size == 64  # ImageNet


def test_batch_halves_until_an_epoch_has_100_steps():
    assert [DEFAULT_RULE.batch_size(n) for n in (100, 1438, 3200, 5000, 6399, 6400)] == [16, 16, 32, 32, 32, 64]


def test_adamw_gets_its_own_learning_rate():
    assert TrainConfig(optimizer="adamw").resolve(DIGITS_TRAIN).lr == 0.002


def test_warmup_never_takes_more_than_a_quarter_of_a_short_run():
    c = TrainConfig(epochs=1).resolve(64)  # 4 steps of 16
    assert warmup_steps(c, 64) == 1


def test_explicit_values_win():
    c = TrainConfig(epochs=2, batch_size=128, lr=0.3, warmup_epochs=0.0).resolve(DIGITS_TRAIN)
    assert (c.batch_size, c.lr, c.warmup_epochs) == (128, 0.3, 0.0)


def test_cli_flags_win_over_the_rule():
    args = build_parser().parse_args(["train", "--model", "resnet20", "--data", "builtin", "--out", "x",
                                      "--lr", "0.2", "--batch-size", "8", "--warmup-epochs", "1"])
    c = train_config(args).resolve(DIGITS_TRAIN)
    assert (c.batch_size, c.lr, c.warmup_epochs) == (8, 0.2, 1.0)
    plain = train_config(build_parser().parse_args(["train", "--model", "resnet20", "--data", "builtin",
                                                    "--out", "x"]))
    assert (plain.batch_size, plain.lr, plain.warmup_epochs) == (None, None, None)  # left to the rule


def test_min_lr_is_checked_against_the_default_lr():
    with pytest.raises(UserError, match="min_lr .* above lr .*the default"):
        TrainConfig(min_lr=0.06)


def test_optimizer_and_schedule_need_a_resolved_config():
    p = nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="resolve"):
        build_optimizer(TrainConfig(), [p])
    opt = build_optimizer(TrainConfig(lr=0.1), [p])
    with pytest.raises(ValueError, match="warmup_epochs"):
        build_scheduler(opt, TrainConfig(lr=0.1), steps_per_epoch=10)


def test_short_epochs_raise_a_low_batchnorm_momentum():
    net = models.create("mobilenet_v3_small", num_classes=10, small_input=True)  # BatchNorm momentum 0.01
    assert raise_bn_momentum(net, steps_per_epoch=782) == 0  # CIFAR-10 at batch 64: left alone
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert raise_bn_momentum(net, steps_per_epoch=90) == len(bns)
    assert all(m.momentum == pytest.approx(1 - 0.01 ** (1 / 90)) for m in bns)  # ~0.05: forgets its start in an epoch
    resnet = models.create("resnet20", num_classes=10)  # momentum 0.1 already
    assert raise_bn_momentum(resnet, steps_per_epoch=90) == 0
    one_step = models.create("mobilenet_v3_small", num_classes=10, small_input=True)
    raise_bn_momentum(one_step, steps_per_epoch=1)  # never above torch's 0.1: one batch must not replace the statistics
    assert all(m.momentum == pytest.approx(0.1) for m in one_step.modules() if isinstance(m, nn.BatchNorm2d))


def test_trainer_applies_the_rule_and_records_it(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(200, 8, generator=g), torch.randint(0, 2, (200,), generator=g))
    net = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8, momentum=0.01), nn.ReLU(), nn.Linear(8, 2))
    trainer = Trainer(net, TrainConfig(epochs=2, device="cpu", progress=False), data, out_dir=tmp_path,
                      log=lambda s: None)
    trainer.fit()
    assert (trainer.config.batch_size, trainer.config.lr) == (16, 0.05)
    assert trainer.steps_per_epoch == 13
    assert round(trainer.config.warmup_epochs * trainer.steps_per_epoch) == 6  # a quarter of 26 steps
    assert net[1].momentum == pytest.approx(0.1)  # 1 - 0.01 ** (1 / 13) = 0.30, capped at torch's default
    saved = torch.load(tmp_path / "train_state.pt", weights_only=False)["config"]
    assert (saved["batch_size"], saved["lr"]) == (16, 0.05)  # the run folder says what was used


def test_builtin_digits_are_not_mirrored_in_training(tmp_path):
    """A mirrored digit is no digit: flips held MobileNetV2 x0.5 at 86 % after 2 epochs, 95 % without."""
    def flips(dataset) -> int:
        return sum(isinstance(t, RandomHorizontalFlip) for t in dataset.transform.transforms)

    assert flips(open_dataset("builtin", split="train", image_size=32)) == 0
    x = np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 2)
    assert flips(open_dataset(tmp_path / "d.npz", split="train", image_size=32)) == 1  # other data keep flips


# ---------------------------------------------------------------------- every student family, tour budget

FAMILIES = {
    "mobilenet_v2": ("mobilenet_v2", {"width_mult": 0.5, "small_input": True}),
    "mobilenet_v3_small": ("mobilenet_v3_small", {"small_input": True}),
    "mobilenet_v3_large": ("mobilenet_v3_large", {"small_input": True}),
    "shufflenet_v2": ("shufflenet_v2_x0_5", {"small_input": True}),
    "squeezenet": ("squeezenet1_1", {"small_input": True}),
    "cifar_resnet": ("resnet20", {}),
    "resnet": ("resnet18", {"small_input": True}),
}


#: SqueezeNet 1.1 has no BatchNorm and a ReLU on its logits. At torchvision's initialisation its 512 features are
#: nearly the same for every image (mean cosine 0.97 between digits), so training sits on a plateau at ln 10 for
#: about 100 steps; under SGD the logits then die (all <= 0, zero gradient) at every rate measured (0.05, 0.01,
#: 0.003). AdamW 5e-4 with a positive logit bias escapes the plateau but reaches only 45 % in the tour's 180 steps
#: (96.9 % after 8 epochs); data-dependent re-initialisation (per-channel centring) made the features uninformative
#: (a linear probe fell from 70 % to 17 %). Strict, so a fix shows up here.
SQUEEZENET = pytest.mark.xfail(strict=True, reason="SqueezeNet 1.1 needs about 4x the tour's steps on the digits "
                                                   "(plateau of near-identical features at initialisation)")


@pytest.mark.slow
@pytest.mark.parametrize("family", [pytest.param(f, marks=SQUEEZENET) if f == "squeezenet" else f
                                    for f in sorted(FAMILIES)])
def test_defaults_train_every_family_on_the_digits(family, tmp_path, single_thread):
    name, options = FAMILIES[family]
    job = run_train_job(TrainJob(model=name, data="builtin", out_dir=str(tmp_path), options=options,
                                 config=TrainConfig(epochs=2, progress=False, device="cpu")))
    assert job.result.best_val_top1 >= 90.0, f"{family}: {job.result.best_val_top1:.2f} % top-1 after 2 epochs"
