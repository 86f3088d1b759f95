"""Checkpoint format (state_dict + JSON), its errors, and exact resume, including after kill -9."""
from __future__ import annotations

import io
import json
import os
import pickletools
import signal
import subprocess
import sys
import textwrap
import time
import types
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

import mobile_compress
from mobile_compress.errors import UserError
from mobile_compress.training import (CheckpointMeta, Hook, TrainConfig, Trainer, load_checkpoint, read_meta,
                                      save_checkpoint)
from mobile_compress.training.checkpoint import META_FILE, WEIGHTS_FILE

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- a stand-in model zoo


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 4, dropout: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.classifier(self.drop(self.features(x)))


@pytest.fixture
def zoo(monkeypatch):
    """Replace the model zoo with one model, so these tests do not depend on the real zoo."""
    calls = []

    def create(name, num_classes=1000, **options):
        calls.append((name, num_classes, options))
        if name != "tinynet":
            raise UserError(f"unknown model '{name}'", hint="see `mobile-compress models`")
        return TinyNet(num_classes=num_classes, **options)

    fake = types.ModuleType("models")
    fake.create = create
    monkeypatch.setitem(sys.modules, "models", fake)
    return calls


def meta(**kw) -> CheckpointMeta:
    base = dict(arch="tinynet", options={"width": 6}, num_classes=3, input_size=8,
                normalization={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
                labels=["cat", "dog", "eel"], metrics={"val_top1": 71.5}, extra={"data": "builtin"})
    base.update(kw)
    return CheckpointMeta(**base)


def trained_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    net = TinyNet(num_classes=3, width=6)
    with torch.no_grad():  # non-default BN statistics, so buffers are checked too
        net.features[1].running_mean.uniform_()
        net.features[1].running_var.uniform_(0.5, 2)
        net.features[1].num_batches_tracked.fill_(7)
    return net


# ---------------------------------------------------------------------- format


def test_round_trip_weights_and_meta(tmp_path, zoo):
    net = trained_net()
    out = save_checkpoint(tmp_path / "ck", net, meta())
    assert sorted(os.listdir(out)) == [META_FILE, WEIGHTS_FILE]
    model, m = load_checkpoint(out)
    assert zoo == [("tinynet", 3, {"width": 6})]
    assert not model.training
    for (k, a), (k2, b) in zip(net.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randn(2, 3, 8, 8)
    net.eval()
    assert torch.equal(net(x), model(x))
    assert (m.arch, m.options, m.num_classes, m.input_size) == ("tinynet", {"width": 6}, 3, 8)
    assert m.labels == ["cat", "dog", "eel"] and m.metrics == {"val_top1": 71.5} and m.extra == {"data": "builtin"}
    assert m.normalization == {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    assert m.mobile_compress_version == mobile_compress.__version__
    assert datetime.fromisoformat(m.created).tzinfo is not None


def test_json_has_every_field(tmp_path):
    save_checkpoint(tmp_path / "ck", trained_net(), meta(input_size=(8, 12)))
    data = json.loads((tmp_path / "ck" / META_FILE).read_text())
    assert set(data) == {"format_version", "arch", "options", "num_classes", "input_size", "normalization",
                         "labels", "metrics", "transforms", "created", "mobile_compress_version", "extra"}
    assert data["format_version"] == 1 and data["input_size"] == [8, 12]
    assert read_meta(tmp_path / "ck").input_size == (8, 12)


def test_normalization_object_is_stored_as_dict(tmp_path):
    class Norm:
        def to_dict(self):
            return {"mean": [0.1, 0.2, 0.3], "std": [1.0, 1.0, 1.0]}

    save_checkpoint(tmp_path / "ck", trained_net(), meta(normalization=Norm()))
    assert read_meta(tmp_path / "ck").normalization == {"mean": [0.1, 0.2, 0.3], "std": [1.0, 1.0, 1.0]}


def test_load_accepts_directory_or_either_file(tmp_path, zoo):
    save_checkpoint(tmp_path / "ck", trained_net(), meta())
    for p in (tmp_path / "ck", tmp_path / "ck" / META_FILE, tmp_path / "ck" / WEIGHTS_FILE, str(tmp_path / "ck")):
        model, m = load_checkpoint(p)
        assert m.arch == "tinynet" and isinstance(model, TinyNet)
        assert read_meta(p).labels == ["cat", "dog", "eel"]


def test_weights_are_a_plain_state_dict_not_a_pickled_module(tmp_path):
    save_checkpoint(tmp_path / "ck", trained_net(), meta())
    file = tmp_path / "ck" / WEIGHTS_FILE
    state = torch.load(file, weights_only=True)  # would raise on any pickled class of ours
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    # Inspect the pickle itself: the only globals are torch's tensor rebuilding and OrderedDict.
    with zipfile.ZipFile(file) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    text = io.StringIO()
    pickletools.dis(pkl, out=text)
    listing = text.getvalue()
    assert "TinyNet" not in listing and "torch.nn.modules" not in listing and "test_checkpoint" not in listing
    globals_ = {line.split("GLOBAL")[1].strip() for line in listing.splitlines() if "GLOBAL" in line}
    allowed = {"'collections OrderedDict'", "'torch._utils _rebuild_tensor_v2'", "'torch FloatStorage'",
               "'torch LongStorage'"}
    assert globals_ and globals_ <= allowed, globals_


def test_pickled_module_is_refused_without_running_it(tmp_path, zoo):
    d = tmp_path / "ck"
    save_checkpoint(d, trained_net(), meta())
    torch.save(trained_net(), d / WEIGHTS_FILE)  # what we must never load
    with pytest.raises(UserError) as err:
        load_checkpoint(d)
    assert WEIGHTS_FILE in str(err.value) and "state_dict" in str(err.value)


def test_ddp_wrapped_model_saves_without_module_prefix(tmp_path, zoo):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        net = trained_net()
        ddp = nn.parallel.DistributedDataParallel(net)
        save_checkpoint(tmp_path / "ck", ddp, meta())
    finally:
        dist.destroy_process_group()
    state = torch.load(tmp_path / "ck" / WEIGHTS_FILE, weights_only=True)
    assert list(state) == list(net.state_dict())
    assert not any(k.startswith("module.") for k in state)
    load_checkpoint(tmp_path / "ck")


def test_save_replaces_atomically_and_leaves_no_temp_dirs(tmp_path, zoo, monkeypatch):
    save_checkpoint(tmp_path / "ck", trained_net(0), meta(metrics={"v": 1}))
    save_checkpoint(tmp_path / "ck", trained_net(1), meta(metrics={"v": 2}))
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    assert read_meta(tmp_path / "ck").metrics == {"v": 2}
    # a crash while writing keeps the previous checkpoint whole and cleans up
    def boom(*a, **k):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(torch, "save", boom)
        with pytest.raises(OSError):
            save_checkpoint(tmp_path / "ck", trained_net(2), meta(metrics={"v": 3}))
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    load_checkpoint(tmp_path / "ck")
    assert read_meta(tmp_path / "ck").metrics == {"v": 2}


def test_save_refuses_to_clobber_a_non_checkpoint_directory(tmp_path):
    d = tmp_path / "precious"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a checkpoint"):
        save_checkpoint(d, trained_net(), meta())
    assert (d / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------------- errors


def test_missing_directory(tmp_path, zoo):
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "nope")
    assert "nope" in str(err.value) and "does not exist" in str(err.value)


def test_directory_without_json(tmp_path, zoo):
    d = tmp_path / "ck"
    save_checkpoint(d, trained_net(), meta())
    (d / META_FILE).unlink()
    with pytest.raises(UserError) as err:
        load_checkpoint(d)
    assert META_FILE in str(err.value) and "missing" in str(err.value)


def test_directory_without_weights(tmp_path, zoo):
    d = tmp_path / "ck"
    save_checkpoint(d, trained_net(), meta())
    (d / WEIGHTS_FILE).unlink()
    with pytest.raises(UserError, match=WEIGHTS_FILE):
        load_checkpoint(d)


def test_garbled_json(tmp_path, zoo):
    d = tmp_path / "ck"
    save_checkpoint(d, trained_net(), meta())
    (d / META_FILE).write_text('{"arch": "tinynet", ')
    with pytest.raises(UserError) as err:
        load_checkpoint(d)
    assert str(d / META_FILE) in str(err.value) and "not valid JSON" in str(err.value)


@pytest.mark.parametrize("field", ["arch", "num_classes", "input_size", "format_version"])
def test_missing_field_is_named(tmp_path, zoo, field):
    d = tmp_path / "ck"
    save_checkpoint(d, trained_net(), meta())
    data = json.loads((d / META_FILE).read_text())
    del data[field]
    (d / META_FILE).write_text(json.dumps(data))
    with pytest.raises(UserError) as err:
        read_meta(d)
    assert f"'{field}'" in str(err.value) and META_FILE in str(err.value)


def test_bad_field_values_and_newer_format(tmp_path):
    d = tmp_path / "ck"
    save_checkpoint(d, trained_net(), meta())
    good = json.loads((d / META_FILE).read_text())
    for patch, word in (({"num_classes": "3"}, "num_classes"), ({"options": []}, "options"),
                        ({"labels": ["a"]}, "labels"), ({"format_version": 99}, "newer")):
        (d / META_FILE).write_text(json.dumps({**good, **patch}))
        with pytest.raises(UserError, match=word):
            read_meta(d)


def test_weights_that_do_not_match_the_arch(tmp_path, zoo):
    d = tmp_path / "ck"
    save_checkpoint(d, trained_net(), meta())
    data = json.loads((d / META_FILE).read_text())
    data["options"] = {"width": 5}  # the stored tensors are width 6
    (d / META_FILE).write_text(json.dumps(data))
    with pytest.raises(UserError) as err:
        load_checkpoint(d)
    msg = str(err.value)
    assert WEIGHTS_FILE in msg and "shape" in msg and "options" in msg


def test_unknown_arch_and_bad_options(tmp_path, zoo):
    d = tmp_path / "ck"
    save_checkpoint(d, trained_net(), meta(arch="resnet9000"))
    with pytest.raises(UserError, match="resnet9000"):
        load_checkpoint(d)
    save_checkpoint(d, trained_net(), meta(options={"wdith": 6}))
    with pytest.raises(UserError, match="options"):
        load_checkpoint(d)


def test_not_a_checkpoint_file(tmp_path, zoo):
    f = tmp_path / "model.pth"
    torch.save(trained_net().state_dict(), f)
    with pytest.raises(UserError, match="not a mobile-compress checkpoint"):
        load_checkpoint(f)


def test_truncated_weights(tmp_path, zoo):
    d = tmp_path / "ck"
    save_checkpoint(d, trained_net(), meta())
    data = (d / WEIGHTS_FILE).read_bytes()
    (d / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=WEIGHTS_FILE):
        load_checkpoint(d)


# ---------------------------------------------------------------------- resume


class NoisyImages(Dataset):
    """Synthetic images with random augmentation noise (uses the global RNG, as real transforms do)."""

    def __init__(self, n=96, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 3, (n,), generator=g)
        self.x = torch.randn(n, 3, 8, 8, generator=g) + self.labels.view(-1, 1, 1, 1).float()
        self.classes = ["a", "b", "c"]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn(3, 8, 8), int(self.labels[i])


class Stateful(Hook):
    """Counts steps and owns a trainable tensor: both must survive a resume."""

    def __init__(self):
        self.steps = 0
        self.scale = nn.Parameter(torch.ones(()))

    def extra_parameters(self):
        return [self.scale]

    def loss(self, trainer, inputs, targets, outputs, loss):
        return loss * self.scale + 0.1 * (self.scale - 2) ** 2

    def on_step_end(self, trainer):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps, "scale": self.scale.detach().clone()}

    def load_state_dict(self, state):
        self.steps = state["steps"]
        with torch.no_grad():
            self.scale.copy_(state["scale"])


def _run(out, epochs=2, init_seed=0, resume=False, **kw):
    torch.manual_seed(init_seed)
    net = TinyNet(num_classes=3, width=6, dropout=0.3)
    hook = Stateful()
    config = TrainConfig(epochs=epochs, batch_size=16, lr=0.05, warmup_epochs=0.5, device="cpu", progress=False,
                         seed=5, num_workers=0, **kw)
    trainer = Trainer(net, config, NoisyImages(), NoisyImages(40, seed=1), hooks=[hook], out_dir=out,
                      meta=meta(options={"width": 6, "dropout": 0.3}, labels=[]), log=lambda s: None)
    return net, hook, trainer.fit(resume=resume)


def test_resume_reaches_the_same_weights(tmp_path, zoo):
    straight, hook_a, res_a = _run(tmp_path / "a")
    # one epoch (the time budget stops it), then a fresh process-like start resumes for the second
    _, _, first = _run(tmp_path / "b", max_minutes=1e-6)
    assert first.stopped_early and len(first.epochs) == 1
    resumed, hook_b, res_b = _run(tmp_path / "b", init_seed=99, resume=True)  # other init: weights come from disk
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6, rtol=0), k
    assert hook_b.steps == hook_a.steps == 12
    assert torch.allclose(hook_a.scale, hook_b.scale, atol=1e-6)
    assert [s.train_loss for s in res_b.epochs] == pytest.approx([s.train_loss for s in res_a.epochs], abs=1e-6)
    assert res_b.best_val_top1 == res_a.best_val_top1 and not res_b.stopped_early
    # what was written: checkpoints, history, and a train state readable without unpickling code
    for d in ("a", "b"):
        run = tmp_path / d
        assert sorted(os.listdir(run)) == ["best", "history.jsonl", "last", "train_state.pt"]
        assert len((run / "history.jsonl").read_text().splitlines()) == 2
        state = torch.load(run / "train_state.pt", weights_only=True)
        assert state["next_epoch"] == 2 and state["hooks"][0]["state"]["steps"] == 12
        assert set(state["rng"]) >= {"torch", "numpy", "python"}
    model, m = load_checkpoint(tmp_path / "b" / "last")
    assert m.labels == ["a", "b", "c"]  # taken from the dataset
    assert m.metrics["epoch"] == 1 and m.metrics["val_top1"] == res_b.epochs[-1].val_top1
    for a, b in zip(straight.state_dict().values(), model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6, rtol=0)
    best_meta = read_meta(tmp_path / "a" / "best")
    assert best_meta.metrics["val_top1"] == res_a.best_val_top1


def test_resume_errors(tmp_path):
    net = TinyNet(num_classes=3)
    config = TrainConfig(epochs=2, batch_size=16, device="cpu", progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        Trainer(net, config, NoisyImages(32), out_dir=tmp_path / "x", log=lambda s: None).fit(resume=True)
    with pytest.raises(UserError, match="output directory"):
        Trainer(net, config, NoisyImages(32), log=lambda s: None).fit(resume=True)
    Trainer(net, TrainConfig(epochs=2, batch_size=16, device="cpu", progress=False, max_minutes=1e-6),
            NoisyImages(32), out_dir=tmp_path / "y", log=lambda s: None).fit()
    with pytest.raises(UserError, match="hooks"):
        Trainer(net, config, NoisyImages(32), hooks=[Stateful()], out_dir=tmp_path / "y",
                log=lambda s: None).fit(resume=True)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from mobile_compress.training import Hook, TrainConfig, Trainer

    out, mode = sys.argv[1], sys.argv[2]

    class Pause(Hook):
        def on_epoch_start(self, trainer, epoch):
            if mode == "slow" and epoch >= 1:
                print("PAUSED", flush=True)
                time.sleep(120)

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (120,), generator=g)
    x = torch.randn(120, 6, generator=g) + y[:, None].float()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 3))
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, device="cpu", progress=False, seed=7)
    result = Trainer(model, config, TensorDataset(x, y), TensorDataset(x[:40], y[:40]), hooks=[Pause()],
                     out_dir=out).fit(resume=mode == "resume")
    print("DONE", len(result.epochs), flush=True)
