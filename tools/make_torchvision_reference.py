#!/usr/bin/env python3
"""Write tests/fixtures/torchvision_reference.json from torchvision's own model code.

Why: torchvision cannot be imported next to our CPU torch build (its compiled ops
do not match), yet the zoo in ``models/`` promises torchvision's exact state_dict
and outputs. This dev script loads only torchvision's pure-Python model definitions,
records for each of the 12 zoo models the state_dict keys and shapes and the
parameter count, fills every parameter and buffer with deterministic values, runs
a fixed input in eval mode and stores golden logits. ``tests/test_models.py`` repeats
the same fill on our models and compares.

How the committed fixture was made (torch 2.13.0 CPU, torchvision 0.28.0):

    mkdir -p /tmp/tvref && cd /tmp/tvref
    pip download --no-deps torchvision==0.28.0 -d .
    python tools/make_torchvision_reference.py --wheel /tmp/tvref/torchvision-0.28.0-*.whl

Only ``torchvision/models/*.py``, ``torchvision/ops/misc.py`` and their small
pure-Python helpers are executed: the ``torchvision`` package ``__init__`` (which
loads the C extension and registers its operators) is bypassed by putting stub
package modules into ``sys.modules``, and ``transforms._presets`` (only used for
weight metadata) is stubbed. Nothing is downloaded at run time and no weights are used.

The fill procedure (:func:`fill_deterministic`) and the input (:func:`reference_input`)
are duplicated in tests/test_models.py; the fixture stores a checksum of the filled
state so the test notices if the two copies ever diverge.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
import types
import zipfile
import zlib
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "torchvision_reference.json"

# zoo name -> (torchvision module, builder name)
MODELS: dict[str, tuple[str, str]] = {
    "mobilenet_v2": ("mobilenetv2", "mobilenet_v2"),
    "mobilenet_v3_small": ("mobilenetv3", "mobilenet_v3_small"),
    "mobilenet_v3_large": ("mobilenetv3", "mobilenet_v3_large"),
    "shufflenet_v2_x0_5": ("shufflenetv2", "shufflenet_v2_x0_5"),
    "shufflenet_v2_x1_0": ("shufflenetv2", "shufflenet_v2_x1_0"),
    "shufflenet_v2_x1_5": ("shufflenetv2", "shufflenet_v2_x1_5"),
    "shufflenet_v2_x2_0": ("shufflenetv2", "shufflenet_v2_x2_0"),
    "squeezenet1_0": ("squeezenet", "squeezenet1_0"),
    "squeezenet1_1": ("squeezenet", "squeezenet1_1"),
    "resnet18": ("resnet", "resnet18"),
    "resnet34": ("resnet", "resnet34"),
    "resnet50": ("resnet", "resnet50"),
}

# 74x74 keeps every model's final feature map larger than 1x1 (ResNet, MobileNet and
# ShuffleNet end on 3x3, SqueezeNet on 4x4), passes odd sizes through the strided
# convs, and makes SqueezeNet's ceil_mode pooling matter: in both versions two of
# the three max-pools see a size where floor and ceil rounding differ.
INPUT_SHAPE = (1, 3, 74, 74)
INPUT_SEED = 1
NUM_LOGITS = 10


# --- shared with tests/test_models.py (keep the two copies identical) -----------------
def fill_deterministic(model: nn.Module) -> float:
    """Overwrite every floating parameter/buffer with values derived from its key.

    Each tensor gets its own generator seeded with crc32(key), so the result does not
    depend on registration order. Scales keep activations O(1) through deep nets
    (fan-in scaled weights, near-unit BatchNorm), so golden logits are meaningful:
    conv/linear weights N(0, 2/fan_in); norm weights 1 + N(0, 0.1^2); biases and
    running means N(0, 0.1^2); running variances U(0.5, 1.5). Integer buffers
    (num_batches_tracked) are left alone. Returns the float64 sum of all filled values.
    """
    total = 0.0
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            shape = tensor.shape
            if key.endswith("running_var"):
                value = 0.5 + torch.rand(shape, generator=gen)
            elif key.endswith("running_mean") or key.endswith("bias"):
                value = 0.1 * torch.randn(shape, generator=gen)
            elif tensor.dim() == 1:
                value = 1.0 + 0.1 * torch.randn(shape, generator=gen)
            else:
                fan_in = tensor[0].numel()
                value = math.sqrt(2.0 / fan_in) * torch.randn(shape, generator=gen)
            tensor.copy_(value)
            total += float(value.double().sum())
    return total


def reference_input() -> torch.Tensor:
    """The fixed input image batch (seed 1, N(0, 1))."""
    gen = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randn(INPUT_SHAPE, generator=gen)


# ---------------------------------------------------------------------------------------


def _stub_package(name: str, path: Path | None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)] if path is not None else []
    sys.modules[name] = module
    return module


def load_torchvision_builders(root: Path) -> dict[str, object]:
    """Import torchvision's model modules from an extracted wheel without its C extension."""
    pkg = root / "torchvision"
    if not (pkg / "models" / "mobilenetv2.py").is_file():
        raise SystemExit(f"{pkg} does not look like an extracted torchvision package")
    # Packages whose __init__ would pull in the compiled ops are replaced by stubs
    # that only know where their submodules live.
    _stub_package("torchvision", pkg)
    _stub_package("torchvision.models", pkg / "models")
    _stub_package("torchvision.ops", pkg / "ops")
    _stub_package("torchvision.transforms", pkg / "transforms")
    presets = types.ModuleType("torchvision.transforms._presets")

    class ImageClassification:  # only referenced by weight metadata
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

    presets.ImageClassification = ImageClassification  # type: ignore[attr-defined]
    sys.modules["torchvision.transforms._presets"] = presets

    builders = {}
    for name, (module_name, builder_name) in MODELS.items():
        module = importlib.import_module(f"torchvision.models.{module_name}")
        builders[name] = getattr(module, builder_name)
    return builders


