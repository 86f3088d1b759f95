"""Distillation: each loss against an independent computation, gradients, and the hook inside the Trainer."""
from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import models
from mobile_compress.distillation import DistillConfig, DistillationHook, distillation_hook, losses
from mobile_compress.distillation.cache import fingerprints
from mobile_compress.errors import UserError
from mobile_compress.training import CheckpointMeta, TrainConfig, Trainer, save_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- losses


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_logit_kd_value_and_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 7, generator=g, dtype=torch.float64)
    T = 3.0
    value = losses.logit_kd(s, t, T)
    ps, pt = _softmax(s.detach().numpy() / T), _softmax(t.numpy() / T)
    expected = T * T * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))
    assert value.item() == pytest.approx(expected, rel=1e-10)
    value.backward()
    # d/ds of T^2 KL(pt || softmax(s/T)), batch mean: T (ps - pt) / N
    assert np.allclose(s.grad.numpy(), T * (ps - pt) / 5, atol=1e-12)
    same = losses.logit_kd(t, t, T)
    assert same.item() == pytest.approx(0.0, abs=1e-12)


def test_hint_loss_value_resize_and_gradient() -> None:
    s = torch.full((2, 3, 8, 8), 2.0, dtype=torch.float64, requires_grad=True)
    t = torch.ones(2, 3, 4, 4, dtype=torch.float64)
    value = losses.hint_loss(s, t)  # student map pooled to 4x4 (still 2.0 everywhere)
    assert value.item() == pytest.approx(1.0)
    value.backward()
    # each 4x4 cell averages 4 student pixels: grad = 2 (2 - 1) / numel(teacher) / 4
    assert torch.allclose(s.grad, torch.full_like(s, 2.0 / t.numel() / 4))
    up = losses.hint_loss(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 4, 4))  # bilinear upsampling
    assert up.item() == pytest.approx(1.0)


def test_attention_transfer_value() -> None:
    student = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    student[0, :, 0, 0] = 3.0  # all attention on one pixel
    teacher = torch.ones(1, 5, 2, 2, dtype=torch.float64)  # uniform attention; channel counts may differ
    assert torch.allclose(losses.attention_map(student), torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64))
    assert torch.allclose(losses.attention_map(teacher), torch.full((1, 4), 0.5, dtype=torch.float64))
    assert losses.attention_transfer(student, teacher).item() == pytest.approx((0.5 ** 2 * 4) / 4)
    assert losses.attention_transfer(teacher * 7, teacher).item() == pytest.approx(0.0, abs=1e-12)
    big = torch.ones(1, 3, 8, 8)  # spatial mismatch: pooled to the teacher's 2x2
    assert losses.attention_transfer(big, teacher.float()).item() == pytest.approx(0.0, abs=1e-7)


