"""The model zoo: torchvision compatibility, options, registry and errors.

torchvision cannot be imported here; tests/fixtures/torchvision_reference.json was
written by tools/make_torchvision_reference.py from torchvision 0.28.0's own model
code (state_dict keys/shapes, parameter counts, and golden logits after a
deterministic fill). The fill is imported from that script; the fixture's per-model
checksum of the filled values guards against a change to it after the fixture was made.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import models
from models import ModelOptionError, UnknownModelError, make_divisible

FIXTURE = Path(__file__).parent / "fixtures" / "torchvision_reference.json"
REFERENCE = json.loads(FIXTURE.read_text())
REPO_ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("single_thread")

IMAGENET_MODELS = [
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "resnet18",
    "resnet34",
    "resnet50",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "squeezenet1_0",
    "squeezenet1_1",
]
CIFAR_MODELS = ["resnet20", "resnet56"]
ALL_MODELS = sorted(IMAGENET_MODELS + CIFAR_MODELS)

# Published parameter counts (torchvision's model docs / weight metadata).
TORCHVISION_PARAMS = {
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "shufflenet_v2_x0_5": 1_366_792,
    "shufflenet_v2_x1_0": 2_278_604,
    "shufflenet_v2_x1_5": 3_503_624,
    "shufflenet_v2_x2_0": 7_393_996,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
}


def _load_fixture_tool():
    """The fixture script itself provides the fill, so test and fixture cannot drift apart."""
    spec = importlib.util.spec_from_file_location("make_torchvision_reference", REPO_ROOT / "tools" / "make_torchvision_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fill_deterministic = _load_fixture_tool().fill_deterministic


def reference_input() -> torch.Tensor:
    gen = torch.Generator().manual_seed(REFERENCE["input_seed"])
    return torch.randn(REFERENCE["input_shape"], generator=gen)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def key_shapes(model: nn.Module) -> list[list]:
    return [[key, list(t.shape)] for key, t in model.state_dict().items()]


# --- torchvision reference ----------------------------------------------------------------
def test_fixture_covers_every_imagenet_model():
    assert REFERENCE["torchvision_version"].startswith("0.28")
    assert sorted(REFERENCE["models"]) == IMAGENET_MODELS


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_state_dict_matches_torchvision(name):
    ref = REFERENCE["models"][name]
    model = models.create(name)
    ours = key_shapes(model)
    ref_keys = [k for k, _ in ref["state_dict"]]
    our_keys = [k for k, _ in ours]
    assert sorted(set(ref_keys) - set(our_keys)) == [], "keys missing from our model"
    assert sorted(set(our_keys) - set(ref_keys)) == [], "keys torchvision does not have"
    assert ours == ref["state_dict"]  # same order and shapes
    assert param_count(model) == ref["param_count"] == TORCHVISION_PARAMS[name]
    # A torchvision-shaped checkpoint loads strictly.
    checkpoint = {k: torch.zeros(shape, dtype=model.state_dict()[k].dtype) for k, shape in ref["state_dict"]}
    model.load_state_dict(checkpoint, strict=True)


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_outputs_match_torchvision(name):
    ref = REFERENCE["models"][name]
    model = models.create(name)
    checksum = fill_deterministic(model)
    assert checksum == pytest.approx(ref["fill_checksum"], rel=1e-9, abs=1e-9), (
        "the test's fill differs from tools/make_torchvision_reference.py"
    )
    model.eval()
    with torch.no_grad():
        logits = model(reference_input())
    assert logits.shape == (1, 1000)
    scale = max(1.0, ref["logits_abs_max"])
    expected = torch.tensor(ref["logits_first"], dtype=torch.float64)
    got = logits[0, : len(expected)].double()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * scale)
    assert float(logits.abs().max()) == pytest.approx(ref["logits_abs_max"], rel=1e-4)
    assert float(logits.double().sum()) == pytest.approx(ref["logits_sum"], rel=1e-4, abs=1e-3 * scale)


# --- building, forward and backward ----------------------------------------------------
def _variants(full_size: bool) -> list[tuple[str, dict, int]]:
    """(name, options, input size): every model at its natural input size.

    With ``full_size=False`` the slowest ones run at reduced resolution so the
    default suite stays fast; the slow-marked test covers them at full size.
    """
    reduced = {
        ("resnet18", False): 128,
        ("resnet34", False): 128,
        ("resnet50", False): 64,
        ("shufflenet_v2_x2_0", False): 128,
        ("squeezenet1_0", False): 160,
        ("resnet34", True): 16,
        ("resnet50", True): 16,
    }
    cases: list[tuple[str, dict, int]] = []
    for name in ALL_MODELS:
        spec = models.spec(name)
        natural = {False: spec.default_input_size, True: 32}
        for small in (False, True) if "small_input" in spec.options else (False,):
            size = natural[small] if full_size else reduced.get((name, small), natural[small])
            cases.append((name, {"small_input": True} if small else {}, size))
        if "width_mult" in spec.options:
            cases.append((name, {"width_mult": 0.5}, 224))
            cases.append((name, {"width_mult": 1.3, "small_input": True}, 32))
    return cases


def _case_id(value: object) -> str:
    return value if isinstance(value, str) else repr(value).replace(" ", "")


def _run_train_step(model: nn.Module, size: int, num_classes: int) -> None:
    torch.manual_seed(0)
    model.train()
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name,options,size", _variants(full_size=False), ids=_case_id)
def test_forward_backward(name, options, size):
    model = models.create(name, num_classes=10, **options)
    _run_train_step(model, size, num_classes=10)


@pytest.mark.slow
@pytest.mark.parametrize("name,options,size", _variants(full_size=True), ids=_case_id)
def test_forward_backward_full_size(name, options, size):
    model = models.create(name, **options)
    _run_train_step(model, size, num_classes=1000)


# Module whose output is the last feature map before global pooling.
_LAST_FEATURES = {
    "mobilenet_v2": "features",
    "mobilenet_v3": "features",
    "shufflenet_v2": "conv5",
    "squeezenet": "features",
    "resnet": "layer4",
    "cifar_resnet": "layer3",
}


def _final_feature_size(model: nn.Module, family: str, size: int) -> tuple[int, int]:
    seen = {}
    module = model.get_submodule(_LAST_FEATURES[family])

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        seen["shape"] = output.shape

    handle = module.register_forward_hook(hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    handle.remove()
    return tuple(seen["shape"][-2:])


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_small_input_keeps_state_dict_and_downsamples_8x(name):
    family = models.spec(name).family
    default = models.create(name, num_classes=10)
    small = models.create(name, num_classes=10, small_input=True)
    # Only strides/pools change: an ImageNet checkpoint loads into the small variant.
    assert key_shapes(small) == key_shapes(default)
    small.load_state_dict(default.state_dict(), strict=True)
    assert _final_feature_size(small, family, 32) == (4, 4)
    # The default stem downsamples 32x (16x and ceil pooling for SqueezeNet).
    expected_default = (3, 3) if family == "squeezenet" else (2, 2)
    assert _final_feature_size(default, family, 64) == expected_default
    if family == "squeezenet":  # 224 -> 13x13 relies on ceil-mode pooling
        assert _final_feature_size(default, family, 224) == (13, 13)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_cifar_resnet_shapes(name):
    model = models.create(name, num_classes=10)
    assert _final_feature_size(model, "cifar_resnet", 32) == (8, 8)
    assert model.layer1[0].conv1.in_channels == 16
    assert [model.get_submodule(f"layer{i}")[-1].conv2.out_channels for i in (1, 2, 3)] == [16, 32, 64]


# --- parameter counts and options ------------------------------------------------------
@pytest.mark.parametrize("name,expected", [("resnet20", 269_722), ("resnet56", 853_018)])
def test_cifar_resnet_param_counts(name, expected):
    # He et al. 2016, Table 6: 0.27 M and 0.85 M (10 classes, option-A shortcuts).
    model = models.create(name, num_classes=10)
    assert param_count(model) == expected
    assert len([m for m in model.modules() if isinstance(m, nn.Conv2d)]) == {"resnet20": 19, "resnet56": 55}[name]


def test_cifar_option_a_shortcut_is_parameter_free_and_pads_with_zeros():
    model = models.create("resnet20", num_classes=10)
    shortcut = model.layer2[0].shortcut
    assert list(shortcut.parameters()) == []
    x = torch.arange(16 * 4 * 4, dtype=torch.float32).reshape(1, 16, 4, 4)
    y = shortcut(x)
    assert y.shape == (1, 32, 2, 2)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_num_classes_changes_only_the_head():
    default = key_shapes(models.create("mobilenet_v2"))
    ten = key_shapes(models.create("mobilenet_v2", num_classes=10))
    diff = [(a, b) for a, b in zip(default, ten) if a != b]
    assert diff == [
        (["classifier.1.weight", [1000, 1280]], ["classifier.1.weight", [10, 1280]]),
        (["classifier.1.bias", [1000]], ["classifier.1.bias", [10]]),
    ]


@pytest.mark.parametrize(
    "value,divisor,expected",
    [(32 * 0.75, 8, 24), (16 * 0.35, 8, 8), (24 * 1.3, 8, 32), (10.0, 8, 16), (1280 * 1.4, 8, 1792), (72 * 0.5, 8, 40)],
)
def test_make_divisible_follows_torchvision(value, divisor, expected):
    assert make_divisible(value, divisor) == expected


def test_width_mult_scales_channels_like_torchvision():
    half = models.create("mobilenet_v2", width_mult=0.5)
    assert half.features[0][0].out_channels == 16
    assert half.features[1].conv[-1].num_features == 8
    assert half.classifier[1].in_features == 1280  # last channel never shrinks
    wide = models.create("mobilenet_v2", width_mult=1.4)
    assert wide.features[0][0].out_channels == 48
    assert wide.classifier[1].in_features == 1792
    small = models.create("mobilenet_v3_small", width_mult=0.75)
    # SE width is make_divisible(expanded // 4, 8) of the *scaled* expansion.
    se = small.features[1].block[1]
    assert (se.fc1.in_channels, se.fc1.out_channels) == (16, 8)
    assert small.classifier[0].in_features == 6 * make_divisible(96 * 0.75, 8)
    assert small.classifier[0].out_features == make_divisible(1024 * 0.75, 8)
    assert param_count(half) < TORCHVISION_PARAMS["mobilenet_v2"] < param_count(wide)


def test_mobilenet_ops_follow_torchvision():
    v2 = models.create("mobilenet_v2")
    assert isinstance(v2.features[0][2], nn.ReLU6)
    v3 = models.create("mobilenet_v3_small")
    assert isinstance(v3.features[0][2], nn.Hardswish)
    se = v3.features[1].block[1]
    assert isinstance(se.scale_activation, nn.Hardsigmoid) and isinstance(se.activation, nn.ReLU)
    assert v3.features[0][1].eps == 0.001 and v3.features[0][1].momentum == 0.01
    squeeze = models.create("squeezenet1_1")
    pools = [m for m in squeeze.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.ceil_mode for p in pools)


def test_dropout_option():
    assert models.create("mobilenet_v2").classifier[0].p == 0.2
    assert models.create("mobilenet_v2", dropout=0.1).classifier[0].p == 0.1
    assert models.create("mobilenet_v3_large", dropout=0.3).classifier[2].p == 0.3
    assert models.create("squeezenet1_0").classifier[0].p == 0.5
    assert models.create("squeezenet1_1", dropout=0.0).classifier[0].p == 0.0


def test_initialisation_follows_torchvision():
    torch.manual_seed(0)
    v2 = models.create("mobilenet_v2")
    head = v2.classifier[1]
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert head.bias.abs().sum() == 0
    bn = v2.features[0][1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    conv = v2.features[0][0]  # kaiming normal, fan_out = 32 * 3 * 3
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.15)
    squeeze = models.create("squeezenet1_1")
    assert squeeze.classifier[1].weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert squeeze.features[0].bias.abs().sum() == 0
    r18 = models.create("resnet18", zero_init_residual=True)
    assert all(block.bn2.weight.abs().sum() == 0 for block in r18.layer1)
    r50 = models.create("resnet50")
    assert r50.layer1[0].bn3.weight.abs().sum() > 0
    assert models.create("resnet50", zero_init_residual=True).layer1[0].bn3.weight.abs().sum() == 0


# --- registry ---------------------------------------------------------------------------
def test_names_sorted_and_complete():
    assert models.names() == ALL_MODELS


def test_spec_fields():
    spec = models.spec("mobilenet_v2")
    assert spec == models.ModelSpec(
        name="mobilenet_v2",
        family="mobilenet_v2",
        default_input_size=224,
        options=("width_mult", "dropout", "small_input"),
        is_student=True,
        summary=spec.summary,
    )
    assert spec.summary and "\n" not in spec.summary
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    assert models.spec("resnet20").default_input_size == 32
    assert models.spec("resnet56").options == ()
    assert models.spec("resnet50").options == ("small_input", "zero_init_residual")
    assert models.spec("shufflenet_v2_x1_0").options == ("small_input",)
    assert models.spec("squeezenet1_1").options == ("dropout", "small_input")
    students = {n for n in ALL_MODELS if models.spec(n).is_student}
    assert students == {n for n in ALL_MODELS if n.startswith(("mobilenet", "shufflenet", "squeezenet"))}
    families = {models.spec(n).family for n in ALL_MODELS}
    assert families == {"mobilenet_v2", "mobilenet_v3", "shufflenet_v2", "squeezenet", "resnet", "cifar_resnet"}


@pytest.mark.parametrize(
    "wrong,suggestion",
    [
        ("mobilenetv2", "mobilenet_v2"),
        ("resnet-18", "resnet18"),
        ("ResNet50", "resnet50"),
        ("squeezenet1.1", "squeezenet1_1"),
        ("shufflenet_v2", "shufflenet_v2_x"),
    ],
)
def test_unknown_name_suggests_close_names(wrong, suggestion):
    with pytest.raises(UnknownModelError) as info:
        models.create(wrong)
    message = str(info.value)
    assert message.startswith(f"unknown model {wrong!r}; did you mean {suggestion}")
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownModelError):
        models.spec(wrong)


def test_unknown_name_example_message():
    with pytest.raises(UnknownModelError) as info:
        models.create("mobilenetv2")
    assert str(info.value) == "unknown model 'mobilenetv2'; did you mean mobilenet_v2?"
    assert info.value.suggestions == ["mobilenet_v2"]


def test_unknown_family_prefix_suggests_its_members():
    with pytest.raises(UnknownModelError) as info:
        models.create("mobilenet_v3")
    assert info.value.suggestions[:2] == ["mobilenet_v3_large", "mobilenet_v3_small"]
    assert str(info.value).endswith("did you mean mobilenet_v3_large, mobilenet_v3_small or mobilenet_v2?")


def test_unknown_name_without_close_match_lists_models():
    with pytest.raises(UnknownModelError) as info:
        models.spec("vgg16")
    assert "available models: " in str(info.value)
    assert "mobilenet_v2" in str(info.value) and "resnet56" in str(info.value)
    assert info.value.suggestions == []


def test_unknown_option_lists_allowed_ones():
    with pytest.raises(ModelOptionError) as info:
        models.create("resnet18", width_mult=0.5)
    message = str(info.value)
    assert "'width_mult'" in message
    assert "allowed options: small_input, zero_init_residual" in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(ModelOptionError, match=r"allowed options: \(none\)"):
        models.create("resnet20", small_input=True)
    with pytest.raises(ModelOptionError, match="dropout"):
        models.create("shufflenet_v2_x1_0", dropout=0.1)


@pytest.mark.parametrize(
    "name,options",
    [
        ("mobilenet_v2", {"width_mult": 0}),
        ("mobilenet_v2", {"width_mult": -1.0}),
        ("mobilenet_v2", {"width_mult": "wide"}),
        ("mobilenet_v2", {"width_mult": True}),
        ("mobilenet_v3_small", {"width_mult": float("nan")}),
        ("mobilenet_v2", {"dropout": 1.0}),
        ("squeezenet1_0", {"dropout": -0.1}),
        ("resnet18", {"small_input": "yes"}),
        ("resnet18", {"small_input": 1}),
        ("resnet18", {"num_classes": 0}),
        ("resnet18", {"num_classes": 2.5}),
    ],
)
def test_bad_option_values(name, options):
    with pytest.raises(ModelOptionError):
        models.create(name, **options)


def test_int_width_mult_is_accepted():
    assert param_count(models.create("mobilenet_v2", width_mult=1)) == TORCHVISION_PARAMS["mobilenet_v2"]


def test_models_package_imports_nothing_of_ours():
    code = (
        "import sys, models; models.create('resnet20');"
        "ours = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'mobile_compress', 'converters', 'profiler', 'android_harness'});"
        "print(ours); sys.exit(1 if ours else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in (REPO_ROOT / "models").glob("*.py"):
        text = path.read_text()
        assert "import mobile_compress" not in text and "from mobile_compress" not in text, path


def test_default_input_size_follows_the_stem() -> None:
    assert models.default_input_size("mobilenet_v2") == 224
    assert models.default_input_size("mobilenet_v2", small_input=True) == models.SMALL_INPUT_SIZE == 32
    assert models.default_input_size("resnet56") == 32
    with pytest.raises(UnknownModelError):
        models.default_input_size("mobilenetv2")
