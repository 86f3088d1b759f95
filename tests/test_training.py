"""The training engine: config, optimiser, schedule, hooks, evaluation, learning, time budget."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mobile_compress.errors import UserError
from mobile_compress.training import EvalResult, Hook, TrainConfig, Trainer, evaluate
from mobile_compress.training.optim import build_optimizer, build_scheduler, split_decay, warmup_cosine_lr

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- helpers


def blobs(n: int = 256, dim: int = 8, classes: int = 4, seed: int = 0, spread: float = 0.3) -> TensorDataset:
    """Well-separated Gaussian blobs: a linearly separable problem."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + spread * torch.randn(n, dim, generator=g)
    return TensorDataset(x, y)


def tiny_net(dim: int = 8, classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, classes))


def cfg(**kw) -> TrainConfig:
    # Every value the default rule would size is given: these tests are about the engine (the rule: test_default_training).
    base = dict(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0.0, device="cpu", progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def quiet(*args, **kwargs) -> Trainer:
    return Trainer(*args, log=lambda s: None, **kwargs)


# ---------------------------------------------------------------------- config


def test_config_defaults_valid_and_round_trip():
    c = TrainConfig(epochs=3, optimizer="AdamW", warmup_epochs=0.5, max_minutes=2)
    assert c.optimizer == "adamw" and c.max_minutes == 2.0
    d = c.to_dict()
    assert TrainConfig.from_dict(d) == c
    assert set(d) >= {"epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                      "warmup_epochs", "min_lr", "label_smoothing", "seed", "num_workers", "device",
                      "max_minutes", "eval_every", "progress"}


@pytest.mark.parametrize("field,value,words", [
    ("optimizer", "adam", ["optimizer", "'sgd'", "'adamw'"]),
    ("device", "tpu", ["device", "'auto'", "'cpu'", "'cuda'"]),
    ("lr", 0, ["lr", "> 0"]),
    ("lr", float("nan"), ["lr"]),
    ("epochs", 0, ["epochs", ">= 1"]),
    ("epochs", True, ["epochs", "integer"]),
    ("batch_size", 2.5, ["batch_size", "integer"]),
    ("label_smoothing", 1.0, ["label_smoothing", "[0, 1)"]),
    ("momentum", -0.1, ["momentum"]),
    ("weight_decay", -1, ["weight_decay", ">= 0"]),
    ("max_minutes", 0, ["max_minutes", "> 0"]),
    ("eval_every", 0, ["eval_every"]),
    ("progress", "yes", ["progress", "true or false"]),
    ("num_workers", -1, ["num_workers"]),
])
def test_config_rejects_bad_values_naming_field(field, value, words):
    with pytest.raises(UserError) as err:
        TrainConfig(**{field: value})
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_config_cross_field_and_unknown_keys():
    with pytest.raises(UserError, match="warmup_epochs"):
        TrainConfig(epochs=2, warmup_epochs=3)
    with pytest.raises(UserError, match="min_lr"):
        TrainConfig(lr=0.1, min_lr=0.2)
    with pytest.raises(UserError, match="nesterov"):
        TrainConfig(momentum=0.0, nesterov=True)
    with pytest.raises(UserError) as err:
        TrainConfig.from_dict({"epochs": 2, "learning_rate": 0.1})
    assert "learning_rate" in str(err.value) and "lr" in str(err.value.hint)


def test_cuda_requested_without_cuda_is_user_error():
    if torch.cuda.is_available():
        pytest.skip("machine has CUDA")
    with pytest.raises(UserError, match="CUDA is not available"):
        quiet(tiny_net(), cfg(device="cuda"), blobs(64)).fit()


# ---------------------------------------------------------------------- loss, optimiser, schedule


class Capture(Hook):
    """Records what the engine hands to the loss hook, and the lr of every step."""

    def __init__(self):
        self.calls = []
        self.lrs = []

    def loss(self, trainer, inputs, targets, outputs, loss):
        self.calls.append((outputs.detach().clone(), targets.clone(), loss.detach().clone()))
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])
        return loss


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_label_smoothing_changes_the_loss_as_defined(eps):
    cap = Capture()
    quiet(tiny_net(), cfg(epochs=1, label_smoothing=eps), blobs(64), hooks=[cap]).fit()
    outputs, targets, loss = cap.calls[0]
    logp = F.log_softmax(outputs, dim=1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1).mean()
    uniform = -logp.mean(dim=1).mean()
    expected = (1 - eps) * nll + eps * uniform
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    if eps:
        assert abs(loss.item() - nll.item()) > 1e-3  # smoothing really changed it


