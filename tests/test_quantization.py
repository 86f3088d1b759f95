"""Quantization core: TFLite's int8 scheme, the fx pass over every student family, BN folding and its
freeze schedule, the QAT hook in the Trainer, checkpoints that rebuild, and errors that name the module.

Fast tests only (tiny models at 32x32, random or few images); conversions to .tflite are in
test_quantization_export.py.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
from mobile_compress.errors import UserError
from mobile_compress.quantization import (QatHook, activation_ranges, build_integer_graph, calibrate, prepare,
                                          set_bn_frozen, set_observing)
from mobile_compress.quantization import scheme
from mobile_compress.quantization.fake_quant import ActivationFakeQuant, calibrating, fake_quant_weight
from mobile_compress.quantization.fused import DecomposedHardswish, QConv, QLinear

SHAPE = (1, 3, 32, 32)
FAMILIES = [
    ("mobilenet_v2", {"width_mult": 0.25}),
    ("mobilenet_v3_small", {"width_mult": 0.5}),
    ("mobilenet_v3_large", {"width_mult": 0.25}),
    ("shufflenet_v2_x0_5", {}),
    ("squeezenet1_1", {}),
    ("resnet18", {}),
]


class UserNet(nn.Module):
    """A user's model of standard layers: conv-bn-relu, a residual add, a concatenation, max and mean pooling."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(2)
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.left = nn.Conv2d(16, 8, 1)
        self.right = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        x = x + self.block(x)
        x = torch.cat([F.relu(self.left(x)), F.relu(self.right(x))], 1)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _family(name: str, options: dict, classes: int = 5) -> nn.Module:
    """A zoo model whose BatchNorm statistics fit its data, as in a trained model QAT starts from."""
    torch.manual_seed(0)
    model = models.create(name, num_classes=classes, small_input=True, **options)
    momenta = {}
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            momenta[m] = m.momentum
            m.momentum = None  # cumulative: one batch sets the statistics
            m.reset_running_stats()
    with torch.no_grad():
        model.train()(torch.randn(16, *SHAPE[1:]))
    for m, momentum in momenta.items():
        m.momentum = momentum
    return model.eval()


def test_scheme_matches_tflite_formulas() -> None:
    scale, zero = scheme.activation_qparams(torch.tensor(-1.0), torch.tensor(3.0))
    assert scale.item() == pytest.approx(4.0 / 255) and zero.item() == round(-128 + 1.0 / (4.0 / 255))
    scale, zero = scheme.activation_qparams(torch.tensor(0.5), torch.tensor(6.0))  # range widened to hold 0
    assert zero.item() == -128 and scale.item() == pytest.approx(6.0 / 255)
    w = torch.tensor([[1.0, -2.54], [0.1, 0.05]]).reshape(2, 2, 1, 1)
    assert scheme.per_channel_scales(w).tolist() == pytest.approx([2.54 / 127, 0.1 / 127])
    q = fake_quant_weight(w) / scheme.per_channel_scales(w).reshape(-1, 1, 1, 1)
    assert torch.allclose(q, q.round(), atol=1e-4) and q.abs().max() <= 127  # narrow range, symmetric


def test_observer_ema_in_training_minmax_when_calibrating_nothing_in_eval() -> None:
    fq = ActivationFakeQuant()
    x = torch.linspace(-1, 1, 100)
    assert torch.equal(fq.eval()(x), x)  # unobserved and in eval: passes through, learns nothing
    assert not fq.initialized
    fq.train()(x)
    fq(x * 3)
    assert fq.max_val.item() == pytest.approx(1 + 0.01 * 2)  # moving average
    with calibrating(fq):
        fq.eval()(x * 5)
    assert fq.max_val.item() == 5.0 and fq.min_val.item() == -5.0  # plain min/max
    y = fq(x)
    scale, zero = fq.qparams()
    assert torch.allclose((y / scale + zero), (y / scale + zero).round(), atol=1e-3)