""")


def test_resume_after_kill_9(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(run), "slow"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (run / "train_state.pt").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no train state written"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert state["next_epoch"] == 1

    resumed = subprocess.run([sys.executable, str(script), str(run), "resume"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming" in resumed.stdout and "DONE 3" in resumed.stdout
    assert not any(line.startswith("epoch 1/3") for line in resumed.stdout.splitlines())  # not redone
    assert len((run / "history.jsonl").read_text().splitlines()) == 3

    straight = subprocess.run([sys.executable, str(script), str(tmp_path / "straight"), "fresh"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert straight.returncode == 0, straight.stdout + straight.stderr
    a = torch.load(tmp_path / "straight" / "last" / WEIGHTS_FILE, weights_only=True)
    b = torch.load(run / "last" / WEIGHTS_FILE, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6, rtol=0), k


def test_round_trip_with_the_real_zoo(tmp_path):
    models = pytest.importorskip("models")
    if not hasattr(models, "create"):
        pytest.skip("model zoo not available yet")
    net = models.create("mobilenet_v2", num_classes=5, small_input=True, width_mult=0.25)
    m = CheckpointMeta(arch="mobilenet_v2", options={"small_input": True, "width_mult": 0.25}, num_classes=5,
                       input_size=32, labels=list("abcde"))
    save_checkpoint(tmp_path / "ck", net, m)
    loaded, meta2 = load_checkpoint(tmp_path / "ck")
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    data = json.loads((tmp_path / "ck" / META_FILE).read_text())
    data["arch"] = "mobilenet_v9"
    (tmp_path / "ck" / META_FILE).write_text(json.dumps(data))
    with pytest.raises(UserError, match="'arch'"):
        load_checkpoint(tmp_path / "ck")
    data["arch"], data["options"] = "mobilenet_v2", {"small_input": True, "width_mult": 0.5}
    (tmp_path / "ck" / META_FILE).write_text(json.dumps(data))
    with pytest.raises(UserError, match="does not match"):
        load_checkpoint(tmp_path / "ck")


def test_resume_of_a_finished_run_trains_nothing(tmp_path, zoo):
    _, _, done = _run(tmp_path / "a", epochs=1)
    net, hook, again = _run(tmp_path / "a", epochs=1, init_seed=42, resume=True)
    assert hook.steps == 6  # restored count, no new step
    assert [s.train_loss for s in again.epochs] == [s.train_loss for s in done.epochs] and not again.stopped_early
    saved = torch.load(tmp_path / "a" / "last" / WEIGHTS_FILE, weights_only=True)
    for k, v in net.state_dict().items():
        assert torch.equal(v, saved[k]), k  # the model got the trained weights back


def test_resume_with_augmenting_image_data_reaches_the_same_weights(tmp_path, zoo):
    """Random crops and flips of a real ImageDataset repeat after a resume (num_workers=0)."""
    from mobile_compress.data import open_dataset

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (48, 12, 12, 3), dtype=np.uint8), y=np.arange(48) % 3)

    def run(out, resume=False, **kw):
        torch.manual_seed(0)
        net = TinyNet(num_classes=3, width=6)
        data = open_dataset(str(tmp_path / "d.npz"), split="all", image_size=8, train=True, storage_size=12)
        config = TrainConfig(epochs=2, batch_size=16, lr=0.05, device="cpu", progress=False, seed=5, num_workers=0, **kw)
        Trainer(net, config, data, out_dir=out, meta=meta(options={"width": 6}, labels=[]), log=lambda s: None).fit(resume=resume)
        return net

    straight = run(tmp_path / "a")
    run(tmp_path / "b", max_minutes=1e-6)
    resumed = run(tmp_path / "b", resume=True)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6, rtol=0), k


def test_unknown_transform_kind_names_the_field(tmp_path, zoo):
    save_checkpoint(tmp_path / "ck", trained_net(), meta())
    path = tmp_path / "ck" / META_FILE
    data = json.loads(path.read_text())
    data["transforms"] = [{"kind": "origami"}]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"transforms\[0\]\.kind"):
        load_checkpoint(tmp_path / "ck")
