"""One rule for every command that writes a run folder: an --out that holds anything is refused
unless --resume continues that run or --overwrite replaces it (and says so); never a silent merge."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobile_compress.errors import UserError
from test_cli import FAST, make_folder, run_cli

# Each command that writes a run folder, with arguments that get it as far as its --out; and whether it resumes.
COMMANDS = {
    "train": (["train", "--model", "resnet20", "--data", "builtin"], True),
    "distill": (["distill", "--teacher", "t/best", "--student", "resnet20", "--data", "builtin"], True),
    "prune": (["prune", "ck/best", "--target", "macs=0.5"], True),
    "quantize": (["quantize", "ck/best"], True),
    "factorize": (["factorize", "ck/best", "--energy", "0.9"], True),
    "convert": (["convert", "ck/best"], False),
    "export-app": (["export-app", "ck/best"], False),
    "profile": (["profile", str(Path(__file__).parent / "fixtures" / "tiny.tflite"), "--host"], True),
}


def used_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    (out / "best").mkdir(parents=True)
    (out / "best" / "weights.pt").write_bytes(b"earlier weights")
    (out / "earlier.txt").write_text("keep me")
    return out


def untouched(out: Path) -> bool:
    return (sorted(p.name for p in out.iterdir()) == ["best", "earlier.txt"]
            and (out / "best" / "weights.pt").read_bytes() == b"earlier weights")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_out_that_holds_results(capsys, tmp_path, monkeypatch, command) -> None:
    monkeypatch.chdir(tmp_path)
    argv, resumable = COMMANDS[command]
    out = used_folder(tmp_path)
    code, _, err = run_cli(capsys, *argv, "--out", str(out))
    assert code == 2, err
    assert f"{out} already holds results: best/, earlier.txt" in err and "Traceback" not in err
    assert "--overwrite" in err and ("--resume" in err) == resumable
    assert untouched(out)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_checks_overwrite_before_deleting(capsys, tmp_path, monkeypatch, command) -> None:
    monkeypatch.chdir(tmp_path)
    argv, resumable = COMMANDS[command]
    out = used_folder(tmp_path)
    if resumable:
        code, _, err = run_cli(capsys, *argv, "--out", str(out), "--overwrite", "--resume")
        assert code == 2 and "contradict" in err and untouched(out)
    missing = {"train": [*argv, "--init", "nope.pth"], "profile": ["profile", "nope.tflite", "--host"]}.get(command, argv)
    code, _, err = run_cli(capsys, *missing, "--out", str(out), "--overwrite")  # an input is missing: fails first
    assert code == 2 and "does not exist" in err and "deleted the earlier" not in err and untouched(out)


def test_train_over_an_existing_run_is_refused_then_resumed_or_replaced(capsys, tmp_path) -> None:
    data = make_folder(tmp_path / "imgs")
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "resnet20", "--data", str(data), "--out", str(run), *FAST)
    assert code == 0, err
    kept = {p: p.read_bytes() for p in (run / "best" / "weights.pt", run / "last" / "weights.pt", run / "train_state.pt",
                                       run / "history.jsonl")}

    code, _, err = run_cli(capsys, "train", "--model", "resnet20", "--data", str(data), "--out", str(run), *FAST)
    assert code == 2
    assert "already holds results: best/, history.jsonl, last/, train_state.pt" in err
    assert "--resume" in err and "--overwrite" in err
    assert all(p.read_bytes() == b for p, b in kept.items())  # nothing of the first run was deleted

    code, out, err = run_cli(capsys, "train", "--model", "resnet20", "--data", str(data), "--out", str(run), *FAST,
                             "--resume")
    assert code == 0, err  # the finished run is continued: nothing left to train, nothing replaced
    assert all(p.read_bytes() == b for p, b in kept.items())

    (run / "notes.txt").write_text("from the earlier run")
    code, out, err = run_cli(capsys, "train", "--model", "resnet20", "--data", str(data), "--out", str(run), *FAST,
                             "--seed", "3", "--overwrite")
    assert code == 0, err
    assert f"deleted the earlier results in {run}" in err
    assert sorted(p.name for p in run.iterdir()) == ["best", "history.jsonl", "last", "train_state.pt"]  # replaced
    assert len((run / "history.jsonl").read_text().splitlines()) == 1
    assert (run / "train_state.pt").read_bytes() != kept[run / "train_state.pt"]


def test_an_empty_or_new_folder_is_used_as_is(tmp_path) -> None:
    from mobile_compress.run_folder import claim_out_dir

    (tmp_path / "empty").mkdir()
    assert claim_out_dir(tmp_path / "empty") == tmp_path / "empty"
    assert claim_out_dir(tmp_path / "new") == tmp_path / "new" and not (tmp_path / "new").exists()
    with pytest.raises(UserError, match="nothing to resume"):
        claim_out_dir(tmp_path / "empty", resume=True)
    with pytest.raises(UserError, match="is a file"):
        (tmp_path / "file").write_text("x")
        claim_out_dir(tmp_path / "file")


def test_overwrite_never_empties_an_input_the_working_folder_or_home(tmp_path, monkeypatch) -> None:
    from mobile_compress.run_folder import claim_out_dir

    out = used_folder(tmp_path)
    with pytest.raises(UserError, match="which this command reads"):
        claim_out_dir(out, overwrite=True, inputs=["builtin", None, out / "best"])
    with pytest.raises(UserError, match="which this command reads"):
        claim_out_dir(out / "best", overwrite=True, inputs=[out / "best" / "weights.pt"])
    assert untouched(out)
    monkeypatch.chdir(out / "best")
    with pytest.raises(UserError, match="current folder"):
        claim_out_dir("..", overwrite=True)
    monkeypatch.setenv("HOME", str(out))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="your home"):
        claim_out_dir("~", overwrite=True)
    assert untouched(out)


def test_overwrite_deletes_links_not_what_they_point_to(tmp_path) -> None:
    from mobile_compress.run_folder import claim_out_dir

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("mine")
    out = used_folder(tmp_path)
    (out / "link").symlink_to(precious, target_is_directory=True)
    claim_out_dir(out, overwrite=True)
    assert list(out.iterdir()) == [] and (precious / "data.txt").read_text() == "mine"


def test_only_rank_0_decides_under_torchrun(tmp_path, monkeypatch) -> None:
    from mobile_compress.run_folder import claim_out_dir

    out = used_folder(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert claim_out_dir(out, overwrite=True) == out and untouched(out)  # rank 1 leaves it to rank 0
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UserError, match="already holds"):
        claim_out_dir(out)


def test_profile_resume_keeps_runs_and_report_json_stays_valid(capsys, tmp_path) -> None:
    tiny = Path(__file__).parent / "fixtures" / "tiny.tflite"
    out = tmp_path / "p"
    argv = ["profile", str(tiny), "--host", "--threads", "1", "--runs", "2", "--out", str(out)]
    assert run_cli(capsys, *argv)[0] == 0
    first = json.loads((out / "profile.json").read_text())["runs"]
    code, _, err = run_cli(capsys, *argv, "--resume")
    assert code == 0 and "already recorded" in err
    assert json.loads((out / "profile.json").read_text())["runs"] == first