def describe(name: str, builder) -> dict:
    torch.manual_seed(0)
    model = builder(weights=None)
    state = model.state_dict()
    entry = {
        "param_count": sum(p.numel() for p in model.parameters()),
        "state_dict": [[key, list(t.shape)] for key, t in state.items()],
    }
    entry["fill_checksum"] = fill_deterministic(model)
    model.eval()
    with torch.no_grad():
        logits = model(reference_input())
    entry["logits_first"] = [float(v) for v in logits[0, :NUM_LOGITS]]
    entry["logits_sum"] = float(logits.double().sum())
    entry["logits_abs_max"] = float(logits.abs().max())
    print(
        f"{name:20s} params={entry['param_count']:>10,d} keys={len(state):4d} "
        f"max|logit|={entry['logits_abs_max']:.3f}"
    )
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", type=Path, help="a downloaded torchvision wheel")
    source.add_argument("--root", type=Path, help="a folder holding an extracted torchvision/ package")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.wheel is not None:
            with zipfile.ZipFile(args.wheel) as wheel:
                members = [m for m in wheel.namelist() if m.startswith("torchvision/") and m.endswith(".py")]
                wheel.extractall(tmp, members)
            root = Path(tmp)
            source_name = args.wheel.name
        else:
            root = args.root
            source_name = str(args.root)
        builders = load_torchvision_builders(root)
        version_file = root / "torchvision" / "version.py"
        tv_version = "unknown"
        if version_file.is_file():
            namespace: dict = {}
            exec(version_file.read_text(), namespace)
            tv_version = namespace.get("__version__", "unknown")
        fixture = {
            "generated_by": "tools/make_torchvision_reference.py",
            "torchvision_version": tv_version,
            "torch_version": torch.__version__,
            "source": source_name,
            "input_shape": list(INPUT_SHAPE),
            "input_seed": INPUT_SEED,
            "models": {name: describe(name, builder) for name, builder in builders.items()},
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size:,d} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
