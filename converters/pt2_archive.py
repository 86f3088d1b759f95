"""Open a ``torch.export`` archive (.pt2) as data only: nothing in the file may run code.

``torch.export.load`` unpickles any payload the archive marks ``use_pickle`` (weights,
constants), any opaque or TorchBind object, legacy weight files, and retries a sample
input that the weights-only unpickler refused with the full unpickler. Each of those runs
whatever the pickle names (``os.system`` included) before we see an error. A .pt2 is a
file users download, so it is untrusted: the archive is checked against the layout that
``torch.export.save`` writes for plain tensors, and refused on anything else, before torch
reads a byte of it. The load itself then runs with every unpickler closed, so a layout we
did not foresee fails instead of executing.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterator

from mobile_compress.errors import UserError

_RESAVE = ("re-export the model from its own code and save it with torch.export.save in torch 2.13, "
           "with plain tensors as weights and constants; or convert its checkpoint instead")
# Relative to the archive's root folder: what torch.export.save writes for a program of plain tensors.
_DATA_FILES = ("archive_format", "archive_version", "byteorder")
_DATA_DIRS = (".data/", "models/", "data/weights/", "data/constants/", "data/sample_inputs/", "extra/")


class UnsafeArchive(UserError):
    """The .pt2 carries something that would run code when loaded."""


def load_program(path: Path) -> Any:
    """The ``ExportedProgram`` in ``path``, after checking the archive holds data only.

    Raises ``UnsafeArchive`` for pickled payloads or compiled code, ``UserError`` for a file
    that is not a current .pt2 archive. The bytes are read once, so the file that was
    checked is the file that is loaded.
    """
    import torch

    data = path.read_bytes()
    check_archive(path, data)
    with _unpicklers_closed():
        try:
            return torch.export.load(io.BytesIO(data))
        except UnsafeArchive:
            raise
        except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise UserError(f"cannot load {path} as a torch.export program: {first}",
                            hint="save the program with torch.export.save(torch.export.export(model, (x,)), "
                                 "'model.pt2')") from None


def check_archive(path: Path, data: bytes) -> None:
    """Refuse ``data`` (the bytes of ``path``) unless it is a .pt2 of plain tensors and JSON."""
    if not data:
        raise UserError(f"{path} is empty", hint="save the program with torch.export.save")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UserError(f"{path} is not a torch.export archive (not a zip file)",
                        hint="save the program with torch.export.save(program, 'model.pt2')") from None
    with archive:
        entries = _relative_entries(path, archive)
        if entries.get("archive_format") is None:
            raise UserError(f"{path} is not a current torch.export archive (no archive_format entry: "
                            "an older torch's layout, whose weights are pickles)", hint=_RESAVE)
        for name in entries:
            if name not in _DATA_FILES and not name.startswith(_DATA_DIRS):
                raise UnsafeArchive(f"{path} holds {name!r}, which is not part of a data-only .pt2 "
                                    "(compiled code or a payload torch would execute)", hint=_RESAVE)
        models = [n[len("models/"):-len(".json")] for n in entries
                  if n.startswith("models/") and n.endswith(".json")]
        if not models:
            raise UserError(f"{path} holds no exported program (no models/*.json)", hint=_RESAVE)
        for model in models:
            for kind in ("weights", "constants"):
                legacy = f"data/{kind}/{model}.pt"
                if legacy in entries:
                    raise UnsafeArchive(f"{path}: {legacy} is a pickled {kind} file (legacy layout)",
                                        hint=_RESAVE)
                _check_payload_config(path, archive, entries, kind, model)
            _check_sample_inputs(path, archive, entries, model)


def _relative_entries(path: Path, archive: zipfile.ZipFile) -> dict[str, str]:
    """Entry names below the archive's one root folder, mapped to their names in the zip."""
    entries: dict[str, str] = {}
    roots = set()
    for info in archive.infolist():
        if info.is_dir():
            continue
        root, _, rest = info.filename.partition("/")
        roots.add(root)
        entries[rest] = info.filename
    if len(roots) != 1 or "" in entries:
        raise UserError(f"{path} is not a torch.export archive (its entries do not share one root folder)",
                        hint="save the program with torch.export.save(program, 'model.pt2')")
    return entries


def _check_payload_config(path: Path, archive: zipfile.ZipFile, entries: dict[str, str],
                          kind: str, model: str) -> None:
    name = f"data/{kind}/{model}_{kind}_config.json"
    if name not in entries:
        raise UserError(f"{path} has no {name}", hint=_RESAVE)
    try:
        config = json.loads(archive.read(entries[name]))["config"]
        items = list(config.items())
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path}: {name} is not valid JSON of torch.export's payload config",
                        hint=_RESAVE) from None
    for fqn, meta in items:
        pickled = not isinstance(meta, dict) or meta.get("use_pickle") is not False
        path_name = meta.get("path_name", "") if isinstance(meta, dict) else ""
        plain = path_name.startswith("weight_" if kind == "weights" else "tensor_")
        if pickled or not plain:
            what = "a pickle" if pickled else f"a serialized Python object ({path_name})"
            raise UnsafeArchive(f"{path}: {kind[:-1]} {fqn!r} is stored as {what}, which loading would "
                                "execute; only plain tensors are accepted", hint=_RESAVE)


def _check_sample_inputs(path: Path, archive: zipfile.ZipFile, entries: dict[str, str], model: str) -> None:
    """Sample inputs are always a torch.save pickle: they must load with the weights-only unpickler."""
    import torch

    name = f"data/sample_inputs/{model}.pt"
    if name not in entries:
        raise UserError(f"{path} has no {name}", hint=_RESAVE)
    try:
        torch.load(io.BytesIO(archive.read(entries[name])), weights_only=True)
    except Exception:  # noqa: BLE001 - the weights-only unpickler refuses anything but tensors and containers
        raise UnsafeArchive(f"{path}: {name} holds objects other than tensors, which loading would execute",
                            hint=_RESAVE) from None


@contextlib.contextmanager
def _unpicklers_closed() -> Iterator[None]:
    """Force every ``torch.load`` weights-only and make torch's raw unpicklers refuse.

    A second wall behind ``check_archive``: if a future archive layout slips past the
    check, loading fails here instead of running the payload.
    """
    import torch
    from torch.export.pt2_archive import _package

    def refuse(*_: Any, **__: Any) -> Any:
        raise UnsafeArchive("the .pt2 asked to unpickle a Python object", hint=_RESAVE)

    saved_env = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    patches = [(owner, name, value) for owner, name, value in
               [(_package, "pickle", _Refusing(refuse)), (torch._C, "_pickle_load_obj", refuse)]
               if hasattr(owner, name)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        if saved_env is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = saved_env


class _Refusing:
    """Stands in for the ``pickle`` module inside torch's archive loader."""

    def __init__(self, refuse: Any) -> None:
        self.loads = self.load = refuse
