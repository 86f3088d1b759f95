"""Importance criteria are classes registered by name: one registered here is used by prune, the CLI and recipes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import models
from mobile_compress.errors import UserError
from mobile_compress.pruning import CRITERIA, Importance, PruneConfig, ScoredLayer, prune, register_criterion
from mobile_compress.pruning import criteria
from mobile_compress.training import CheckpointMeta, load_checkpoint, save_checkpoint
from workflows.cli import main
from workflows.recipes import load_recipe


class ReverseIndex:
    """Channel 0 matters most, the last channel least (whatever the weights say)."""

    name = "reverse_index"
    needs_data = False

    def __call__(self, model, layers, batches=None):
        return {layer.name: torch.arange(len(layer.units), 0, -1, dtype=torch.float32)
                for layer in layers if layer.kind != "bn"}


class CountsBatches:
    """Scores like l1 and records how many batches it was given."""

    name = "counts_batches"
    needs_data = True
    seen: list[int] = []

    def __call__(self, model, layers, batches=None):
        CountsBatches.seen.append(sum(1 for _ in batches))
        return {layer.name: layer.module.weight.detach().abs().reshape(len(layer.units), -1).sum(1)
                for layer in layers if layer.kind != "bn"}


@pytest.fixture
def registered(monkeypatch):
    """ReverseIndex and CountsBatches registered for one test; the registry is restored after it."""
    monkeypatch.setattr(criteria, "_REGISTRY", dict(criteria._REGISTRY))
    register_criterion(ReverseIndex)
    register_criterion(CountsBatches)
    CountsBatches.seen = []


def resnet20() -> nn.Module:
    torch.manual_seed(0)
    return models.create("resnet20", num_classes=10).eval()


def leading_slices(original: nn.Module, pruned: nn.Module) -> bool:
    """Whether every tensor of ``pruned`` is the first channels of the original's (what reverse_index keeps)."""
    before = original.state_dict()
    for key, value in pruned.state_dict().items():
        if value.ndim and not torch.equal(value, before[key][tuple(slice(0, n) for n in value.shape)]):
            return False
    return True


def test_a_registered_criterion_is_accepted_and_decides_which_channels_stay(registered) -> None:
    assert "reverse_index" in CRITERIA and list(CRITERIA)[:4] == ["l1", "l2", "bn_scale", "taylor"]
    assert isinstance(ReverseIndex(), Importance)
    model = resnet20()
    result = prune(model, PruneConfig(target="macs=0.5", criterion="reverse_index"), 32)
    assert result.macs_after <= 0.5 * result.macs_before
    assert leading_slices(model, result.model)
    l1 = prune(model, PruneConfig(target="macs=0.5", criterion="l1"), 32)
    assert not leading_slices(model, l1.model)  # random weights: l1 keeps other channels


def test_the_cli_and_recipes_offer_a_registered_criterion(registered, tmp_path: Path, capsys) -> None:
    model = resnet20()
    save_checkpoint(tmp_path / "ck", model, CheckpointMeta(arch="resnet20", num_classes=10, input_size=32))
    assert main(["prune", str(tmp_path / "ck"), "--target", "macs=0.6", "--criterion", "reverse_index",
                 "--epochs-per-step", "0", "--out", str(tmp_path / "out"), "--json"]) == 0
    pruned, _ = load_checkpoint(json.loads(capsys.readouterr().out)["checkpoint"])
    assert leading_slices(model, pruned)
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.arange(4) % 2)
    stage = {"input": str(tmp_path / "ck"), "target": "macs=0.6", "criterion": "reverse_index", "epochs_per_step": 0}
    recipe = {"data": "d.npz", "stages": [{"prune": stage}]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert load_recipe(tmp_path / "recipe.yaml").stages[0].options.config.criterion == "reverse_index"


def test_a_criterion_that_needs_data_gets_at_most_taylor_batches(registered) -> None:
    model = resnet20()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    prune(model, PruneConfig(target="macs=0.7", criterion="counts_batches", taylor_batches=2), 32, data=[(x, y)] * 5)
    assert CountsBatches.seen == [2]
    with pytest.raises(UserError, match="counts_batches criterion needs data"):
        prune(model, PruneConfig(target="macs=0.7", criterion="counts_batches"), 32)


def test_an_unknown_criterion_lists_the_registered_ones(registered) -> None:
    with pytest.raises(UserError, match="criterion 'l7' is unknown") as err:
        PruneConfig(target="macs=0.5", criterion="l7")
    assert err.value.hint == "use one of l1, l2, bn_scale, taylor, reverse_index, counts_batches"


def test_registration_refuses_a_taken_name_and_a_bad_class(registered) -> None:
    register_criterion(ReverseIndex)  # the same class again changes nothing

    class Another(ReverseIndex):
        pass

    with pytest.raises(ValueError, match="'reverse_index' is already registered by .*ReverseIndex"):
        register_criterion(Another)
    for name, needs_data in (("two words", False), ("", False), (None, False), ("fine", "no")):
        bad = type("Bad", (), {"name": name, "needs_data": needs_data, "__call__": lambda self, *a: {}})
        with pytest.raises(ValueError, match="Bad"):
            register_criterion(bad)
    with pytest.raises(ValueError, match="Uncallable must define __call__"):
        register_criterion(type("Uncallable", (), {"name": "fine", "needs_data": False}))
    with pytest.raises(TypeError, match="takes a class"):
        register_criterion(ReverseIndex())
    assert "fine" not in CRITERIA


def test_a_criterion_must_score_every_channel_of_a_layer_it_scores(monkeypatch) -> None:
    monkeypatch.setattr(criteria, "_REGISTRY", dict(criteria._REGISTRY))

    @register_criterion
    class Short:
        name = "short"
        needs_data = False

        def __call__(self, model, layers: list[ScoredLayer], batches=None):
            return {layers[0].name: torch.ones(len(layers[0].units) - 1)}

    with pytest.raises(TypeError, match="'short' must score each of the 16 output channels of conv1"):
        prune(resnet20(), PruneConfig(target="macs=0.5", criterion="short"), 32)