def test_warmup_cosine_values_at_known_steps():
    # 2 epochs x 4 steps, warm-up 0.5 epoch = 2 steps, lr 1.0 -> min 0.1 over steps 2..7
    expected = [0.5, 1.0, 1.0, 0.9140576, 0.6890576, 0.4109424, 0.1859424, 0.1]
    got = [warmup_cosine_lr(s, 8, 2, 1.0, 0.1) for s in range(8)]
    assert got == pytest.approx(expected, abs=1e-6)
    # the scheduler the trainer uses gives the same per-step values
    c = cfg(epochs=2, lr=1.0, min_lr=0.1, warmup_epochs=0.5)
    p = nn.Parameter(torch.zeros(2, 2))
    opt = build_optimizer(c, [p])
    sched = build_scheduler(opt, c, steps_per_epoch=4)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(expected, abs=1e-6)


def test_trainer_follows_schedule_per_step():
    cap = Capture()
    # 64 samples / 16 = 4 steps per epoch
    quiet(tiny_net(), cfg(epochs=2, batch_size=16, lr=1.0, min_lr=0.1, warmup_epochs=0.5), blobs(64),
          hooks=[cap]).fit()
    assert cap.lrs == pytest.approx([0.5, 1.0, 1.0, 0.9140576, 0.6890576, 0.4109424, 0.1859424, 0.1], abs=1e-6)


def test_scheduler_resumes_from_state_dict():
    c = cfg(epochs=3, lr=0.3, warmup_epochs=1)
    p = nn.Parameter(torch.zeros(3, 3))
    opt = build_optimizer(c, [p])
    sched = build_scheduler(opt, c, steps_per_epoch=5)
    for _ in range(7):
        opt.step()
        sched.step()
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    lr_next = opt.param_groups[0]["lr"]
    p2 = nn.Parameter(torch.zeros(3, 3))
    opt2 = build_optimizer(c, [p2])
    sched2 = build_scheduler(opt2, c, steps_per_epoch=5)
    assert opt2.param_groups[0]["lr"] != pytest.approx(lr_next)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    assert opt2.param_groups[0]["lr"] == pytest.approx(lr_next)
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(warmup_cosine_lr(8, 15, 5, 0.3, 0.0))


def test_sgd_and_adamw_are_built_as_configured():
    p = nn.Parameter(torch.ones(4, 4))
    sgd = build_optimizer(cfg(optimizer="sgd", momentum=0.8, nesterov=True), [p])
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"] is True
    adamw = build_optimizer(cfg(optimizer="adamw", lr=0.01, weight_decay=0.0), [p])
    assert isinstance(adamw, torch.optim.AdamW)
    # AdamW's first step moves every weight by ~lr whatever the gradient size; SGD moves by lr * grad * (1 + m).
    grad = torch.linspace(0.001, 1.0, 16).view(4, 4)
    before = p.detach().clone()
    p.grad = grad.clone()
    adamw.step()
    assert torch.allclose(before - p.detach(), torch.full((4, 4), 0.01), rtol=1e-3)
    p.data.copy_(before)
    sgd_plain = build_optimizer(cfg(optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.0), [p])
    p.grad = grad.clone()
    sgd_plain.step()
    assert torch.allclose(before - p.detach(), 0.01 * 1.9 * grad, rtol=1e-4, atol=1e-6)


def test_no_weight_decay_on_batchnorm_and_bias():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = split_decay(model.parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay) == ["0.weight", "3.weight"]
    assert sorted(names[id(p)] for p in no_decay) == ["0.bias", "1.bias", "1.weight", "3.bias"]
    # Functionally: with zero gradients only the decayed tensors shrink.
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    opt = build_optimizer(cfg(optimizer="sgd", lr=0.1, weight_decay=0.5), model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        if n in ("0.weight", "3.weight"):
            assert torch.all(p < 1.0), n
        else:
            assert torch.all(p == 1.0), n
    adamw = build_optimizer(cfg(optimizer="adamw", weight_decay=0.3), model.parameters())
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.3, 0.0]


# ---------------------------------------------------------------------- hooks


