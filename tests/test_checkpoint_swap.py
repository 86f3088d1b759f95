"""A checkpoint save killed at any point of its folder swap loses nothing and leaves no hidden folders.

The swap: write ``.NAME.tmp-PID-X``, rename NAME aside to ``.NAME.old-PID-X``, rename the new
one to NAME, delete the old one. Each kill point is built on disk by hand (with the PID of a
process that has ended) or made by a real process that dies inside ``os.rename``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mobile_compress.errors import UserError
from mobile_compress.training import load_checkpoint, read_meta, save_checkpoint
from mobile_compress.training.checkpoint import META_FILE, WEIGHTS_FILE
from test_checkpoint import meta, trained_net, zoo  # noqa: F401 - the stand-in zoo fixture

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The PID of a process that has exited (a killed writer)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def version(ck: Path) -> int:
    return read_meta(ck).metrics["v"]


def two_saves(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``ck`` (v1), and a complete v2 written next to it as a separate folder to move about."""
    ck = save_checkpoint(tmp_path / "ck", trained_net(1), meta(metrics={"v": 1}))
    new = save_checkpoint(tmp_path / "v2", trained_net(2), meta(metrics={"v": 2}))
    os.utime(new / META_FILE, ns=(ck.stat().st_mtime_ns + 10**9,) * 2)  # written after v1, whatever the clock
    return tmp_path, ck, new


def test_killed_while_writing_the_new_folder(tmp_path, zoo, dead_pid):
    folder, ck, new = two_saves(tmp_path)
    (new / META_FILE).unlink()  # weights written, checkpoint.json not yet
    new.rename(folder / f".ck.tmp-{dead_pid}-abcd1234")
    _, m = load_checkpoint(ck)
    assert m.metrics["v"] == 1 and hidden(folder) == []


def test_killed_after_the_new_folder_is_complete_but_before_the_swap(tmp_path, zoo, dead_pid):
    folder, ck, new = two_saves(tmp_path)
    new.rename(folder / f".ck.tmp-{dead_pid}-abcd1234")
    _, m = load_checkpoint(ck)  # the save never took place: ck is what the last finished save left
    assert m.metrics["v"] == 1 and hidden(folder) == []


def test_killed_between_the_two_renames_loads_the_newest_complete(tmp_path, zoo, dead_pid):
    folder, ck, new = two_saves(tmp_path)
    ck.rename(folder / f".ck.old-{dead_pid}-0000aaaa")
    new.rename(folder / f".ck.tmp-{dead_pid}-abcd1234")
    assert not ck.exists()
    _, m = load_checkpoint(ck)
    assert m.metrics["v"] == 2 and hidden(folder) == [] and sorted(os.listdir(ck)) == [META_FILE, WEIGHTS_FILE]


def test_killed_between_the_renames_with_only_the_old_copy_complete(tmp_path, zoo, dead_pid):
    folder, ck, new = two_saves(tmp_path)
    ck.rename(folder / f".ck.old-{dead_pid}-0000aaaa")
    (new / META_FILE).unlink()
    new.rename(folder / f".ck.tmp-{dead_pid}-abcd1234")
    assert version(ck) == 1 and hidden(folder) == []  # read_meta recovers too


def test_killed_after_the_swap_before_the_old_copy_is_deleted(tmp_path, zoo, dead_pid):
    folder, ck, new = two_saves(tmp_path)
    ck.rename(folder / f".ck.old-{dead_pid}-0000aaaa")
    new.rename(ck)
    (folder / f".ck.old-{dead_pid}-0000aaaa" / WEIGHTS_FILE).unlink()  # half deleted
    _, m = load_checkpoint(ck / WEIGHTS_FILE)  # the path of a file in the checkpoint recovers the same way
    assert m.metrics["v"] == 2 and hidden(folder) == []


def test_the_next_save_cleans_up_and_replaces(tmp_path, zoo, dead_pid):
    folder, ck, new = two_saves(tmp_path)
    ck.rename(folder / f".ck.old-{dead_pid}-0000aaaa")
    new.rename(folder / f".ck.tmp-{dead_pid}-abcd1234")
    (folder / ".ck.tmp-legacyx1").mkdir()  # a name from before the PID was part of it
    save_checkpoint(ck, trained_net(3), meta(metrics={"v": 3}))
    assert version(ck) == 3 and hidden(folder) == []


