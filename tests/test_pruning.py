"""Structured pruning: the dependency graph keeps every family valid, channels really go,
targets are met, checkpoints rebuild without pickles, the schedule fine-tunes and resumes."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import models
from workflows.cli import main
from mobile_compress.counting import count_macs, count_parameters
from mobile_compress.errors import UserError
from mobile_compress.pruning import LatencyTable, LayerLatency, PruneConfig, build_graph, example_input, parse_target, prune
from mobile_compress.pruning.allocate import allowed_widths
from mobile_compress.pruning.cost import CostModel
from mobile_compress.pruning.job import step_fractions
from mobile_compress.pruning.surgery import prune_model
from mobile_compress.pruning.verify import max_difference
from mobile_compress.training import CheckpointMeta, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

# One member of every family, at the small-input stem (32x32) where the family has one.
FAMILIES = {
    "mobilenet_v2": {"small_input": True, "width_mult": 0.5},
    "mobilenet_v3_small": {"small_input": True},
    "shufflenet_v2_x0_5": {"small_input": True},
    "squeezenet1_1": {"small_input": True},
    "resnet20": {},
    "resnet18": {"small_input": True},
}


def build(name: str, **extra) -> nn.Module:
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, **{**FAMILIES.get(name, {}), **extra})
    for m in model.modules():  # non-trivial BatchNorm statistics, so a wrong index shows in the outputs
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_random_channel_removal_matches_the_silenced_original(name: str) -> None:
    """Remove a random half of every group: the smaller model computes exactly what the original
    computes with those channels zeroed. A wrong coupling or a wrong index would break this."""
    model = build(name)
    x = example_input(model, 32)
    graph = build_graph(model, x)
    rng = random.Random(1)
    removed = {u for g in graph.groups for u in rng.sample(g.units, g.size // 2)}
    pruned, layers = prune_model(model, graph, removed)
    assert layers and count_parameters(pruned) < count_parameters(model)
    difference, scale = max_difference(model, pruned, graph, removed, x)
    assert scale > 0 and difference < 1e-4 * scale


def produced_by(graph, layer: str):
    """The group holding the output channels of ``layer``."""
    return next(g for g in graph.groups if any(name == layer and role == "out" for name, role, _ in g.signature))


def test_residual_adds_couple_the_projections_of_one_stage() -> None:
    graph = build_graph(build("mobilenet_v2"), torch.randn(1, 3, 32, 32))
    # Blocks 2 and 3 (24 channels) add into the same residual stream as block 2's output.
    group = produced_by(graph, "features.2.conv.2")
    assert group is produced_by(graph, "features.3.conv.2")
    assert {"features.2.conv.3", "features.3.conv.3"} <= set(group.layers)
    assert "features.3.conv.0.0" in group.layers  # the next block's expand conv reads those channels


def test_depthwise_and_squeeze_excitation_channels_go_together() -> None:
    graph = build_graph(build("mobilenet_v3_small"), torch.randn(1, 3, 32, 32))
    # Block 4 (mobilenet_v3_small): expand -> depthwise -> SE -> project; SE fc2 scales the depthwise output.
    group = produced_by(graph, "features.4.block.0.0")
    assert {"features.4.block.1.0", "features.4.block.1.1", "features.4.block.2.fc2", "features.4.block.2.fc1",
            "features.4.block.3.0"} <= set(group.layers)


def test_fire_concatenation_keeps_both_expands_separate_and_feeds_the_next_squeeze() -> None:
    graph = build_graph(build("squeezenet1_1"), torch.randn(1, 3, 32, 32))
    e1, e3 = produced_by(graph, "features.3.expand1x1"), produced_by(graph, "features.3.expand3x3")
    assert e1 is not e3 and "features.4.squeeze" in e1.layers and "features.4.squeeze" in e3.layers


def test_channel_shuffle_couples_channels_across_branches() -> None:
    """ShuffleNetV2: after chunk + shuffle, units hold channels of several producers, in lock-step."""
    graph = build_graph(build("shufflenet_v2_x0_5"), torch.randn(1, 3, 32, 32))
    multi = [g for g in graph.groups if sum(1 for _, role, _ in g.signature if role == "out") > 1]
    assert multi, "the shuffle should couple outputs of different branches"
    assert any("stage2.1.branch2.5" in g.layers and "stage2.0.branch1.2" in g.layers for g in multi)


def test_classifier_outputs_and_network_input_are_never_pruned() -> None:
    model = build("mobilenet_v2")
    result = prune(model, PruneConfig(target="macs=0.3", allocation="uniform"), 32)
    assert result.model.classifier[1].out_features == 10
    assert result.model.features[0][0].in_channels == 3
    assert result.model.classifier[1].in_features < 1280  # its inputs (the last conv's channels) may go


@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2_x0_5", "squeezenet1_1", "resnet20"])
@pytest.mark.parametrize("fraction", [0.7, 0.5, 0.3])
def test_mac_targets_are_met_with_rounded_widths(name: str, fraction: float) -> None:
    model = build(name)
    # CIFAR ResNets keep their option-A residual streams (the zero-padding sizes are constants of the
    # code), so only the inner channels go: 70% fewer MACs needs widths below 8 there.
    multiple = 4 if name == "resnet20" and fraction < 0.5 else 8
    result = prune(model, PruneConfig(target=f"macs={fraction}", multiple=multiple), 32)
    real = count_macs(result.model, 32)
    assert real == result.macs_after and count_macs(model, 32) == result.macs_before
    assert real <= fraction * result.macs_before
    assert real >= (fraction - 0.12) * result.macs_before  # the greedy stops near the target, not far below
    with torch.no_grad():
        assert result.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    for name_, rec in result.layers.items():
        if rec["type"] == "bn":
            assert rec["channels"] % multiple == 0 or rec["channels"] == dict(model.named_modules())[name_].num_features


def test_allowed_widths_are_multiples_never_below_the_multiple() -> None:
    graph = build_graph(build("shufflenet_v2_x0_5"), torch.randn(1, 3, 32, 32))
    for g in graph.groups:
        widths = allowed_widths(g, 8)
        channels = [w * g.channels_per_unit for w in widths[:-1]]
        assert widths[-1] == g.size and all(c % 8 == 0 and c >= 8 for c in channels)


def test_params_target_and_uniform_allocation() -> None:
    model = build("mobilenet_v2")
    glob = prune(model, PruneConfig(target="params=0.5"), 32)
    uni = prune(model, PruneConfig(target="params=0.5", allocation="uniform"), 32)
    for r in (glob, uni):
        assert count_parameters(r.model) == r.params_after <= 0.5 * count_parameters(model)
    kept = [g.after / g.before for g in uni.groups if g.before >= 32]  # narrow layers round coarsely
    assert max(kept) - min(kept) <= 0.25  # uniform: every wide group keeps a similar share
    assert glob.layers != uni.layers


def test_min_keep_floors_every_group_and_still_meets_the_target() -> None:
    """Unfloored, the greedy cuts some resnet56 blocks to a quarter; with min_keep=0.3 none goes below 0.3."""
    model = build("resnet56")
    free = prune(model, PruneConfig(target="macs=0.5"), 32)
    floored = prune(model, PruneConfig(target="macs=0.5", min_keep=0.3), 32)
    assert min(g.after / g.before for g in free.groups) < 0.3
    assert min(g.after / g.before for g in floored.groups) >= 0.3
    assert floored.macs_after <= 0.5 * floored.macs_before
    assert floored.transform()["min_keep"] == 0.3
    with pytest.raises(UserError, match="min_keep"):
        PruneConfig(target="macs=0.5", min_keep=1.0)
    with pytest.raises(UserError, match="min-keep"):
        prune(model, PruneConfig(target="macs=0.1", min_keep=0.6), 32)


def test_latency_target_follows_the_table_not_the_macs() -> None:
    """A table that makes one layer very slow per MAC: the latency target prunes that layer first."""
    model = build("resnet20")
    graph = build_graph(model, example_input(model, 32))
    slow = "layer3.0.conv1"
    table = LatencyTable(0.1, {u.name: LayerLatency(ms_per_mac=(1e-5 if u.name == slow else 1e-8))
                               for u in graph.uses.values() if u.kind != "bn"})
    by_latency = prune(model, PruneConfig(target="latency=0.6"), 32, latency=table)
    by_macs = prune(model, PruneConfig(target="macs=0.6"), 32)
    assert by_latency.latency_after_ms <= 0.6 * by_latency.latency_before_ms
    width = lambda r: dict(r.model.named_modules())[slow].out_channels  # noqa: E731
    assert width(by_latency) < width(by_macs)
    with pytest.raises(UserError, match="latency table"):
        prune(model, PruneConfig(target="latency=0.6"), 32)


def test_table_json_round_trip(tmp_path: Path) -> None:
    table = LatencyTable(1.5, {"conv": LayerLatency(2e-6, 1e-4)}, {"device": "host"})
    table.save(tmp_path / "t.json")
    assert LatencyTable.load(tmp_path / "t.json") == table
    (tmp_path / "bad.json").write_text('{"layers": 3}')
    with pytest.raises(UserError, match="bad.json"):
        LatencyTable.load(tmp_path / "bad.json")


def test_bn_scale_removes_the_channels_with_small_gamma() -> None:
    model = build("resnet20")
    bn = model.layer1[0].bn1
    with torch.no_grad():
        bn.weight[:8] = 1e-4  # eight dead channels in block layer1.0
    result = prune(model, PruneConfig(target="macs=0.9", criterion="bn_scale", allocation="uniform"), 32)
    kept = result.model.layer1[0].bn1.weight
    if kept.numel() < 16:
        assert kept.abs().min() > 1e-3


def test_criteria_choose_differently_and_taylor_needs_data() -> None:
    model = build("mobilenet_v2")
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    kept = {}
    for criterion in ("l1", "l2", "bn_scale", "taylor"):
        r = prune(model, PruneConfig(target="macs=0.5", criterion=criterion, allocation="uniform"), 32,
                  data=[(x, y)] * 2)
        kept[criterion] = r.model.features[2].conv[0][1].running_mean.clone()
    assert not torch.equal(kept["l1"], kept["bn_scale"]) and not torch.equal(kept["l1"], kept["taylor"])
    with pytest.raises(UserError, match="taylor"):
        prune(model, PruneConfig(target="macs=0.5", criterion="taylor"), 32)


def test_protected_layers_keep_their_channels() -> None:
    model = build("mobilenet_v2")
    r = prune(model, PruneConfig(target="macs=0.5", protect=("features.1.*",)), 32)
    assert r.model.features[1].conv[0][0].out_channels == model.features[1].conv[0][0].out_channels
    with pytest.raises(UserError, match="matches no layer"):
        prune(model, PruneConfig(target="macs=0.5", protect=("nope.*",)), 32)


def test_unreachable_target_says_what_is_reachable() -> None:
    with pytest.raises(UserError, match="cannot reach macs 0.01"):
        prune(build("resnet20"), PruneConfig(target="macs=0.01"), 32)


@pytest.mark.parametrize("text", ["macs", "flops=0.5", "macs=1.5", "macs=0", "macs=abc"])
def test_bad_targets_are_user_errors(text: str) -> None:
    with pytest.raises(UserError):
        parse_target(text)


def test_parse_target_and_step_fractions() -> None:
    t = parse_target("MACS=0.5")
    assert (t.metric, t.fraction) == ("macs", 0.5)
    assert step_fractions(0.5, 2) == [0.75, 0.5]


def test_cost_model_counts_like_the_counting_module() -> None:
    model = build("mobilenet_v3_small")
    graph = build_graph(model, example_input(model, 32))
    full = {g.index: g.size for g in graph.groups}
    costs = CostModel(graph, model)
    assert costs.macs(full) == count_macs(model, 32) and costs.params(full) == count_parameters(model)


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mobilenet_v3_small"])
def test_checkpoint_rebuilds_without_pickles(tmp_path: Path, name: str) -> None:
    model = build(name)
    result = prune(model, PruneConfig(target="macs=0.5"), 32)
    meta = CheckpointMeta(arch=name, num_classes=10, input_size=32, options=FAMILIES[name],
                          transforms=[result.transform()])
    save_checkpoint(tmp_path / "ck", result.model, meta)
    spec = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())["transforms"][0]
    assert spec["kind"] == "prune" and spec["layers"]
    loaded, _ = load_checkpoint(tmp_path / "ck")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.model.eval()(x), atol=1e-6)
    # A second prune on the pruned model appends a second record; both replay in order.
    again = prune(loaded, PruneConfig(target="macs=0.8"), 32)
    meta.transforms.append(again.transform())
    save_checkpoint(tmp_path / "ck2", again.model, meta)
    loaded2, _ = load_checkpoint(tmp_path / "ck2")
    assert count_macs(loaded2, 32) == count_macs(again.model, 32)


def test_a_broken_record_names_the_field(tmp_path: Path) -> None:
    model = build("resnet20")
    result = prune(model, PruneConfig(target="macs=0.5"), 32)
    transform = result.transform()
    name = next(iter(transform["layers"]))
    transform["layers"][name] = {"type": "conv", "in": "many"}
    save_checkpoint(tmp_path / "ck", result.model, CheckpointMeta(arch="resnet20", num_classes=10, input_size=32,
                                                                  transforms=[transform]))
    with pytest.raises(UserError, match=f"layers.{name}"):
        load_checkpoint(tmp_path / "ck")


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, cls in enumerate(("cat", "dog")):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(8):
                pixels = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8) + np.uint8(150 * label)
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root


def test_cli_prunes_iteratively_fine_tunes_and_resumes(tmp_path: Path, capsys) -> None:
    data = _folder(tmp_path / "data")
    model = models.create("mobilenet_v2", num_classes=2, small_input=True, width_mult=0.35)
    meta = CheckpointMeta(arch="mobilenet_v2", num_classes=2, input_size=32, labels=["cat", "dog"],
                          options={"small_input": True, "width_mult": 0.35},
                          normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
    save_checkpoint(tmp_path / "ck", model, meta)
    argv = ["prune", str(tmp_path / "ck"), "--target", "macs=0.5", "--data", str(data), "--steps", "2",
            "--epochs-per-step", "1", "--out", str(tmp_path / "out"), "--batch-size", "8", "--no-progress",
            "--criterion", "taylor"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "step 2/2" in out and "after" in out
    final, final_meta = load_checkpoint(tmp_path / "out" / "final")
    assert count_macs(final, 32) <= 0.5 * count_macs(model, 32)
    assert [t["kind"] for t in final_meta.transforms] == ["prune", "prune"]
    assert final_meta.metrics["top1"] is not None
    progress = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert [s["step"] for s in progress["done"]] == [1, 2]
    # Resuming a finished run redoes nothing and gives the same model.
    assert main(argv + ["--resume"]) == 0
    again, _ = load_checkpoint(tmp_path / "out" / "final")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(again(x), final(x))
    # A second run into the same folder without --resume is refused, with the fix.
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err


def test_cli_resumes_a_step_that_was_cut_short(tmp_path: Path, capsys) -> None:
    data = _folder(tmp_path / "data")
    model = models.create("resnet20", num_classes=2)
    save_checkpoint(tmp_path / "ck", model, CheckpointMeta(arch="resnet20", num_classes=2, input_size=32,
                                                          labels=["cat", "dog"]))
    argv = ["prune", str(tmp_path / "ck"), "--target", "params=0.6", "--data", str(data), "--steps", "2",
            "--epochs-per-step", "1", "--out", str(tmp_path / "out"), "--batch-size", "8", "--no-progress",
            "--distill", "--min-keep", "0.3"]  # fine-tune with logit distillation from the unpruned model
    assert main(argv) == 0
    # Simulate a kill during step 2: drop its commit in progress.json and its fine-tune.
    progress_file = tmp_path / "out" / "progress.json"
    progress = json.loads(progress_file.read_text())
    assert progress["done"][0]["hooks"] == ["DistillationHook"]
    progress["done"] = progress["done"][:1]
    progress_file.write_text(json.dumps(progress))
    (tmp_path / "out" / "step_2" / "finetune" / "train_state.pt").unlink()
    assert main(argv + ["--resume"]) == 0
    final, final_meta = load_checkpoint(tmp_path / "out" / "final")
    assert count_parameters(final) <= 0.6 * count_parameters(model)
    assert {t["min_keep"] for t in final_meta.transforms} == {0.3}
    widths = {n: m.out_channels for n, m in final.named_modules() if n.endswith("conv1") and "layer" in n}
    full = {n: m.out_channels for n, m in model.named_modules() if n in widths}
    assert min(widths[n] / full[n] for n in widths) >= 0.3


def test_cli_errors_are_one_message(tmp_path: Path, capsys) -> None:
    model = models.create("resnet20", num_classes=2)
    save_checkpoint(tmp_path / "ck", model, CheckpointMeta(arch="resnet20", num_classes=2, input_size=32))
    assert main(["prune", str(tmp_path / "ck"), "--target", "flops=0.5", "--out", str(tmp_path / "o")]) == 2
    assert "macs=0.5" in capsys.readouterr().err
    assert main(["prune", str(tmp_path / "ck"), "--target", "macs=0.5", "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["prune", str(tmp_path / "ck"), "--target", "latency=0.5", "--out", str(tmp_path / "o"),
                 "--latency-table", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["prune", str(tmp_path / "ck"), "--target", "macs=0.5", "--out", str(tmp_path / "o"),
                 "--min-keep", "1.5"]) == 2
    assert "min_keep 1.5" in capsys.readouterr().err
    assert main(["prune", str(tmp_path / "ck"), "--target", "macs=0.5", "--out", str(tmp_path / "o"),
                 "--latency-device", "PHONE1"]) == 2
    assert "--latency-device applies to latency targets only" in capsys.readouterr().err


def test_prune_leaves_the_input_model_untouched() -> None:
    model = build("shufflenet_v2_x0_5").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = prune(model, PruneConfig(target="macs=0.5"), 32)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.model is not model and result.verify_error < 1e-4


def test_cli_latency_target_with_a_saved_table_and_no_fine_tune(tmp_path: Path, capsys) -> None:
    model = build("resnet20")
    save_checkpoint(tmp_path / "ck", model, CheckpointMeta(arch="resnet20", num_classes=10, input_size=32))
    graph = build_graph(model, example_input(model, 32))
    LatencyTable(0.05, {u.name: LayerLatency(1e-8, 1e-6) for u in graph.uses.values() if u.kind != "bn"}).save(
        tmp_path / "table.json")
    assert main(["prune", str(tmp_path / "ck"), "--target", "latency=0.7", "--latency-table",
                 str(tmp_path / "table.json"), "--epochs-per-step", "0", "--out", str(tmp_path / "out"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    step = report["steps"][0]["prune"]
    assert step["latency_after_ms"] <= 0.7 * step["latency_before_ms"]
    pruned, meta = load_checkpoint(report["checkpoint"])
    assert meta.transforms[0]["target"] == "latency=0.7" and count_macs(pruned, 32) < count_macs(model, 32)


def test_a_phone_that_cannot_run_the_variants_names_itself(tmp_path: Path) -> None:
    from mobile_compress.errors import UserError
    from android_harness.transport import TransportError
    from profiler.latency_table import device_timer

    def opener(serial: str):
        raise TransportError(f"{serial}: device unauthorized")

    (tmp_path / "variant0.tflite").write_bytes(b"x")
    with pytest.raises(UserError, match="latency table on PHONE1.*variant v0 did not run.*unauthorized"):
        device_timer("PHONE1", opener=opener)({"v0": tmp_path / "variant0.tflite"})