class Recorder(Hook):
    def __init__(self, name, log, add=0.0, mul=1.0):
        self.name, self.log, self.add, self.mul = name, log, add, mul
        self.received = []

    def on_fit_start(self, trainer):
        assert trainer.optimizer is None  # optimizer comes after, so hooks can add parameters
        self.log.append((self.name, "fit_start"))

    def extra_parameters(self):
        self.log.append((self.name, "extra_parameters"))
        return ()

    def on_epoch_start(self, trainer, epoch):
        assert trainer.model.training
        self.log.append((self.name, "epoch_start", epoch))

    def loss(self, trainer, inputs, targets, outputs, loss):
        self.received.append(loss.item())
        self.log.append((self.name, "loss"))
        return (loss + self.add) * self.mul

    def on_after_backward(self, trainer):
        assert any(p.grad is not None for p in trainer.model.parameters())
        self.log.append((self.name, "after_backward"))

    def on_step_end(self, trainer):
        self.log.append((self.name, "step_end"))

    def on_epoch_end(self, trainer, epoch, stats):
        assert stats.epoch == epoch and stats.val_top1 is not None
        self.log.append((self.name, "epoch_end", epoch))

    def on_fit_end(self, trainer, result):
        self.log.append((self.name, "fit_end", len(result.epochs)))


def test_hooks_called_in_order_and_loss_chained():
    log = []
    a, b = Recorder("a", log, add=1.0), Recorder("b", log, mul=2.0)
    cap = Capture()
    data = blobs(64)
    # 64 / 32 = 2 steps per epoch, 2 epochs
    quiet(tiny_net(), cfg(epochs=2), data, blobs(32, seed=1), hooks=[cap, a, b]).fit()
    step = [("a", "loss"), ("b", "loss"), ("a", "after_backward"), ("b", "after_backward"),
            ("a", "step_end"), ("b", "step_end")]
    expected = [("a", "fit_start"), ("b", "fit_start"), ("a", "extra_parameters"), ("b", "extra_parameters")]
    for e in range(2):
        expected += [("a", "epoch_start", e), ("b", "epoch_start", e)] + step * 2 + [("a", "epoch_end", e),
                                                                                      ("b", "epoch_end", e)]
    expected += [("a", "fit_end", 2), ("b", "fit_end", 2)]
    assert log == expected
    # chained: a gets the cross-entropy, b gets a's output
    ce = [c[2].item() for c in cap.calls]
    assert a.received == pytest.approx(ce)
    assert b.received == pytest.approx([x + 1.0 for x in ce])


class L2(Hook):
    def __init__(self, strength):
        self.strength = strength

    def loss(self, trainer, inputs, targets, outputs, loss):
        return loss + self.strength * sum((p ** 2).sum() for p in trainer.model.parameters() if p.ndim > 1)


def test_loss_hook_really_changes_training():
    def weight_norm(hooks):
        model = tiny_net(seed=3)
        quiet(model, cfg(epochs=3, weight_decay=0.0), blobs(128), hooks=hooks).fit()
        return sum(float((p.detach() ** 2).sum()) for p in model.parameters() if p.ndim > 1)

    plain, shrunk = weight_norm([]), weight_norm([L2(1.0)])
    assert shrunk < 0.3 * plain, (plain, shrunk)


class Target(Hook):
    """A trainable scalar outside the model, pulled towards 3 (like a distillation adapter)."""

    def __init__(self):
        self.c = nn.Parameter(torch.zeros(()))

    def extra_parameters(self):
        return [self.c]

    def loss(self, trainer, inputs, targets, outputs, loss):
        return loss + (self.c - 3.0) ** 2

    def state_dict(self):
        return {"c": self.c.detach().clone()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.c.copy_(state["c"])


def test_extra_parameters_are_optimised():
    hook = Target()
    trainer = quiet(tiny_net(), cfg(epochs=4, optimizer="adamw", lr=0.3), blobs(256), hooks=[hook])
    trainer.fit()
    in_opt = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert any(p is hook.c for p in in_opt)
    assert abs(hook.c.item() - 3.0) < 0.5, hook.c.item()


class StopAfter(Hook):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, stats):
        if epoch == self.epoch:
            trainer.should_stop = True


def test_hook_can_stop_training():
    result = quiet(tiny_net(), cfg(epochs=5), blobs(64), hooks=[StopAfter(1)]).fit()
    assert len(result.epochs) == 2 and result.stopped_early


class NaNLoss(Hook):
    def loss(self, trainer, inputs, targets, outputs, loss):
        return loss * float("nan")


def test_divergence_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="diverged"):
        quiet(tiny_net(), cfg(epochs=2), blobs(64), hooks=[NaNLoss()], out_dir=tmp_path / "run").fit()
    assert not (tmp_path / "run" / "last").exists()  # the bad epoch was not saved