def test_a_save_in_progress_in_another_process_is_left_alone(tmp_path, zoo):
    folder, ck, new = two_saves(tmp_path)
    (new / META_FILE).unlink()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = folder / f".ck.tmp-{sleeper.pid}-abcd1234"
        new.rename(busy)
        assert version(ck) == 1 and busy.is_dir()  # a reader does not delete a live writer's folder
    finally:
        sleeper.kill()
        sleeper.wait()
    assert version(ck) == 1 and hidden(folder) == []


def test_an_incomplete_folder_and_other_folders_names_are_left_alone(tmp_path, zoo, dead_pid):
    folder, ck, new = two_saves(tmp_path)
    (ck / META_FILE).unlink()  # not a state a swap leaves: nothing is judged, nothing deleted
    new.rename(folder / f".ck.tmp-{dead_pid}-abcd1234")
    (folder / f".ck.tmp-x.tmp-{dead_pid}-abcd1234").mkdir()  # a leftover of a folder named "ck.tmp-x"
    with pytest.raises(UserError, match="missing"):
        load_checkpoint(ck)
    assert hidden(folder) == [f".ck.tmp-{dead_pid}-abcd1234", f".ck.tmp-x.tmp-{dead_pid}-abcd1234"]


def test_a_failed_rename_puts_the_old_checkpoint_back(tmp_path, zoo, monkeypatch):
    ck = save_checkpoint(tmp_path / "ck", trained_net(1), meta(metrics={"v": 1}))
    real = os.rename

    def second_fails(src, dst):
        if Path(dst) == ck:
            raise OSError("simulated failure between the two renames")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", second_fails)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(ck, trained_net(2), meta(metrics={"v": 2}))
    monkeypatch.undo()
    assert version(ck) == 1 and hidden(tmp_path) == []


# ---------------------------------------------------------------- real kills, inside os.rename

SAVE_AND_DIE = textwrap.dedent("""
    import os, sys
    import torch
    from torch import nn
    from mobile_compress.training import CheckpointMeta, TrainConfig, Trainer, save_checkpoint
    from torch.utils.data import TensorDataset

    out, mode = sys.argv[1], sys.argv[2]
    real = os.rename

    def rename(src, dst):
        real(src, dst)
        if ".old-" in os.path.basename(str(dst)):  # the old one is aside, the new one not yet in place
            os._exit(9)

    def run(resume):
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 3, (96,), generator=g)
        x = torch.randn(96, 6, generator=g) + y[:, None].float()
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
        config = TrainConfig(epochs=3, batch_size=16, lr=0.05, device="cpu", progress=False, seed=7)
        return Trainer(model, config, TensorDataset(x, y), TensorDataset(x[:32], y[:32]), out_dir=out).fit(resume)

    if mode == "save":
        save_checkpoint(out, nn.Linear(2, 3), CheckpointMeta(arch="tinynet", num_classes=3, input_size=8,
                                                              metrics={"v": 1}))
        os.rename = rename
        save_checkpoint(out, nn.Linear(2, 3), CheckpointMeta(arch="tinynet", num_classes=3, input_size=8,
                                                              metrics={"v": 2}))
    elif mode == "train":
        os.rename = rename
        run(False)
    else:
        print("DONE", len(run(True).epochs), flush=True)
""")


def _script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "die.py"
    script.write_text(SAVE_AND_DIE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)


def test_a_process_killed_between_the_renames_leaves_a_loadable_checkpoint(tmp_path, zoo):
    ck = tmp_path / "ck"
    died = _script(tmp_path, str(ck), "save")
    assert died.returncode == 9, died.stderr
    assert not ck.exists() and len(hidden(tmp_path)) == 2  # what the kill leaves: the old aside, the new unplaced
    assert version(ck) == 2 and hidden(tmp_path) == []


def test_resume_after_a_kill_between_the_renames_of_last(tmp_path):
    run = tmp_path / "run"
    died = _script(tmp_path, str(run), "train")
    assert died.returncode == 9, died.stderr
    assert not (run / "last").exists() and hidden(run)  # killed while saving epoch 2's last/
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert state["next_epoch"] == 1
    resumed = _script(tmp_path, str(run), "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "DONE 3" in resumed.stdout
    assert hidden(run) == [] and sorted(os.listdir(run)) == ["best", "history.jsonl", "last", "train_state.pt"]
    assert read_meta(run / "last").metrics["epoch"] == 2
