"""Quiet output: the libraries' warnings and logs go to the run folder's log, ours stay on the terminal.

torch's exporter ("torchvision is not installed. Skipping torchvision::nms"), TensorFlow's and
absl's C++ startup logs (written to file descriptor 2, not through Python) and LiteRT's
"Created TensorFlow Lite XNNPACK delegate" are not the user's business. The conversion tests run
the real CLI in a fresh process (so the libraries start up as they do for a user) and look at
what reaches descriptors 1 and 2 (capfd); the others check the mechanism on its own.
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from workflows.cli import build_parser
from mobile_compress.data import DataWarning
from mobile_compress.errors import UserError
from mobile_compress.logs import LOG_NAME, command_log, current, third_party_output
from mobile_compress.run_folder import claim_out_dir

ROOT = Path(__file__).resolve().parents[1]

# One line of each kind of noise a conversion makes, as it reaches the terminal without filtering.
EXPORTER = "torchvision is not installed. Skipping torchvision::nms"
ABSL = "All log messages before absl::InitializeLog() is called are written to STDERR"
LITERT = "Created TensorFlow Lite XNNPACK delegate for CPU"
NOISE = (EXPORTER, "torchvision::deform_conv2d", ABSL, LITERT, "computation_placer", "FutureWarning")


@contextlib.contextmanager
def bare_root_logger():
    """The root logger as a command starts with it: no handlers (pytest adds its own for each test phase)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    for handler in saved:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in saved:
            root.addHandler(handler)


def test_a_commands_log_takes_the_libraries_output_and_leaves_ours(tmp_path, capfd) -> None:
    library = logging.getLogger("somelibrary")
    own_handler = logging.StreamHandler(sys.stderr)  # as torch installs one on its logger
    library.addHandler(own_handler)
    late = logging.getLogger("latelibrary")
    try:
        with bare_root_logger(), pytest.warns(DataWarning) as shown, \
                command_log(["convert", "ck", "--out", str(tmp_path)], folder=tmp_path) as log:
            print("[1/3] our progress line", file=sys.stderr)
            warnings.warn("a library's deprecation", FutureWarning)
            warnings.warn("our data warning", DataWarning)
            library.warning("a library's own handler")
            logging.getLogger("otherlibrary").warning("a library's record")
            logging.getLogger("mobile_compress.data").warning("our log record")
            with third_party_output() as captured:
                os.write(2, b"C++ noise on fd 2\n")
                os.write(1, b"C++ noise on fd 1\n")
                print("a library's print")
                late.addHandler(logging.StreamHandler())  # as TensorFlow does on import: on the sys.stderr of then
            late.warning("a handler made while captured")
            print("our table", flush=True)
    finally:
        library.removeHandler(own_handler)
        late.handlers.clear()
    assert own_handler.stream is sys.stderr  # put back when the command ended
    assert [str(w.message) for w in shown] == ["our data warning"]  # ours are shown as before, theirs are not
    out, err = capfd.readouterr()
    terminal = out + err
    for ours in ("our progress line", "our log record", "our table"):
        assert ours in terminal
    text = (tmp_path / LOG_NAME).read_text()
    for theirs in ("a library's deprecation", "a library's own handler", "a library's record", "C++ noise on fd 2",
                   "C++ noise on fd 1", "a library's print", "a handler made while captured"):
        assert theirs not in terminal
        assert theirs in text
    assert not any(ours in text for ours in ("our progress line", "our data warning", "our log record", "our table"))
    assert "C++ noise on fd 2" in captured.text and "a library's print" in captured.text
    assert text.startswith("===== ") and "mobile-compress convert ck --out" in text.splitlines()[0]
    assert log.written and log.path == tmp_path / LOG_NAME
    assert current() is None


def test_verbose_shows_the_libraries_output_and_still_logs_it(tmp_path, capfd) -> None:
    with bare_root_logger(), pytest.warns(FutureWarning, match="a library's deprecation"), \
            command_log(["convert"], folder=tmp_path, verbose=True):
        warnings.warn("a library's deprecation", FutureWarning)
        logging.getLogger("otherlibrary").warning("a library's record")
        with third_party_output():
            os.write(2, b"C++ noise on fd 2\n")
    err = capfd.readouterr().err
    assert "a library's record" in err and "C++ noise on fd 2" in err
    assert "C++ noise on fd 2" in (tmp_path / LOG_NAME).read_text()


def test_the_log_is_appended_and_written_only_when_there_is_something(tmp_path, capfd) -> None:
    with command_log(["models"], folder=tmp_path) as log:
        print("our output")
    assert not log.written and not (tmp_path / LOG_NAME).exists()
    for word in ("first", "second"):
        with command_log([word], folder=tmp_path):
            with third_party_output():
                os.write(2, f"{word} noise\n".encode())
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines if line.startswith("=====")] == ["mobile-compress first",
                                                                                       "mobile-compress second"]
    assert "first noise" in lines and "second noise" in lines