def test_bad_hook_and_bad_data_rejected():
    with pytest.raises(TypeError, match="Hook"):
        Trainer(tiny_net(), cfg(), blobs(64), hooks=[object()])
    with pytest.raises(TypeError, match="Dataset"):
        Trainer(tiny_net(), cfg(), DataLoader(blobs(64)))
    with pytest.raises(UserError, match="empty"):
        Trainer(tiny_net(), cfg(), TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)))


# ---------------------------------------------------------------------- evaluate


class Lookup(nn.Module):
    """Input i (a float) returns row i of a fixed logit table: predictions known by construction."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, x):
        return self.table[x.long().view(-1)]


def test_evaluate_top1_top5_on_known_predictions():
    classes, n = 7, 10
    table = torch.zeros(n, classes)
    targets = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    for i in range(n):
        order = [(targets[i].item() + 1 + j) % classes for j in range(classes)]  # target ranks last by default
        for rank, c in enumerate(order):
            table[i, c] = float(classes - rank)
    # samples 0-3: target is the top class; 4-7: target 3rd; 8-9: target last
    for i in range(4):
        table[i, targets[i]] = 100.0
    for i in range(4, 8):
        table[i, targets[i]] = (table[i].sort(descending=True).values[1] + table[i].sort(descending=True).values[2]) / 2
    model = Lookup(table)
    data = TensorDataset(torch.arange(n).float(), targets)
    res = evaluate(model, data, device="cpu", batch_size=3)
    assert isinstance(res, EvalResult)
    assert res.n == 10
    assert res.top1 == pytest.approx(40.0)
    assert res.top5 == pytest.approx(80.0)
    assert res.loss == pytest.approx(F.cross_entropy(table, targets).item(), rel=1e-6)
    # same numbers through a DataLoader, and a custom k
    res2 = evaluate(model, DataLoader(data, batch_size=4), device="cpu", topk=(1, 3, 5))
    assert (res2.top1, res2.top5, res2.n) == (res.top1, res.top5, res.n)
    assert res2.topk[3] == pytest.approx(80.0)


def test_evaluate_without_top5_for_few_classes_and_restores_mode():
    model = tiny_net(classes=3)
    model.train()
    res = evaluate(model, blobs(50, classes=3), device="cpu")
    assert res.top5 is None and res.n == 50 and 0 <= res.top1 <= 100
    assert model.training  # mode restored
    model.eval()
    evaluate(model, blobs(50, classes=3), device="cpu")
    assert not model.training


# ---------------------------------------------------------------------- learning, progress, budget


def test_tiny_model_learns_separable_problem():
    train, val = blobs(512, seed=0), blobs(256, seed=1)
    model = tiny_net()
    before = evaluate(model, val, device="cpu").top1
    result = quiet(model, cfg(epochs=4, lr=0.1, warmup_epochs=0.5), train, val).fit()
    assert result.best_val_top1 > 90.0, result
    assert before < 60.0
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert not result.stopped_early and result.elapsed > 0
    s = result.epochs[-1]
    assert s.val_n == 256 and s.train_n == 512 and s.images_per_sec > 0 and s.seconds > 0


def test_adamw_also_learns():
    result = quiet(tiny_net(), cfg(epochs=4, optimizer="adamw", lr=0.01, weight_decay=0.05), blobs(512),
                   blobs(256, seed=1)).fit()
    assert result.best_val_top1 > 90.0


def test_bf16_precision_autocasts_the_forward_and_still_learns():
    seen = []

    class Spy(Hook):
        def loss(self, trainer, inputs, targets, outputs, loss):
            seen.append((outputs.dtype, torch.is_autocast_enabled("cpu")))
            return loss

    model = tiny_net()
    result = Trainer(model, cfg(epochs=4, lr=0.1, precision="bf16"), blobs(512), blobs(256, seed=1),
                     hooks=[Spy()], log=lambda s: None).fit()
    assert seen and all(dtype == torch.bfloat16 and on for dtype, on in seen)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert result.best_val_top1 > 90.0
    fp32 = []
    Trainer(tiny_net(), cfg(epochs=1), blobs(64), hooks=[type("S", (Hook,), {"loss": lambda self, t, i, y, o, l: fp32.append(o.dtype) or l})()],
            log=lambda s: None).fit()
    assert set(fp32) == {torch.float32}
    with pytest.raises(UserError, match="precision"):
        TrainConfig(precision="fp8")


def test_summary_lines_and_no_bar_without_tty(capsys):
    lines = []
    Trainer(tiny_net(), cfg(epochs=2, progress=True), blobs(64), blobs(32, seed=1), log=lines.append).fit()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "val" in lines[1] and "img/s" in lines[1]
    err = capsys.readouterr().err
    assert "it/s" not in err and "batch/s" not in err  # stderr is not a TTY under pytest: no bar


def test_eval_every_skips_validation_but_not_the_last_epoch():
    result = quiet(tiny_net(), cfg(epochs=3, eval_every=2), blobs(64), blobs(32, seed=1)).fit()
    assert [s.val_top1 is not None for s in result.epochs] == [False, True, True]


def test_max_minutes_stops_after_the_epoch_that_crosses_it(tmp_path):
    result = quiet(tiny_net(), cfg(epochs=5, max_minutes=1e-6, eval_every=2), blobs(64), blobs(32, seed=1),
                   out_dir=tmp_path / "run").fit()
    assert result.stopped_early and len(result.epochs) == 1
    assert result.best_val_top1 is None and (tmp_path / "run" / "best" / "checkpoint.json").is_file()
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert state["next_epoch"] == 1
    # a budget crossed on the last epoch is not an early stop
    result = quiet(tiny_net(), cfg(epochs=1, max_minutes=1e-6), blobs(64)).fit()
    assert not result.stopped_early and len(result.epochs) == 1


def test_training_package_does_not_import_later_stages():
    code = ("import sys, mobile_compress.training\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('converters', 'profiler', 'android_harness')"
            " or m.startswith('workflows.cli')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_single_process_run_does_not_start_distributed():
    quiet(tiny_net(), cfg(epochs=1), blobs(64)).fit()
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())


class NoisyBlobs(torch.utils.data.Dataset):
    """Blobs with augmentation noise from torch, numpy and random: all three must be seeded in workers."""

    def __init__(self, n=96):
        self.base = blobs(n)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        import random

        import numpy as np

        x, y = self.base[i]
        noise = 0.1 * torch.randn(x.shape) + float(np.random.rand()) * 0.1 + random.random() * 0.1
        return x + noise, y


def test_worker_processes_are_seeded_reproducibly():
    def run(seed):
        model = tiny_net()
        quiet(model, cfg(epochs=2, num_workers=2, seed=seed), NoisyBlobs()).fit()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_progress_bar_on_a_tty(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    quiet(tiny_net(), cfg(epochs=1, batch_size=8, progress=True), blobs(64)).fit()
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "img_s=" in err and "lr=" in err
    quiet(tiny_net(), cfg(epochs=1, batch_size=8, progress=False), blobs(64)).fit()
    assert "loss=" not in capsys.readouterr().err


def test_fit_twice_on_one_trainer_starts_over():
    trainer = quiet(tiny_net(), cfg(epochs=2), blobs(64), blobs(32, seed=1))
    trainer.fit()
    result = trainer.fit()
    assert [s.epoch for s in result.epochs] == [0, 1] and trainer.global_step == 4


def test_evaluate_runs_where_the_model_is_by_default():
    model = tiny_net()
    res = evaluate(model, blobs(40))  # no device: the model's (CPU here)
    assert res.n == 40
    with pytest.raises(UserError, match="empty"):
        evaluate(model, TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)))


def test_batchnorm_recalibration_matches_data_statistics():
    from mobile_compress.training.bn_recalibration import recalibrate_batchnorm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    x = torch.randn(64, 3, 5, 5) * 3 + 2
    weight_before = net[0].weight.clone()
    assert recalibrate_batchnorm(net, x.split(16)) == 1
    y = net[0](x)
    assert torch.allclose(net[1].running_mean, y.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(net[1].running_var, y.var((0, 2, 3)), rtol=0.1)
    assert torch.equal(net[0].weight, weight_before) and not net.training


def test_train_state_keeps_its_format(tmp_path):
    """Runs written by earlier versions resume: train_state.pt keeps format 1 and exactly these entries."""
    quiet(tiny_net(), cfg(epochs=1), blobs(64), blobs(32, seed=1), out_dir=tmp_path).fit()
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert state["format"] == 1 and sorted(state) == [
        "best_epoch", "best_val_top1", "config", "elapsed", "format", "global_step", "history", "hooks", "model",
        "next_epoch", "optimizer", "rng", "scheduler"]
    assert state["next_epoch"] == 1 and state["global_step"] == 2 and state["best_epoch"] == 0
