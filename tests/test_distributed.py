"""Multi-process training under torchrun (2 CPU processes, Gloo): the same Trainer entry point as single runs."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mobile_compress.training.distributed import DistContext, setup, torchrun_env

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")

SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from mobile_compress.training import Hook, TrainConfig, Trainer, evaluate

    out, ranks_dir = sys.argv[1], sys.argv[2]
    rank = int(os.environ["RANK"])

    class Probe(Hook):
        # counts the samples this rank trains on, and owns a parameter outside the model
        def __init__(self):
            self.seen = 0
            self.c = nn.Parameter(torch.randn(()))      # differs per rank: the engine must broadcast it
        def extra_parameters(self):
            return [self.c]
        def on_epoch_start(self, trainer, epoch):
            self.where = (trainer.rank, trainer.world_size, type(trainer.module).__name__)
        def loss(self, trainer, inputs, targets, outputs, loss):
            self.seen += inputs.shape[0]
            return loss + (self.c - float(trainer.rank)) ** 2   # per-rank pull: grads must be averaged

    def digest(tensors):
        h = hashlib.sha256()
        for t in tensors:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 6, (96,), generator=g)
    x = torch.randn(96, 8, generator=g) + 2 * torch.nn.functional.one_hot(y, 8).float()
    vy = torch.randint(0, 6, (37,), generator=g)
    vx = torch.randn(37, 8, generator=g) + 2 * torch.nn.functional.one_hot(vy, 8).float()
    train, val = TensorDataset(x, y), TensorDataset(vx, vy)

    torch.manual_seed(100 + rank)   # different initial weights per rank: DDP must sync them from rank 0
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 6))
    initial = digest(model.state_dict().values())
    probe = Probe()
    c_init = probe.c.item()
    config = TrainConfig(epochs=2, batch_size=16, lr=0.1, device="cpu", progress=True, seed=0)
    result = Trainer(model, config, train, val, hooks=[probe], out_dir=out).fit()
    after_group = torch.distributed.is_initialized()
    full = evaluate(model, val, device="cpu")   # one process, the whole val set
    json.dump({
        "rank": rank, "where": probe.where, "seen": probe.seen, "c": probe.c.item(), "c_init": c_init,
        "initial": initial, "final": digest(model.state_dict().values()),
        "val_n": result.epochs[-1].val_n, "val_top1": result.epochs[-1].val_top1,
        "val_loss": result.epochs[-1].val_loss, "full_top1": full.top1, "full_loss": full.loss,
        "train_n": result.epochs[-1].train_n, "group_left_open": after_group,
    }, open(os.path.join(ranks_dir, f"rank{rank}.json"), "w"))
""")


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed next to this python")
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="no gloo backend")
def test_torchrun_two_processes_gloo(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    out, ranks = tmp_path / "run", tmp_path / "ranks"
    ranks.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script), str(out), str(ranks)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    r = [json.loads((ranks / f"rank{i}.json").read_text()) for i in range(2)]

    # both ranks ran inside a 2-process group, through DDP
    assert [x["where"] for x in r] == [[0, 2, "DistributedDataParallel"], [1, 2, "DistributedDataParallel"]]
    # they started different and ended identical (DDP synced and averaged), and training changed the weights
    assert r[0]["initial"] != r[1]["initial"]
    assert r[0]["final"] == r[1]["final"] and r[0]["final"] not in (r[0]["initial"], r[1]["initial"])
    # the parameter outside DDP was broadcast and its gradients averaged: same value, pulled to the mean target 0.5
    assert r[0]["c_init"] != r[1]["c_init"]
    assert r[0]["c"] == r[1]["c"]
    assert abs(r[0]["c"] - 0.5) < abs(r[0]["c_init"] - 0.5)
    # each rank trained on its half of the data; the reported numbers cover all of it
    assert r[0]["seen"] == r[1]["seen"] == 96
    assert r[0]["train_n"] == 96
    assert r[0]["val_n"] == r[1]["val_n"] == 37
    for x in r:
        assert x["val_top1"] == pytest.approx(x["full_top1"], abs=1e-9)
        assert x["val_loss"] == pytest.approx(x["full_loss"], rel=1e-5)
        assert not x["group_left_open"]

    # only rank 0 wrote files: one checkpoint, one history with one line per epoch, one summary per epoch
    assert sorted(os.listdir(out)) == ["best", "history.jsonl", "last", "train_state.pt"]
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [s.split()[1] for s in summaries] == ["1/2", "2/2"], proc.stdout
    weights = torch.load(out / "last" / "weights.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in weights)
    h = hashlib.sha256()
    for t in weights.values():
        h.update(t.contiguous().numpy().tobytes())
    assert h.hexdigest() == r[0]["final"]


def test_single_process_sees_no_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert torchrun_env() is None
    assert setup("cpu") == DistContext()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert torchrun_env() is None  # a world of one is a plain run
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert torchrun_env() == (2, 4, 0)
