"""The `mobile-compress` command line, driven as a user drives it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workflows.cli import main

VENV_BIN = Path(sys.executable).parent
FAST = ["--epochs", "1", "--batch-size", "32", "--no-progress", "--workers", "0"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 12, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8) + np.uint8(150 * label)
                Image.fromarray(pixels).save(d / f"{i}.png" if i % 2 else d / f"{i}.jpg")
    return root


def test_models_lists_the_zoo_with_counts(capsys) -> None:
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"mobilenet_v2", "shufflenet_v2_x1_0", "squeezenet1_1", "resnet56", "resnet50"} <= set(rows)
    assert rows["mobilenet_v2"]["params"] == 3_504_872
    assert abs(rows["mobilenet_v2"]["macs"] / 300.8e6 - 1) < 0.01
    assert rows["mobilenet_v2"]["small_input_macs"] > 0
    code, out, _ = run_cli(capsys, "models")
    assert "mobilenet_v2" in out and "3.50 M" in out


def test_unknown_model_suggests_the_closest_names(capsys) -> None:
    code, _, err = run_cli(capsys, "info", "mobilenetv2")
    assert code == 2
    assert "mobilenet_v2" in err and "Traceback" not in err


def test_info_on_a_missing_checkpoint_names_the_path(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "info", str(tmp_path / "runs" / "best"))
    assert code == 2 and "runs/best" in err and "unknown model" not in err


def test_error_messages_show_control_characters_from_paths_escaped(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "info", str(tmp_path / "evil\x1b[31mred\x1b[0m" / "best"))
    assert code == 2 and "Traceback" not in err
    assert "\x1b" not in err  # the terminal is not recoloured by a file name
    assert "evil\\x1b[31mred\\x1b[0m" in err and err.startswith("mobile-compress: error:")


def test_failed_bars_and_warnings_show_control_characters_escaped(capsys) -> None:
    from workflows.cli.common import print_problem

    print_problem("convert", "int8: model\x1b]0;pwned\x07 from a device: agreement 90% is below 98%")
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert err == "mobile-compress: convert: int8: model\\x1b]0;pwned\\x07 from a device: agreement 90% is below 98%\n"


def test_info_on_a_zoo_model(capsys) -> None:
    code, out, _ = run_cli(capsys, "info", "squeezenet1_1", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["params"] == 1_235_496 and info["stats_input_size"] == 224


def test_missing_data_folder_is_a_clear_error(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "--model", "resnet20", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *FAST)
    assert code == 2
    assert "nope" in err and "Traceback" not in err


@pytest.mark.parametrize("size", ["0", "5000"])
def test_out_of_range_image_size_is_rejected(capsys, tmp_path, size) -> None:
    code, _, err = run_cli(capsys, "train", "--model", "resnet20", "--data", "builtin", "--out", str(tmp_path / "o"), "--image-size", size, *FAST)
    assert code == 2 and "image size" in err


def test_image_size_the_model_cannot_take(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "--model", "squeezenet1_1", "--data", "builtin", "--out", str(tmp_path / "o"), "--image-size", "16", *FAST)
    assert code == 2
    assert "16x16" in err and "--small-input" in err


def test_option_the_family_lacks(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "--model", "resnet20", "--data", "builtin", "--out", str(tmp_path / "o"), "--width-mult", "0.5", *FAST)
    assert code == 2 and "width_mult" in err


def test_train_eval_info_on_a_folder_with_a_corrupt_image(capsys, tmp_path) -> None:
    root = make_folder(tmp_path / "imgs")
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out_dir = tmp_path / "run"
    with pytest.warns(UserWarning, match="broken.jpg"):
        code, out, err = run_cli(capsys, "train", "--model", "resnet20", "--data", str(root), "--out", str(out_dir), *FAST)
    assert code == 0, err
    assert "24+24 (1 skipped)" in out
    assert (out_dir / "best" / "weights.pt").is_file()
    meta = json.loads((out_dir / "best" / "checkpoint.json").read_text())
    assert [Path(p).name for p in meta["extra"]["skipped_images"]] == ["broken.jpg"]
    assert meta["labels"] == ["cat", "dog"] and meta["arch"] == "resnet20"
    assert len(meta["normalization"]["mean"]) == 3

    code, out, err = run_cli(capsys, "eval", str(out_dir / "best"), "--data", str(root), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 24 and 0 <= result["top1"] <= 100

    code, out, _ = run_cli(capsys, "info", str(out_dir / "best"), "--json")
    assert code == 0 and json.loads(out)["labels"] == ["cat", "dog"]


def test_eval_refuses_data_with_other_classes(capsys, tmp_path) -> None:
    root = make_folder(tmp_path / "a")
    other = make_folder(tmp_path / "b", classes=("car", "plane"))
    run_cli(capsys, "train", "--model", "resnet20", "--data", str(root), "--out", str(tmp_path / "run"), *FAST)
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "run" / "best"), "--data", str(other))
    assert code == 2 and "classes" in err


def test_fine_tune_from_a_state_dict_with_another_class_count(capsys, tmp_path) -> None:
    import models

    source = models.create("resnet20", num_classes=100)
    torch.save(source.state_dict(), tmp_path / "r20.pth")
    code, out, err = run_cli(capsys, "train", "--model", "resnet20", "--init", str(tmp_path / "r20.pth"), "--data", "builtin",
                             "--out", str(tmp_path / "run"), *FAST)
    assert code == 0, err
    assert "start fresh" in out
    trained = torch.load(tmp_path / "run" / "last" / "weights.pt", weights_only=True)
    # the body was loaded from the file and then trained one epoch: close to the source, not to a fresh init
    start = source.state_dict()["conv1.weight"] if "conv1.weight" in source.state_dict() else next(iter(source.state_dict().values()))
    key = "conv1.weight" if "conv1.weight" in trained else next(iter(trained))
    assert torch.nn.functional.cosine_similarity(trained[key].flatten(), start.flatten(), dim=0) > 0.9


def test_init_from_a_mismatched_architecture_is_a_clear_error(capsys, tmp_path) -> None:
    import models

    torch.save(models.create("resnet20", num_classes=10).state_dict(), tmp_path / "r20.pth")
    code, _, err = run_cli(capsys, "train", "--model", "resnet56", "--init", str(tmp_path / "r20.pth"), "--data", "builtin",
                           "--out", str(tmp_path / "run"), *FAST)
    assert code == 2 and "r20.pth" in err and "architecture" in err


def test_console_script_help_and_error_exit_codes(tmp_path) -> None:
    exe = shutil.which("mobile-compress", path=str(VENV_BIN)) or str(VENV_BIN / "mobile-compress")
    for command in ("models", "info", "train", "eval", "demo"):
        proc = subprocess.run([exe, command, "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage" in proc.stdout, command
    proc = subprocess.run([exe, "eval", str(tmp_path / "missing"), "--data", "builtin"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "missing" in proc.stderr and "Traceback" not in proc.stderr


def test_train_runs_under_torchrun_with_two_processes(tmp_path) -> None:
    """The same entry point under torchrun: 2 CPU processes with gloo, one checkpoint."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(VENV_BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29533", "-m", "workflows", "train",
         "--model", "resnet20", "--data", "builtin", "--out", str(tmp_path / "ddp"), *FAST],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ddp" / "best" / "checkpoint.json").is_file()
    history = [json.loads(line) for line in (tmp_path / "ddp" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1
    assert proc.stdout.count("best top-1") == 1, proc.stdout  # one summary table, from rank 0


def _checkpoint(path: Path, size: int, arch: str = "resnet20", **options) -> Path:
    """An untrained digits classifier saved as a checkpoint."""
    import models
    from mobile_compress.data.normalization import DIGITS
    from mobile_compress.training import CheckpointMeta, save_checkpoint

    torch.manual_seed(0)
    model = models.create(arch, num_classes=10, **options)
    save_checkpoint(path, model, CheckpointMeta(arch=arch, options=options, num_classes=10, input_size=size,
                                                normalization=DIGITS.to_dict(), labels=[str(i) for i in range(10)]))
    return path


def test_quantize_converts_its_checkpoint_and_exits_1_below_the_bar(tmp_path, capsys, monkeypatch) -> None:
    """The conversion is replaced by a report below the bar: what is checked is what the command asks for and
    what it does with the answer (the slow tests/test_quantization_export.py converts for real)."""
    from types import SimpleNamespace

    import workflows.compress

    asked = []

    def fake_convert(config):
        asked.append(config)
        parity = SimpleNamespace(top1_agreement=0.95, top1_accuracy=0.5, reference_top1_accuracy=0.52)
        art = SimpleNamespace(path=str(Path(config.out_dir) / "model_int8.tflite"), parity=parity,
                              io={"range_transfer": {"unmapped": []}})
        return SimpleNamespace(problems=["int8: top-1 agreement 0.950 < 0.99"], artifact=lambda fmt: art)

    monkeypatch.setattr(workflows.compress, "convert", fake_convert)
    ck = _checkpoint(tmp_path / "ck", 16, "mobilenet_v2", width_mult=0.35, small_input=True)
    common = ["quantize", "--method", "ptq", str(ck), "--data", "builtin", "--calib-images", "16", "--json"]
    code, out, err = run_cli(capsys, *common, "--out", str(tmp_path / "q"), "--int8-io", "uint8",
                             "--parity-samples", "50")
    assert code == 1 and "mobile-compress: quantize: int8: top-1 agreement 0.950 < 0.99" in err
    [config] = asked
    assert config.source == str(tmp_path / "q" / "checkpoint") and config.out_dir == str(tmp_path / "q" / "int8")
    assert config.formats == ("int8",) and config.calib == "builtin" and config.int8_io == "uint8"
    assert config.parity_samples == 50 and config.thresholds.int8_min_top1 == 0.99
    row = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert json.loads(out) == row and row["tflite_agreement"] == 0.95 and row["method"] == "ptq"
    assert row["sim_top1_parity_set"] == 0.52 and row["range_transfer"] == {"unmapped": []}

    code, out, err = run_cli(capsys, *common, "--out", str(tmp_path / "q2"), "--no-convert")
    assert code == 0 and len(asked) == 1 and "tflite" not in json.loads(out)


def test_prune_measures_its_latency_table_once_and_keeps_json_output_clean(tmp_path, capsys, monkeypatch) -> None:
    """Measuring is replaced by a table priced per MAC: the table is measured once, saved in OUT, reused on
    --resume, and its progress lines stay off stdout when --json asks for JSON there."""
    import models
    from mobile_compress.pruning import LatencyTable, LayerLatency, build_graph, example_input
    from profiler import latency_table

    ck = _checkpoint(tmp_path / "ck", 32)
    model = models.create("resnet20", num_classes=10)
    graph = build_graph(model, example_input(model, 32))
    table = LatencyTable(0.05, {u.name: LayerLatency(1e-8, 1e-6) for u in graph.uses.values() if u.kind != "bn"})
    measured = []
    monkeypatch.setattr(latency_table, "build_latency_table", lambda source, **_: measured.append(source) or table)
    argv = ["prune", str(ck), "--target", "latency=0.7", "--epochs-per-step", "0", "--out", str(tmp_path / "out"),
            "--json"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    report = json.loads(out)
    assert report["steps"][0]["prune"]["latency_after_ms"] <= 0.7 * report["steps"][0]["prune"]["latency_before_ms"]
    assert measured == [str(ck)] and (tmp_path / "out" / "latency_table.json").is_file()
    assert "latency table written to" in err
    code, out, err = run_cli(capsys, *argv, "--resume")
    assert code == 0 and len(measured) == 1 and "reusing" in err and json.loads(out)["checkpoint"]
