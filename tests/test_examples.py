"""Examples ship inside the package: listed, printed and copied out by `mobile-compress examples`, run and
deployed by name from any folder, and present in a built wheel."""
from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import models
from workflows.cli import cmd_examples, cmd_run, main
from mobile_compress.errors import UserError
from workflows import examples
from workflows.deploy import run as deploy
from workflows.deploy import device_choice
from workflows.recipes import recipe
from workflows.examples import Kind, all_examples, find_example
from mobile_compress.training.checkpoint import CheckpointMeta, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "workflows" / "examples"
SHIPPED = sorted(PACKAGE_DIR.glob("*/*.yaml"))


def test_the_examples_live_in_the_package_only() -> None:
    assert {p.stem for p in SHIPPED} >= {"digits_full_chain", "cifar10_distill_qat_convert",
                                        "cifar10_prune_finetune_convert"}
    assert not (REPO / "examples").exists(), "one copy of the examples: inside the package"
    assert [e.location.resolve() for e in all_examples()] == sorted(p.resolve() for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_each_example_opens_with_a_one_line_description(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and 20 <= len(first) <= 100, first
    assert find_example(path.stem).description == first[2:]
    assert f"mobile-compress run {path.stem}" in path.read_text(), "the header shows how to run it by name"


def test_listing_shows_name_kind_and_description(capsys) -> None:
    assert main(["examples"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("name"))
    assert header.split() == ["name", "kind", "description"]
    for path in SHIPPED:
        row = next(line for line in out.splitlines() if line.startswith(path.stem + " "))
        assert row.split()[1] == "recipe" and row.endswith(find_example(path.stem).description)
    assert "mobile-compress examples NAME --to DIR" in out and "mobile-compress run NAME" in out

    assert main(["examples", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in listed] == [p.stem for p in SHIPPED]
    assert {e["kind"] for e in listed} == {"recipe"}
    assert all(Path(e["file"]).read_text() and e["description"] for e in listed)


def test_a_name_alone_prints_the_example(capsys) -> None:
    assert main(["examples", "digits_full_chain"]) == 0
    assert capsys.readouterr().out == (PACKAGE_DIR / "recipes" / "digits_full_chain.yaml").read_text()
    assert main(["examples", "digits_full_chain", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kind"] == "recipe" and shown["text"] == find_example("digits_full_chain").text()


def test_copy_out_then_run_the_copy(tmp_path, capsys) -> None:
    to = tmp_path / "mine" / "recipes"  # created if missing
    assert main(["examples", "digits_full_chain", "--to", str(to)]) == 0
    out = capsys.readouterr().out
    copy = to / "digits_full_chain.yaml"
    assert copy.read_text() == (PACKAGE_DIR / "recipes" / "digits_full_chain.yaml").read_text()
    assert str(copy) in out and f"mobile-compress run {copy}" in out  # the path and the next command

    assert main(["run", str(copy), "--check"]) == 0
    assert "valid, 8 stage(s): train -> distill" in capsys.readouterr().out


def test_copy_refuses_to_overwrite_unless_told(tmp_path, capsys) -> None:
    mine = tmp_path / "digits_full_chain.yaml"
    mine.write_text("# my edits\n")
    assert main(["examples", "digits_full_chain", "--to", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{mine} already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert mine.read_text() == "# my edits\n"

    assert main(["examples", "digits_full_chain", "--to", str(tmp_path), "--overwrite", "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert reported["file"] == str(mine) and reported["next"] == f"mobile-compress run {mine}"
    assert mine.read_text() == (PACKAGE_DIR / "recipes" / "digits_full_chain.yaml").read_text()

    (tmp_path / "file").write_text("x")
    assert main(["examples", "digits_full_chain", "--to", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_an_unknown_name_lists_the_names_and_suggests_the_closest(tmp_path, monkeypatch, capsys) -> None:
    assert main(["examples", "digits_ful_chain"]) == 2
    err = capsys.readouterr().err
    assert "no example is named 'digits_ful_chain'" in err and "did you mean 'digits_full_chain'?" in err
    assert all(p.stem in err for p in SHIPPED) and "Traceback" not in err

    monkeypatch.chdir(tmp_path)
    for command in ("run", "deploy"):
        assert main([command, "digits_ful_chain", "--host" if command == "deploy" else "--check"]) == 2
        err = capsys.readouterr().err
        assert "recipe digits_ful_chain does not exist, and no example recipe has that name" in err
        assert "did you mean 'digits_full_chain'?" in err
    # the old repository path of an example points at its name
    assert main(["run", "examples/recipes/digits_full_chain.yaml", "--check"]) == 2
    assert "did you mean 'digits_full_chain'?" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- run and deploy by name


def test_run_by_name_from_any_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "digits_full_chain", "--check"]) == 0
    assert "digits_full_chain: valid, 8 stage(s): train -> distill -> prune" in capsys.readouterr().out

    seen = {}

    def fake_run(recipe, run_dir, **kwargs):
        seen.update(recipe=recipe, run_dir=run_dir)
        raise UserError("stopped by the test")

    monkeypatch.setattr(cmd_run, "run_recipe", fake_run)
    assert main(["run", "digits_full_chain"]) == 2
    assert seen["recipe"].name == "digits-chain" and seen["recipe"].data == "builtin"
    assert seen["recipe"].path.resolve() == (PACKAGE_DIR / "recipes" / "digits_full_chain.yaml").resolve()
    assert seen["run_dir"] == Path("runs") / "digits-chain", "the run folder default is runs/<recipe name>"


def test_a_file_of_that_path_wins_over_an_example(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Path("digits_full_chain").write_text(yaml.safe_dump(
        {"data": "builtin", "stages": [{"train": {"model": "resnet20"}}]}))
    assert main(["run", "digits_full_chain", "--check"]) == 0
    assert "valid, 1 stage(s): train" in capsys.readouterr().out


def test_deploy_by_name(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    looked = []
    monkeypatch.setattr(device_choice, "list_devices", lambda kind: looked.append(kind) or [])
    assert main(["deploy", "digits_full_chain"]) == 2  # the recipe is found and checked, then the phone looked for
    assert "--device auto: no Android device is attached" in capsys.readouterr().err and looked

    seen = {}

    def fake_run(recipe, run_dir, **kwargs):
        seen.update(recipe=recipe, run_dir=run_dir)
        raise UserError("stopped by the test")

    monkeypatch.setattr(deploy, "run_recipe", fake_run)
    assert main(["deploy", "digits_full_chain", "--host"]) == 2
    assert seen["recipe"].name == "digits-chain" and seen["run_dir"] == Path("runs") / "digits-chain"


def _checkpoint(folder: Path, arch: str, **options) -> None:
    model = models.create(arch, num_classes=10, **options)
    save_checkpoint(folder, model, CheckpointMeta(arch=arch, num_classes=10, input_size=32, options=options))


def test_cifar10_examples_read_their_files_from_home_and_name_what_is_missing(tmp_path, monkeypatch, capsys) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    cache = home / ".cache" / "mobile-compress"
    assert main(["run", "cifar10_distill_qat_convert", "--check"]) == 2
    err = capsys.readouterr().err
    assert f"cifar10_distill_qat_convert.yaml: data: '~/.cache/mobile-compress/datasets/cifar10' does not exist " \
           f"(looked for {cache / 'datasets' / 'cifar10'})" in err
    assert "mobile-compress examples cifar10_distill_qat_convert --to ." in err and "Traceback" not in err

    (cache / "datasets" / "cifar10").mkdir(parents=True)
    assert main(["run", "cifar10_distill_qat_convert", "--check"]) == 2
    assert "stages[0].distill.teacher" in (err := capsys.readouterr().err) and "resnet56/best" in err

    trained = cache / "benchmarks" / "train_cifar10"
    _checkpoint(trained / "resnet56" / "best", "resnet56")
    _checkpoint(trained / "mobilenet_v2" / "best", "mobilenet_v2", small_input=True)
    assert main(["run", "cifar10_distill_qat_convert", "--check"]) == 0
    assert main(["run", "cifar10_prune_finetune_convert", "--check"]) == 0
    assert "valid, 2 stage(s): prune -> convert" in capsys.readouterr().out
    assert not (work / "runs").exists()


def _fake_package(root: Path) -> Path:
    (root / "recipes").mkdir(parents=True)
    (root / "recipes" / "local_data.yaml").write_text(
        "# Reads d.npz from the folder it runs in.\ndata: d.npz\nstages:\n  - train: {model: resnet20}\n")
    (root / "search").mkdir()
    (root / "search" / "widths.yaml").write_text("# Widths of MobileNetV2 to try.\nspace: {width_mult: [0.5, 1]}\n")
    (root / "search" / "notes.txt").write_text("not an example")
    return root


def test_relative_paths_of_an_example_start_from_the_current_folder(tmp_path, monkeypatch, capsys) -> None:
    root = _fake_package(tmp_path / "package")
    monkeypatch.setattr(recipe, "all_examples", lambda: all_examples(root))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", "local_data", "--check"]) == 2
    assert f"'d.npz' does not exist (looked for {work / 'd.npz'})" in capsys.readouterr().err
    (work / "d.npz").write_bytes(b"")
    assert recipe.load_recipe("local_data").data == str(work / "d.npz")


def test_another_kind_of_example_is_listed_and_copied_by_the_same_command(tmp_path, monkeypatch, capsys) -> None:
    """Search spaces (a later issue) are one more Kind and a folder; the command does not change."""
    root = _fake_package(tmp_path / "package")
    kinds = examples.KINDS + (Kind("search space", "search", ("search",)),)
    monkeypatch.setattr(examples, "KINDS", kinds)
    monkeypatch.setattr(cmd_examples, "all_examples", lambda: all_examples(root))
    monkeypatch.setattr(recipe, "all_examples", lambda: all_examples(root))
    assert main(["examples"]) == 0
    out = capsys.readouterr().out
    assert "search space  Widths of MobileNetV2 to try." in out and "notes" not in out
    assert "mobile-compress search NAME" in out
    assert main(["examples", "widths", "--to", str(tmp_path / "out")]) == 0
    assert f"mobile-compress search {tmp_path / 'out' / 'widths.yaml'}" in capsys.readouterr().out
    assert main(["run", "widths", "--check"]) == 2
    assert "widths is a search space example, not a recipe" in capsys.readouterr().err


def test_two_examples_may_not_share_a_name(tmp_path) -> None:
    root = _fake_package(tmp_path)
    (root / "search" / "local_data.yaml").write_text("# Same name.\n")
    with pytest.raises(ValueError, match="two examples are named 'local_data'"):
        all_examples(root, examples.KINDS + (Kind("search", "search", ("search",)),))


# ----------------------------------------------------------------------------- packaging


def test_a_built_wheel_ships_the_examples_and_the_installed_package_finds_them(tmp_path) -> None:
    """What a user who pip-installed the package has: the wheel built from this source, used outside the repo."""
    source = tmp_path / "source"  # what the build reads: setup.cfg, pyproject.toml, README.md and the packages
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    packages = {name.split(".")[0] for name in config["options.packages.find"]["include"].split()}
    for name in sorted(packages):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "wheels"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "absent from the `packages` configuration" not in build.stdout + build.stderr
    wheel = next((tmp_path / "wheels").glob("mobile_compress-*.whl"))
    inside = set(zipfile.ZipFile(wheel).namelist())
    for path in SHIPPED:
        assert path.relative_to(REPO).as_posix() in inside

    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target",
                              str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = ("import sys; from workflows.cli import main; "
              "sys.exit(main(['examples', '--json']) or main(['run', 'digits_full_chain', '--check']))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    used = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)
    assert used.returncode == 0, used.stdout + used.stderr
    listing, check = used.stdout.split("]\n", 1)
    listed = json.loads(listing + "]")
    assert [e["name"] for e in listed] == [p.stem for p in SHIPPED]
    assert all(Path(e["file"]).resolve().is_relative_to(site.resolve()) for e in listed), "read from the install"
    assert "digits_full_chain: valid, 8 stage(s)" in check