def test_the_run_folder_a_command_claims_receives_its_log_and_a_log_alone_is_no_result(tmp_path, capfd) -> None:
    out = tmp_path / "run"
    with command_log(["run", "recipe.yaml"]) as log:  # the run folder is known only once the recipe is read
        with third_party_output():
            os.write(2, b"before the claim\n")
        claim_out_dir(out)
        with third_party_output():
            os.write(2, b"after the claim\n")
    text = (out / LOG_NAME).read_text()
    assert log.path == out / LOG_NAME and "before the claim" in text and "after the claim" in text
    assert claim_out_dir(out) == out  # a folder holding only the log is still empty
    (out / "report.json").write_text("{}")
    claim_out_dir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [LOG_NAME]  # --overwrite keeps the commands' history


def test_a_command_without_a_run_folder_logs_in_the_cache(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.setenv("MOBILE_COMPRESS_CACHE", str(tmp_path / "cache"))
    with command_log(["profile", "m.tflite", "--host"]) as log:
        with third_party_output():
            os.write(2, b"INFO: delegate\n")
    assert log.path == tmp_path / "cache" / "logs" / LOG_NAME
    assert "INFO: delegate" in log.path.read_text()
    assert "INFO: delegate" not in capfd.readouterr().err


@pytest.mark.parametrize("argv,verbose", [(["models"], False), (["--verbose", "models"], True),
                                          (["models", "--verbose"], True), (["convert", "x", "--out", "o",
                                                                              "--verbose"], True)])
def test_verbose_before_or_after_the_command(argv, verbose) -> None:
    assert build_parser().parse_args(argv).verbose is verbose


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A MobileNetV2 whose classifier is a linear probe: enough to convert, no training."""
    from mobile_compress.zoo_checkpoint import zoo_checkpoint

    return zoo_checkpoint("mobilenet_v2", tmp_path_factory.mktemp("quiet") / "ck", calibration_images=16,
                          width_mult=0.35, small_input=True)


def _convert(checkpoint: Path, out: Path, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> int:
    """`mobile-compress [BEFORE] convert ... [AFTER]` in a fresh process whose descriptors 1 and 2 capfd reads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "MOBILE_COMPRESS_CACHE": str(out.parent / "cache")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    argv = [sys.executable, "-m", "workflows", *before, "convert", str(checkpoint), "--out", str(out),
            "--formats", "onnx,fp32", "--calib", "builtin", "--calib-samples", "16", "--parity-samples", "20", *after]
    return subprocess.run(argv, cwd=out.parent, env=env, stdin=subprocess.DEVNULL, timeout=600).returncode


def test_conversion_keeps_library_noise_in_the_log_and_a_failure_names_it(tiny_checkpoint, tmp_path, capfd) -> None:
    out = tmp_path / "convert"
    rc = _convert(tiny_checkpoint, out, after=("--fp32-max-rel-diff", "0"))  # a bar nothing meets: the failure path
    terminal = "".join(capfd.readouterr())
    for line in NOISE:
        assert line not in terminal
    assert rc == 1
    assert "[1/7] loading" in terminal and "verdict" in terminal  # our progress lines and table stay
    assert "mobile-compress: convert: fp32:" in terminal  # and our account of the failure
    assert f"log: {out / LOG_NAME}" in terminal
    log = (out / LOG_NAME).read_text()
    assert log.startswith("===== ") and "mobile-compress convert" in log.splitlines()[0]
    for line in (EXPORTER, "torchvision::deform_conv2d", ABSL, LITERT):
        assert line in log


def test_verbose_conversion_shows_library_noise(tiny_checkpoint, tmp_path, capfd) -> None:
    out = tmp_path / "convert"
    rc = _convert(tiny_checkpoint, out, before=("--verbose",))
    terminal = "".join(capfd.readouterr())
    assert rc == 0
    assert "[1/7] loading" in terminal and "verdict" in terminal
    for line in (EXPORTER, ABSL, LITERT):
        assert line in terminal


def test_pruning_into_a_folder_holding_only_the_log(tmp_path) -> None:
    """A library's warning can reach the log between the claim of --out and pruning's own check that it is empty."""
    import models
    from mobile_compress.pruning import PruneConfig
    from mobile_compress.pruning.job import PruneJob, run_prune_job
    from mobile_compress.training import CheckpointMeta, save_checkpoint

    save_checkpoint(tmp_path / "ck", models.create("resnet20", num_classes=2),
                    CheckpointMeta(arch="resnet20", num_classes=2, input_size=32, labels=["a", "b"]))
    out = tmp_path / "out"
    out.mkdir()
    (out / LOG_NAME).write_text("===== an earlier command\n")
    result = run_prune_job(PruneJob(str(tmp_path / "ck"), str(out), PruneConfig(target="params=0.7"),
                                    epochs_per_step=0, log=lambda line: None))
    assert result.checkpoint.is_dir() and (out / LOG_NAME).read_text() == "===== an earlier command\n"
    with pytest.raises(UserError, match="holds an earlier pruning run"):  # its own results are never overwritten
        run_prune_job(PruneJob(str(tmp_path / "ck"), str(out), PruneConfig(target="params=0.7"),
                               epochs_per_step=0, log=lambda line: None))