@pytest.mark.parametrize("name,options", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_family_prepares_trains_a_step_and_has_an_integer_graph(name, options, single_thread) -> None:
    model = _family(name, options)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    x = torch.randn(4, *SHAPE[1:])
    q = prepare(model, SHAPE)
    assert sum(isinstance(m, QConv) for m in q.modules()) == convs  # every conv became one int8 op
    folded = {id(m.bn) for m in q.modules() if isinstance(m, QConv) and m.bn is not None}
    assert all(id(m) in folded for m in q.modules() if isinstance(m, nn.BatchNorm2d))  # every BN folds into a conv
    calibrate(q, torch.utils.data.TensorDataset(torch.randn(16, *SHAPE[1:]), torch.zeros(16, dtype=torch.long)), 16)
    ranges = activation_ranges(q)
    assert ranges and all(s > 0 and -128 <= z <= 127 for s, z in ranges.values())
    q.train()
    F.cross_entropy(q(x), torch.zeros(4, dtype=torch.long)).backward()
    first = next(m for m in q.modules() if isinstance(m, QConv)).conv.weight
    assert first.grad is not None and first.grad.abs().sum() > 0  # gradients flow through the fake quantizers
    q.eval()
    integer = build_integer_graph(q).module
    assert not any(isinstance(m, (nn.BatchNorm2d, ActivationFakeQuant, QConv, QLinear)) for m in integer.modules())
    for m in integer.modules():  # TFLite's per-channel quantization will give back exactly these weights
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            steps = m.weight / scheme.per_channel_scales(m.weight).reshape(-1, *[1] * (m.weight.dim() - 1))
            assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert torch.isfinite(integer(x)).all()


@pytest.mark.parametrize("name,options", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_before_calibration_the_twin_computes_the_float_model(name, options, single_thread) -> None:
    """Only the weights' int8 rounding separates them. ResNet's blocks call one ReLU module twice (after
    bn1 and after the residual add); fusing the first call once turned the module into an identity, and
    the twin of a ResNet-18 then differed from it by 25 times the output's norm."""
    model = _family(name, options)
    x = torch.randn(4, *SHAPE[1:])
    with torch.no_grad():
        reference = model(x)
        twin = prepare(copy.deepcopy(model), SHAPE).eval()(x)
    assert (twin - reference).norm() / reference.norm() < 0.3


def test_user_module_fuses_add_concat_and_shares_concat_scale() -> None:
    q = prepare(UserNet(), SHAPE)
    names = {n for n, m in q.named_modules() if isinstance(m, ActivationFakeQuant)}
    fused = {n: m for n, m in q.named_modules() if isinstance(m, QConv)}
    assert fused["stem.0"].activation == "relu" and fused["stem.0"].bn is not None
    assert fused["block.0"].activation == "relu6"
    assert fused["left"].activation == "relu" and fused["right"].activation == "relu"
    # the concatenation's inputs are made only for it: no scales of their own, one after the cat
    assert not any(n.endswith(("left", "right")) for n in names)
    assert any(n.endswith("cat") for n in names) and any(n.endswith("add") for n in names)
    assert not any(n.endswith("pool") for n in names)  # max pooling keeps its input's scale


def test_shufflenet_passthrough_half_is_requantized_to_the_concat_scale() -> None:
    q = prepare(_family("shufflenet_v2_x0_5", {}), SHAPE)
    graph = q.graph
    cats = [n for n in graph.nodes if n.target is torch.cat]
    for cat in cats:
        (fq,) = cat.users
        assert isinstance(q.get_submodule(fq.target), ActivationFakeQuant)
        for src in cat.args[0]:  # branch outputs feed the cat unquantized; the cat's quantizer rounds once
            assert not (src.op == "call_module" and isinstance(q.get_submodule(src.target), ActivationFakeQuant))


def test_bn_folding_is_exact_when_frozen_and_tracks_batch_stats_before() -> None:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(4, 3, 8, 8)
    reference = F.relu(bn.eval()(conv(x)))
    layer = QConv(conv, bn, "relu").eval()
    assert torch.allclose(layer(x), reference, atol=0.05 * float(reference.abs().max()))
    plain = layer.to_float()
    assert torch.allclose(plain(x), layer(x), atol=1e-5)  # eval simulation == deployed op
    layer.train()
    before = bn.running_mean.clone()
    layer(x)
    assert not torch.equal(before, bn.running_mean)  # statistics still learn
    layer.bn_frozen = True
    before = bn.running_mean.clone()
    out = layer(x)
    assert torch.equal(before, bn.running_mean) and torch.allclose(out, layer.to_float()(x), atol=1e-5)


def test_hard_activations_take_their_int8_form() -> None:
    q = prepare(_family("mobilenet_v3_small", {"width_mult": 0.5}), SHAPE)
    se = [m for m in q.modules() if isinstance(m, QConv) and m.post_affine is not None]
    assert se and all(m.post_affine == (1.0, 3.0) and m.activation == "relu6" for m in se)
    assert not any(isinstance(m, (nn.Hardsigmoid, nn.Hardswish)) for m in q.modules())
    x = torch.randn(2, 8, 4, 4)
    assert torch.allclose(DecomposedHardswish().eval()(x), F.hardswish(x), atol=1e-6)  # unobserved: float pieces
    layer = se[0].eval()
    plain = layer.to_float()
    conv = models.create("mobilenet_v3_small", num_classes=5, small_input=True, width_mult=0.5)
    assert isinstance(plain, nn.Sequential) and isinstance(plain[1], nn.ReLU6) and conv is not None


class _GeluNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU())
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


class _LonelyBn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


class _Untraceable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


@pytest.mark.parametrize("model,message", [
    (_GeluNet(), "layer 'features.1' (GELU)"),
    (_LonelyBn(), "layer 'norm' (BatchNorm2d) is a BatchNorm that does not follow a Conv2d"),
    (_Untraceable(), "cannot trace _Untraceable"),
])
def test_unsupported_patterns_name_the_module(model, message) -> None:
    with pytest.raises(UserError) as err:
        prepare(model, SHAPE)
    assert message in err.value.message and err.value.hint


def _tiny_data(n: int = 32):
    torch.manual_seed(0)
    return torch.utils.data.TensorDataset(torch.randn(n, *SHAPE[1:]), torch.randint(0, 10, (n,)))


def test_qat_hook_freezes_bn_then_observers_in_the_trainer(tmp_path, single_thread) -> None:
    from mobile_compress.training import TrainConfig, Trainer

    q = prepare(UserNet(), SHAPE)
    data = _tiny_data()
    calibrate(q, data, 32)
    seen = []

    class Spy(QatHook):
        def on_step_end(self, trainer) -> None:
            super().on_step_end(trainer)
            stem = trainer.model.get_submodule("stem.0")
            fq = next(m for m in trainer.model.modules() if isinstance(m, ActivationFakeQuant))
            seen.append((trainer.global_step, stem.bn_frozen, fq.observing, fq.max_val.item()))

    config = TrainConfig(epochs=2, batch_size=8, lr=0.01, progress=False)
    Trainer(q, config, data, None, hooks=[Spy(0.5, 0.75)], out_dir=None, log=lambda _: None).fit()
    assert [s[1] for s in seen] == [False, False, False, True, True, True, True, True]
    assert [s[2] for s in seen] == [True, True, True, True, True, False, False, False]
    assert seen[-1][3] == seen[-3][3]  # ranges stay put once frozen
    with pytest.raises(UserError):
        QatHook(freeze_bn_at=1.5)
    set_bn_frozen(q, False)
    set_observing(q, True)


def test_quantized_checkpoint_rebuilds_through_transforms(tmp_path) -> None:
    from mobile_compress.quantization.rebuild import spec_for
    from mobile_compress.training import CheckpointMeta, load_checkpoint, save_checkpoint

    model = _family("mobilenet_v3_small", {"width_mult": 0.5})
    q = prepare(model, SHAPE)
    calibrate(q, _tiny_data(), 32)
    meta = CheckpointMeta(arch="mobilenet_v3_small", num_classes=5, input_size=32,
                          options={"width_mult": 0.5, "small_input": True}, transforms=[spec_for("qat", SHAPE)])
    save_checkpoint(tmp_path / "q", q, meta)
    loaded, loaded_meta = load_checkpoint(tmp_path / "q")
    x = torch.randn(2, *SHAPE[1:])
    assert loaded_meta.transforms[0]["kind"] == "qat"
    assert torch.equal(loaded(x), q.eval()(x))
    assert activation_ranges(loaded) == activation_ranges(q)


def test_is_quantized_answers_for_a_meta_its_transforms_and_any_path(tmp_path) -> None:
    from mobile_compress.quantization import is_quantized
    from mobile_compress.quantization.rebuild import spec_for
    from mobile_compress.training import CheckpointMeta, read_meta, save_checkpoint

    options = {"width_mult": 0.25, "small_input": True}
    model = _family("mobilenet_v2", {"width_mult": 0.25})
    save_checkpoint(tmp_path / "float", model, CheckpointMeta(arch="mobilenet_v2", num_classes=5, input_size=32,
                                                              options=options))
    save_checkpoint(tmp_path / "q", prepare(model, SHAPE), CheckpointMeta(
        arch="mobilenet_v2", num_classes=5, input_size=32, options=options, transforms=[spec_for("ptq", SHAPE)]))
    (tmp_path / "model.onnx").write_bytes(b"")
    for quantized in (tmp_path / "q", str(tmp_path / "q"), tmp_path / "q" / "checkpoint.json",
                      tmp_path / "q" / "weights.pt", read_meta(tmp_path / "q"), [spec_for("qat", SHAPE)]):
        assert is_quantized(quantized), quantized
    for other in (tmp_path / "float", read_meta(tmp_path / "float"), [], tmp_path / "missing", tmp_path / "model.onnx",
                  tmp_path, tmp_path / "q" / "missing.json"):
        assert not is_quantized(other), other


def test_the_integer_graph_is_the_one_contract_converters_read() -> None:
    """Everything the range transfer needs, from one call, and consistent with the fake-quant model."""
    q = prepare(UserNet(), SHAPE)
    calibrate(q, _tiny_data(), 32)
    graph = build_integer_graph(q.eval())
    assert graph.ranges == activation_ranges(q) and graph.fake_quant is q
    assert set(graph.layers) == set(graph.weight_scales) == {n for n, m in q.named_modules()
                                                             if isinstance(m, (QConv, QLinear))}
    for name, (weight, bias, groups) in graph.layers.items():  # the scales TFLite will find in the file
        assert graph.weight_scales[name] == pytest.approx(scheme.per_channel_scales(torch.from_numpy(weight)).numpy(),
                                                          rel=1e-7)
        assert bias.shape == (weight.shape[0],) and groups >= 1
    assert set(graph.layer_quantizers) <= set(graph.layers) and set(graph.layer_quantizers.values()) <= set(graph.ranges)
    assert graph.concat_layers and all(set(v) <= set(graph.layers) for v in graph.concat_layers.values())
    x = torch.randn(2, *SHAPE[1:])
    values = graph.activations(x)
    assert {graph.quantizer_of(k) for k in values} == set(graph.ranges)
    assert not any(isinstance(m, ActivationFakeQuant) for m in graph.module.modules())
    y = graph.module(x)
    assert (y - q(x)).abs().max() <= 0.05 * y.abs().max()  # the same function, activation rounding aside
    assert any(isinstance(m, ActivationFakeQuant) for m in q.modules())  # the fake-quant model is left as it was


def test_bad_qat_spec_is_a_user_error() -> None:
    from mobile_compress.quantization.rebuild import apply

    with pytest.raises(UserError, match="input_shape"):
        apply(UserNet(), {"kind": "qat", "input_shape": "32"})


def test_shufflenet_concat_shares_the_quantizer_of_its_pass_through_half() -> None:
    q = prepare(_family("shufflenet_v2_x0_5", {}), SHAPE)
    cats = [n for n in q.graph.nodes if n.target is torch.cat]
    targets = [next(iter(c.users)).target for c in cats]
    # stage 2 of x0_5: one stride-2 unit (its own quantizer) then 3 stride-1 units tied to it
    assert len(set(targets[:4])) == 1 and len(set(targets)) == 3


def test_cli_quantize_mistakes_exit_2_with_a_message(tmp_path, capsys) -> None:
    from workflows.cli import main
    from mobile_compress.quantization.rebuild import spec_for
    from mobile_compress.training import CheckpointMeta, save_checkpoint

    assert main(["quantize", str(tmp_path / "missing"), "--data", "builtin", "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    q = prepare(_family("mobilenet_v2", {"width_mult": 0.25}), SHAPE)
    meta = CheckpointMeta(arch="mobilenet_v2", num_classes=5, input_size=32,
                          options={"width_mult": 0.25, "small_input": True}, transforms=[spec_for("ptq", SHAPE)])
    save_checkpoint(tmp_path / "q", q, meta)
    assert main(["quantize", str(tmp_path / "q"), "--data", "builtin", "--out", str(tmp_path / "o")]) == 2
    assert "already quantized" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["quantize", "--method", "int4", str(tmp_path / "q"), "--out", str(tmp_path / "o")])


def test_fc_before_a_hardswish_gets_no_output_quantizer_as_tflite_folds_it() -> None:
    """TFLite computes the hardswish's two pieces from two copies of the FC, never the FC's output in int8."""
    from mobile_compress.quantization.integer_graph import quantizer_layers

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Hardswish(), nn.Linear(16, 4), nn.Hardswish())
    qmodel = prepare(model, (1, 3, 2, 2))
    quantized_layers = set(quantizer_layers(qmodel).values())
    assert "1" not in quantized_layers  # feeds a hardswish
    assert "3" not in quantized_layers  # so does the last one
    conv = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    assert "0" in set(quantizer_layers(prepare(conv, (1, 3, 4, 4))).values())  # a conv's output stays int8
    x = torch.randn(8, 3, 2, 2)
    calibrate(qmodel, [(image, 0) for image in x], 8)
    assert torch.allclose(qmodel(x), model(x), atol=0.1)  # still the same function, within int8 rounding