def _huber(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.where(a < 1, 0.5 * x * x, a - 0.5)


def _rkd_reference(s: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Loops over pairs and triplets, written straight from Park et al."""
    n = len(s)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    ds = np.array([np.linalg.norm(s[i] - s[j]) for i, j in pairs])
    dt = np.array([np.linalg.norm(t[i] - t[j]) for i, j in pairs])
    dist = np.mean(_huber(ds / ds.mean() - dt / dt.mean()))

    def cos(e: np.ndarray, i: int, j: int, k: int) -> float:
        a, b = e[i] - e[j], e[k] - e[j]
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))

    angles = [cos(s, i, j, k) - cos(t, i, j, k) for j, i, k in itertools.product(range(n), repeat=3)]
    return float(dist), float(np.mean(_huber(np.array(angles))))


def test_rkd_matches_a_loop_implementation_and_is_scale_invariant() -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.randn(6, 4, generator=g, dtype=torch.float64)
    t = torch.randn(6, 3, generator=g, dtype=torch.float64)  # embedding sizes may differ
    d_ref, a_ref = _rkd_reference(s.numpy(), t.numpy())
    assert losses.rkd_distance(s, t).item() == pytest.approx(d_ref, rel=1e-9)
    assert losses.rkd_angle(s, t).item() == pytest.approx(a_ref, rel=1e-9)
    assert d_ref > 0 and a_ref > 0
    moved = 3.0 * s + 1.0  # distances and angles relative to the mean: unchanged
    assert losses.rkd_distance(moved, s).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.rkd_angle(moved, s).item() == pytest.approx(0.0, abs=1e-12)
    maps = torch.randn(6, 4, 3, 3, generator=g, dtype=torch.float64)  # maps are pooled over space
    assert losses.rkd_distance(maps, t).item() == pytest.approx(losses.rkd_distance(maps.mean((2, 3)), t).item())


@pytest.mark.parametrize("fn", [losses.hint_loss, losses.attention_transfer])
def test_feature_losses_gradcheck(fn) -> None:
    g = torch.Generator().manual_seed(2)
    s = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: fn(x, t), (s,))


@pytest.mark.parametrize("fn", [losses.rkd_distance, losses.rkd_angle, lambda s, t: losses.logit_kd(s, t, 4.0)])
def test_vector_losses_gradcheck(fn) -> None:
    g = torch.Generator().manual_seed(3)
    s = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: fn(x, t), (s,))


# ----------------------------------------------------------------------------- the hook


class Tensors(Dataset):
    """Fixed inputs (no augmentation) with the attributes an ImageDataset has."""

    def __init__(self, n: int = 24, size: int = 8, classes: int = 3, train: bool = False) -> None:
        g = torch.Generator().manual_seed(4)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.arange(n) % classes
        self.classes = [str(i) for i in range(classes)]
        self.train = train

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


class UserNet(nn.Module):
    """A teacher that is nobody's zoo model."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                                  nn.ReLU())
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


def _student(name: str = "mobilenet_v2", classes: int = 3) -> nn.Module:
    options = {"mobilenet_v2": dict(width_mult=0.25, small_input=True), "mobilenet_v3_small": dict(small_input=True),
               "shufflenet_v2_x0_5": dict(small_input=True), "squeezenet1_1": {},
               "resnet20": {}}[name]
    return models.create(name, num_classes=classes, **options)


def _config(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 8, "lr": 0.05, "progress": False, "device": "cpu", **kw})


def test_teacher_stays_frozen_in_eval_and_adapters_train(tmp_path) -> None:
    teacher = models.create("resnet20", num_classes=3)
    before = copy.deepcopy(teacher.state_dict())
    student = _student()
    hook = DistillationHook(teacher, DistillConfig(kd=("logit", "hint", "at", "rkd")), student)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    data = Tensors()
    hook.setup(student, data[0][0])  # builds the adapters now; on_fit_start keeps them
    initial = {k: v.clone() for k, v in hook.adapters.state_dict().items()}
    trainer = Trainer(student, _config(epochs=2), data, hooks=[hook], out_dir=tmp_path, log=lambda m: None)
    trainer.fit()
    adapter = hook.adapters["hint0"]
    assert trainer.optimizer is not None
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in adapter.parameters())
    assert not teacher.training, "the teacher must stay in eval mode while the student trains"
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher tensor {k} changed (BN statistics or weights)"
    assert set(hook.terms) == {"logit", "hint", "at", "rkd_distance", "rkd_angle"}
    assert all(math.isfinite(v) for v in hook.terms.values())

    # Adapters are saved with the train state and come back on resume.
    trained = {k: v.clone() for k, v in hook.adapters.state_dict().items()}
    assert trained.keys() == initial.keys()
    assert all(not torch.equal(trained[k], initial[k]) for k in trained), "the adapters were not trained"
    hook2 = DistillationHook(teacher, DistillConfig(kd=("logit", "hint", "at", "rkd")))
    trainer2 = Trainer(_student(), _config(epochs=2), Tensors(), hooks=[hook2], out_dir=tmp_path, log=lambda m: None)
    trainer2.fit(resume=True)  # nothing left to train: state restored only
    for k, v in hook2.adapters.state_dict().items():
        assert torch.equal(v, trained[k])


