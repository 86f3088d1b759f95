"""A model file is data: a crafted .pt2 or .onnx never runs code and gets a clear refusal.

Each archive here is a real ``torch.export.save`` output, rewritten to carry a pickle whose
loading would create a marker file (the attack: a downloaded model that runs ``os.system``
during ``mobile-compress convert evil.pt2``). The marker must never appear.
"""
from __future__ import annotations

import json
import os
import pickle
import shlex
import zipfile
from pathlib import Path

import pytest
import torch

from converters import pt2_archive
from converters.pt2_archive import UnsafeArchive, load_program
from workflows.cli import main


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).relu()


class _Payload:
    """Pickles to a call of os.system that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    program = torch.export.export(_Tiny().eval(), (torch.randn(1, 3, 8, 8),))
    path = tmp_path / "clean.pt2"
    torch.export.save(program, str(path))
    return path


def _rewrite(src: Path, dst: Path, changes: dict[str, bytes | None]) -> Path:
    """Copy the archive, replacing (or with None, dropping) entries named below its root; new names are added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        todo = dict(changes)
        for info in zin.infolist():
            rel = info.filename.split("/", 1)[1]
            if rel in todo:
                data = todo.pop(rel)
                if data is not None:
                    zout.writestr(info.filename, data)
            else:
                zout.writestr(info, zin.read(info.filename))
        for rel, data in todo.items():
            zout.writestr(f"{root}/{rel}", data)
    return dst


def _config(src: Path, kind: str) -> dict:
    with zipfile.ZipFile(src) as z:
        name = next(n for n in z.namelist() if n.endswith(f"model_{kind}_config.json"))
        return json.loads(z.read(name))


def _pickled_weight(saved: Path, marker: Path) -> Path:
    config = _config(saved, "weights")
    entry = config["config"]["conv.weight"]
    entry["use_pickle"] = True
    return _rewrite(saved, saved.with_name("evil_weight.pt2"), {
        "data/weights/model_weights_config.json": json.dumps(config).encode(),
        f"data/weights/{entry['path_name']}": pickle.dumps(_Payload(marker)),
    })


def _pickled_sample_inputs(saved: Path, marker: Path) -> Path:
    # torch.export.load retries a sample-input file that the weights-only unpickler refused with the full one
    return _rewrite(saved, saved.with_name("evil_inputs.pt2"),
                    {"data/sample_inputs/model.pt": pickle.dumps(_Payload(marker))})


def _opaque_constant(saved: Path, marker: Path) -> Path:
    config = _config(saved, "constants")
    config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": False,
                                "tensor_meta": None}
    return _rewrite(saved, saved.with_name("evil_constant.pt2"), {
        "data/constants/model_constants_config.json": json.dumps(config).encode(),
        "data/constants/opaque_obj_0": pickle.dumps(_Payload(marker)),
    })


def _legacy_weights(saved: Path, marker: Path) -> Path:
    return _rewrite(saved, saved.with_name("evil_legacy.pt2"), {"data/weights/model.pt": pickle.dumps(_Payload(marker))})


def _compiled_code(saved: Path, marker: Path) -> Path:
    return _rewrite(saved, saved.with_name("evil_aoti.pt2"), {"data/aotinductor/model/model.so": b"\x7fELF"})


CRAFTED = {"pickled weight": _pickled_weight, "pickled sample inputs": _pickled_sample_inputs,
           "opaque constant": _opaque_constant, "legacy weights file": _legacy_weights,
           "compiled code": _compiled_code}


@pytest.mark.parametrize("craft", CRAFTED.values(), ids=list(CRAFTED))
def test_convert_refuses_a_crafted_pt2_and_runs_nothing_from_it(saved, tmp_path, capsys, craft) -> None:
    marker = tmp_path / "pwned"
    evil = craft(saved, marker)
    rc = main(["convert", str(evil), "--out", str(tmp_path / "out"), "--formats", "onnx"])
    err = capsys.readouterr().err
    assert not marker.exists(), "loading the model file ran code from it"
    assert rc == 2, err
    assert str(evil) in err and "Traceback" not in err
    assert "torch.export.save" in err  # the hint says how to make a safe file


def test_the_refusal_names_the_pickled_entry(saved, tmp_path) -> None:
    with pytest.raises(UnsafeArchive, match="'conv.weight' is stored as a pickle"):
        load_program(_pickled_weight(saved, tmp_path / "pwned"))


@pytest.mark.parametrize("craft", [_pickled_weight, _pickled_sample_inputs, _opaque_constant],
                         ids=["pickled weight", "pickled sample inputs", "opaque constant"])
def test_loading_with_unpicklers_closed_runs_nothing_even_past_the_check(saved, tmp_path, monkeypatch, craft) -> None:
    """The second wall alone: with the archive check switched off, torch's loader still cannot unpickle."""
    marker = tmp_path / "pwned"
    evil = craft(saved, marker)
    monkeypatch.setattr(pt2_archive, "check_archive", lambda path, data: None)
    with pytest.raises(Exception):
        load_program(evil)
    assert not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # the guard is lifted after the load
    from torch.export.pt2_archive import _package
    assert _package.pickle is pickle and torch._C._pickle_load_obj is not None


def test_a_clean_archive_loads_and_computes_the_model(saved) -> None:
    torch.manual_seed(0)
    model = _Tiny().eval()
    x = torch.randn(1, 3, 8, 8)
    program = load_program(saved)
    assert torch.allclose(program.module()(x), model(x))  # same seed, same weights as the saved program


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"PK\x03\x04 not really", "not a torch.export archive"),
])
def test_a_pt2_that_is_not_an_archive_gets_a_clear_message(tmp_path, capsys, content, message) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(content)
    rc = main(["convert", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("content, message", [
    (b"", "is empty (0 bytes)"),
    (b"\x08\x00", "is not an ONNX model"),  # parses as a protobuf with nothing in it
    (b"just some notes\n", "cannot read"),
])
def test_an_empty_or_foreign_onnx_is_named_as_such(tmp_path, capsys, content, message) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    rc = main(["convert", str(path), "--out", str(tmp_path / "out"), "--calib", "builtin"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and "0 inputs" not in err and "Traceback" not in err