def test_adapter_gets_gradients_and_alpha_shares_the_class_loss() -> None:
    teacher, student = models.create("resnet20", num_classes=3), _student()
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    ce = nn.CrossEntropyLoss()

    def loss_with(**kw) -> tuple[torch.Tensor, torch.Tensor, DistillationHook]:
        hook = DistillationHook(teacher, DistillConfig(**kw))
        hook.setup(student, x[0])
        out = student(x)
        base = ce(out, y)
        return hook.distillation_loss(x, y, out, base, ce), out, hook

    total, out, _ = loss_with(kd=("logit",), alpha=0.0)
    assert total.item() == pytest.approx(ce(out, y).item(), rel=1e-6)
    total, out, _ = loss_with(kd=("logit",), alpha=1.0, temperature=2.0)
    assert total.item() == pytest.approx(losses.logit_kd(out, teacher(x), 2.0).item(), rel=1e-5)
    student.zero_grad()
    total, out, hook = loss_with(kd=("hint",), hint_weight=1.0)
    total.backward()
    assert hook.adapters["hint0"].weight.grad is not None and hook.adapters["hint0"].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_1"])
@pytest.mark.parametrize("teacher_kind", ["zoo", "user"])
def test_every_student_family_from_any_teacher(name: str, teacher_kind: str) -> None:
    teacher = models.create("resnet20", num_classes=3) if teacher_kind == "zoo" else UserNet()
    student = _student(name)
    size = 32 if name == "squeezenet1_1" else 16
    x, y = torch.randn(3, 3, size, size), torch.tensor([0, 1, 2])
    hook = distillation_hook(teacher, DistillConfig(kd=("logit", "hint", "at", "rkd")), student)
    hook.setup(student, x[0])
    assert hook.hint_layers and hook.at_layers and hook.rkd_keys
    student.train()
    out = student(x)
    total = hook.distillation_loss(x, y, out, F.cross_entropy(out, y), nn.CrossEntropyLoss())
    total.backward()
    assert math.isfinite(total.item())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_self_distillation_of_a_model_from_its_own_copy() -> None:
    student = _student()
    hook = distillation_hook(copy.deepcopy(student), DistillConfig(kd=("logit", "hint")), student)
    x = torch.randn(2, 3, 8, 8)
    hook.setup(student, x[0])
    assert hook.hint_layers[0][0] == hook.hint_layers[0][1]  # same architecture: the same stage on both sides
    student.eval()
    out = student(x)
    total = hook.distillation_loss(x, torch.tensor([0, 1]), out, torch.tensor(0.0), nn.CrossEntropyLoss())
    assert losses.logit_kd(out, out, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(total.item())


def test_teacher_cache_is_keyed_by_content_and_hits_from_the_second_epoch() -> None:
    teacher, student = models.create("resnet20", num_classes=3), _student()
    data = Tensors(n=16)
    hook = DistillationHook(teacher, DistillConfig(kd=("logit", "rkd"), cache_teacher=True))
    trainer = Trainer(student, _config(epochs=2), data, hooks=[hook], log=lambda m: None)
    trainer.fit()
    assert hook.cache is not None and len(hook.cache) == 16
    assert hook.cache.misses == 16 and hook.cache.hits == 16  # epoch 1 fills, epoch 2 reads
    with torch.no_grad():
        fresh = teacher(data.x[:4])
    cached = hook._teacher_outputs(data.x[:4])["logits"]
    assert torch.allclose(cached, fresh, atol=1e-5)
    other = data.x[:4] + 0.01  # a different input is a miss, never another image's output
    assert hook.cache.lookup(fingerprints(other)) == [None] * 4


def test_teacher_cache_is_refused_for_augmented_data() -> None:
    hook = DistillationHook(models.create("resnet20", num_classes=3), DistillConfig(kd=("logit",), cache_teacher=True))
    trainer = Trainer(_student(), _config(), Tensors(train=True), hooks=[hook], log=lambda m: None)
    with pytest.raises(UserError, match="augmented"):
        trainer.fit()


@pytest.mark.parametrize("kw, field", [
    (dict(kd="logit,dark"), "dark"), (dict(temperature=0), "temperature"), (dict(alpha=1.5), "alpha"),
    (dict(hint_layers=["features.3"]), "hint_layers"), (dict(at_weight=-1), "at_weight"),
    (dict(kd=("hint",), cache_teacher=True), "cache_teacher"), (dict(rkd_layers="a:b:c"), "rkd_layers"),
])
def test_config_errors_name_the_field(kw, field) -> None:
    with pytest.raises(UserError, match=field):
        DistillConfig(**kw, where="recipe.yaml: stages[1].distill")


def test_unknown_layer_name_is_a_user_error_with_suggestions() -> None:
    with pytest.raises(UserError, match=r"features\.99.*") as err:
        DistillationHook(models.create("resnet20", num_classes=3),
                         DistillConfig(kd=("hint",), hint_layers=["features.99:layer3"]), _student())
    assert "did you mean" in (err.value.hint or "")


def test_class_count_mismatch_is_a_user_error() -> None:
    hook = DistillationHook(models.create("resnet20", num_classes=5), DistillConfig(kd=("logit",)))
    with pytest.raises(UserError, match="outputs per image"):
        hook.setup(_student(classes=3), torch.randn(3, 8, 8))


# ----------------------------------------------------------------------------- command line


def _tiny_npz(path, n: int = 30, size: int = 8) -> str:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = (rng.integers(0, 60, size=(n, size, size, 3)) + y[:, None, None, None] * 60).astype(np.uint8)
    np.savez(path, x=x, y=y)
    return str(path)


def test_cli_distill_runs_and_records_the_teacher(tmp_path) -> None:
    from workflows.cli import main
    from mobile_compress.data import DIGITS
    from mobile_compress.training import load_checkpoint

    data = _tiny_npz(tmp_path / "d.npz")
    teacher = models.create("resnet20", num_classes=3)
    save_checkpoint(tmp_path / "teacher", teacher, CheckpointMeta(arch="resnet20", num_classes=3, input_size=8,
                                                                   normalization=DIGITS, labels=["0", "1", "2"]))
    code = main(["distill", "--teacher", str(tmp_path / "teacher"), "--student", "mobilenet_v2", "--width-mult",
                 "0.25", "--small-input", "--image-size", "8", "--data", data, "--out", str(tmp_path / "s"),
                 "--epochs", "1", "--batch-size", "8", "--kd", "logit,at", "--no-progress", "--device", "cpu"])
    assert code == 0
    model, meta = load_checkpoint(tmp_path / "s" / "best")
    assert meta.arch == "mobilenet_v2" and meta.extra["distillation"]["kd"] == ["logit", "at"]
    assert meta.normalization["mean"] == list(DIGITS.mean)  # the teacher's normalisation


def test_cli_distill_with_teacher_cache_needs_unaugmented_data(tmp_path, capsys) -> None:
    from workflows.cli import main

    data = _tiny_npz(tmp_path / "d.npz")
    save_checkpoint(tmp_path / "teacher", models.create("resnet20", num_classes=3),
                    CheckpointMeta(arch="resnet20", num_classes=3, input_size=8, labels=["0", "1", "2"]))
    common = ["distill", "--teacher", str(tmp_path / "teacher"), "--student", "resnet20", "--image-size", "8",
              "--data", data, "--epochs", "2", "--batch-size", "8", "--kd", "logit,rkd", "--cache-teacher",
              "--no-progress", "--device", "cpu"]
    assert main(common + ["--out", str(tmp_path / "a")]) == 2
    assert "augmented" in capsys.readouterr().err
    assert main(common + ["--out", str(tmp_path / "b"), "--no-augment"]) == 0


def test_cli_distill_bad_option_exits_2(tmp_path, capsys) -> None:
    from workflows.cli import main

    teacher = models.create("resnet20", num_classes=3)
    save_checkpoint(tmp_path / "teacher", teacher, CheckpointMeta(arch="resnet20", num_classes=3, input_size=8))
    code = main(["distill", "--teacher", str(tmp_path / "teacher"), "--student", "mobilenet_v2", "--data", "builtin",
                 "--out", str(tmp_path / "s"), "--kd", "logits"])
    assert code == 2
    assert "kd names unknown loss" in capsys.readouterr().err


def test_distillation_inside_qat_from_the_float_model() -> None:
    """The QAT hook prepares the fake-quant student first; the distillation hook then reads its stages."""
    from mobile_compress.quantization import QatHook, prepare

    student = _student()
    teacher = copy.deepcopy(student)  # the uncompressed self
    before = copy.deepcopy(teacher.state_dict())
    qmodel = prepare(student, (1, 3, 16, 16))
    hook = distillation_hook(teacher, DistillConfig(kd=("logit", "at")))
    trainer = Trainer(qmodel, _config(), Tensors(n=16, size=16), hooks=[QatHook(), hook], log=lambda m: None)
    trainer.fit()
    assert hook.at_layers and set(hook.terms) == {"logit", "at"}
    assert all(math.isfinite(v) for v in hook.terms.values())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
