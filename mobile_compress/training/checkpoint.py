"""The project's checkpoint format: a plain state_dict plus JSON, never a pickled module.

A checkpoint is a directory::

    weights.pt        torch.save(model.state_dict()): tensors only, readable with
                      torch.load(weights_only=True), so loading runs no foreign code
    checkpoint.json   what is needed to rebuild and use the model: zoo arch and
                      options, structural edits (``transforms``: pruning, low-rank,
                      QAT; see ``mobile_compress.structure``), class count and names,
                      input size, normalisation, metrics, creation time, versions,
                      free-form ``extra``

Rebuilding goes through the model zoo (``models.create``), so a checkpoint stays
loadable when the model code is refactored, as long as parameter names hold.
Saving is atomic: both files are written to a temporary sibling directory that
is then renamed into place, so a crash never leaves a half-written checkpoint.
A kill between moving the old one aside and the new one into place leaves no
directory, only hidden siblings; the next save or load puts the newest complete
one back and deletes the rest (``dir_swap.recover``).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from mobile_compress import __version__
from mobile_compress.errors import UserError
from mobile_compress.training import dir_swap
from mobile_compress.training.evaluate import unwrap

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
META_FILE = "checkpoint.json"
REQUIRED_FIELDS = ("format_version", "arch", "num_classes", "input_size")


@dataclass
class CheckpointMeta:
    """Everything about a checkpoint except its tensors (the content of checkpoint.json).

    ``input_size`` is the square side in pixels (or ``[height, width]``);
    ``normalization`` is ``Normalization.to_dict()``; ``labels`` are the class
    names in output order. ``created`` and ``mobile_compress_version`` are filled
    in by ``save_checkpoint``.
    """

    arch: str
    num_classes: int
    input_size: int | tuple[int, int]
    options: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, Any] | None = None
    labels: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    transforms: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""
    mobile_compress_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.normalization is not None and hasattr(self.normalization, "to_dict"):
            self.normalization = self.normalization.to_dict()  # a data.Normalization object
        if isinstance(self.input_size, list):
            self.input_size = tuple(self.input_size)
        self.options = dict(self.options)
        self.labels = [str(x) for x in self.labels]
        self.metrics = dict(self.metrics)
        self.extra = dict(self.extra)
        self.transforms = [dict(t) for t in self.transforms]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, in the order written to checkpoint.json."""
        d = asdict(self)
        if isinstance(d["input_size"], tuple):
            d["input_size"] = list(d["input_size"])
        order = ("format_version", "arch", "options", "num_classes", "input_size", "normalization", "labels",
                 "metrics", "transforms", "created", "mobile_compress_version", "extra")
        return {k: d[k] for k in order}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "checkpoint metadata") -> "CheckpointMeta":
        """Validate and build; errors name ``source`` (the file) and the offending field."""
        if not isinstance(data, Mapping):
            raise UserError(f"{source}: expected a JSON object, found {type(data).__name__}",
                            hint="re-save the checkpoint with save_checkpoint")
        for name in REQUIRED_FIELDS:
            if name not in data:
                raise UserError(f"{source}: required field '{name}' is missing",
                                hint=f"add '{name}' to the file, or re-save the checkpoint with save_checkpoint")
        fv = data["format_version"]
        if isinstance(fv, bool) or not isinstance(fv, int) or fv < 1:
            raise _field_error(source, "format_version", fv, "a positive integer")
        if fv > FORMAT_VERSION:
            raise UserError(
                f"{source}: checkpoint format version {fv} is newer than this mobile-compress "
                f"(reads up to {FORMAT_VERSION})",
                hint="upgrade mobile-compress to load this checkpoint",
            )
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        _check(source, "arch", values["arch"], lambda v: isinstance(v, str) and v != "", "a model zoo name")
        _check(source, "num_classes", values["num_classes"],
               lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1")
        _check(source, "input_size", values["input_size"], _valid_size, "an integer >= 1 or [height, width]")
        for name, kind, what in (("options", dict, "an object"), ("metrics", dict, "an object"),
                                 ("extra", dict, "an object"), ("labels", list, "a list of class names"),
                                 ("transforms", list, "a list of structural edits"),
                                 ("created", str, "an ISO date string"),
                                 ("mobile_compress_version", str, "a version string")):
            if name in values:
                _check(source, name, values[name], lambda v, kind=kind: isinstance(v, kind), what)
        if values.get("normalization") is not None:
            _check(source, "normalization", values["normalization"],
                   lambda v: isinstance(v, dict) and "mean" in v and "std" in v, "an object with 'mean' and 'std'")
        if "labels" in values and values["labels"] and len(values["labels"]) != values["num_classes"]:
            raise UserError(
                f"{source}: field 'labels' has {len(values['labels'])} names but num_classes is {values['num_classes']}",
                hint="list one class name per output, in output order",
            )
        return cls(**values)


def _valid_size(v: Any) -> bool:
    if isinstance(v, int) and not isinstance(v, bool):
        return v >= 1
    return (isinstance(v, (list, tuple)) and len(v) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v))


def _check(source: str, name: str, value: Any, ok: Any, what: str) -> None:
    if not ok(value):
        raise _field_error(source, name, value, what)


def _field_error(source: str, name: str, value: Any, what: str) -> UserError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return UserError(f"{source}: field '{name}' is {shown}, expected {what}",
                     hint="fix the field, or re-save the checkpoint with save_checkpoint")


# ----------------------------------------------------------------------------- saving


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The bare model's state_dict on CPU (DDP/DataParallel/compile wrappers removed, so no 'module.' prefixes)."""
    state = unwrap(model).state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state_dict entry '{key}' is a {type(value).__name__}; a checkpoint holds tensors only")
        out[key] = value.detach().cpu()
    return out


def save_checkpoint(directory: str | os.PathLike, model: nn.Module, meta: CheckpointMeta) -> Path:
    """Write ``model``'s weights and ``meta`` as a checkpoint directory, atomically.

    An existing checkpoint at ``directory`` is replaced; a non-empty directory that
    is not a checkpoint is refused rather than deleted. Returns the directory.
    """
    directory = Path(directory)
    recover_checkpoint(directory)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"cannot write a checkpoint to {directory}: it is a file",
                        hint="pass a directory path; a checkpoint is a folder with weights.pt and checkpoint.json")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / META_FILE).is_file():
        raise UserError(f"refusing to replace {directory}: it is a non-empty directory that is not a checkpoint",
                        hint="choose an empty or new directory for the checkpoint")
    meta = replace(meta, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   mobile_compress_version=__version__, format_version=FORMAT_VERSION)
    try:
        text = json.dumps(meta.to_dict(), indent=2)
    except (TypeError, ValueError) as err:
        raise UserError(f"checkpoint metadata for {directory} is not JSON-serialisable: {err}",
                        hint="keep options/metrics/extra to numbers, strings, lists and dicts") from None
    state = model_state(model)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = dir_swap.new_temp_dir(directory)
    try:
        with open(tmp / WEIGHTS_FILE, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        part = tmp / f"{META_FILE}.part"  # renamed last: a folder with checkpoint.json is complete
        with open(part, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, tmp / META_FILE)
        dir_swap.replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def recover_checkpoint(directory: str | os.PathLike) -> None:
    """Repair what a save killed mid-swap left at ``directory``: the newest complete copy, no hidden leftovers."""
    dir_swap.recover(Path(directory), META_FILE, _complete)


def checkpoint_exists(directory: str | os.PathLike) -> bool:
    """A complete checkpoint is at ``directory`` (after repairing an interrupted save there)."""
    recover_checkpoint(directory)
    return _complete(Path(directory))


def _complete(folder: Path) -> bool:
    return (folder / META_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


# ----------------------------------------------------------------------------- loading


def _locate(path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(directory, checkpoint.json, weights.pt) for a checkpoint directory or either file in it."""
    p = Path(path)
    recover_checkpoint(p.parent if p.name in (WEIGHTS_FILE, META_FILE) else p)
    if not p.exists():
        raise UserError(f"checkpoint {p} does not exist",
                        hint="pass a checkpoint directory (with weights.pt and checkpoint.json), e.g. runs/x/best")
    if p.is_file():
        if p.name not in (WEIGHTS_FILE, META_FILE):
            raise UserError(
                f"{p} is not a mobile-compress checkpoint: expected a directory holding {WEIGHTS_FILE} and {META_FILE}",
                hint="pass the checkpoint directory; a bare state_dict file can be used with --init instead",
            )
        p = p.parent
    return p, p / META_FILE, p / WEIGHTS_FILE


def read_meta(path: str | os.PathLike) -> CheckpointMeta:
    """Read and validate checkpoint.json of a checkpoint (directory or either file in it)."""
    _, meta_file, _ = _locate(path)
    if not meta_file.is_file():
        raise UserError(f"{meta_file} is missing, so {meta_file.parent} is not a complete checkpoint",
                        hint="pass a directory written by mobile-compress (it holds weights.pt and checkpoint.json)")
    try:
        data = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{meta_file} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})",
                        hint="fix the JSON by hand or re-save the checkpoint") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {meta_file}: {err}", hint="check the file's permissions and encoding") from None
    return CheckpointMeta.from_dict(data, source=str(meta_file))


def read_weights(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a plain state_dict with ``weights_only=True`` (no code runs); UserError if it is anything else."""
    file = Path(file)
    if not file.is_file():
        raise UserError(f"{file} is missing", hint="a checkpoint directory needs both weights.pt and checkpoint.json")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights only" in str(err).lower() or "unpickl" in type(err).__name__.lower():
            raise UserError(
                f"{file} is not a plain state_dict: it holds pickled Python objects ({first})",
                hint="mobile-compress never unpickles code; save model.state_dict() (or use save_checkpoint), "
                     "not the module",
            ) from None
        raise UserError(f"cannot read {file}: {first}",
                        hint="the file is truncated or not written by torch.save; re-save the checkpoint") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UserError(f"{file} holds a {type(state).__name__}, not a state_dict of tensors",
                        hint="save model.state_dict() (or use save_checkpoint)")
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP wrapper by other tools
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, hint: str) -> None:
    """``load_state_dict(strict=True)`` with a message that lists what does not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} with another shape (e.g. {k}: file {tuple(state[k].shape)}, "
                        f"model {tuple(own[k].shape)})")
    if problems:
        raise UserError(f"{source} does not match the model: tensors " + "; ".join(problems), hint=hint)
    model.load_state_dict(state, strict=True)


def _build_model(meta: CheckpointMeta, meta_file: Path) -> nn.Module:
    import models  # the zoo; imported here so the format code does not need it to save

    unknown_error = getattr(models, "UnknownModelError", None)
    try:
        model = models.create(meta.arch, num_classes=meta.num_classes, **meta.options)
    except UserError as err:
        raise UserError(f"{meta_file}: cannot build arch '{meta.arch}' with options {meta.options}: {err.message}",
                        hint=err.hint or "check the 'arch' and 'options' fields") from None
    except (TypeError, ValueError) as err:
        if unknown_error is not None and isinstance(err, unknown_error):
            raise UserError(f"{meta_file}: field 'arch' names an unknown model: {err}",
                            hint="fix 'arch', or load it with the mobile-compress version that wrote it "
                                 f"({meta.mobile_compress_version or 'unknown'})") from None
        raise UserError(f"{meta_file}: cannot build arch '{meta.arch}' with options {meta.options}: {err}",
                        hint="check the 'options' field: only options the model family accepts") from None
    from mobile_compress.structure import replay

    return replay(model, meta.transforms, str(meta_file))


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model from the zoo and load its weights (strict); returns ``(model in eval mode, meta)``.

    ``path`` is the checkpoint directory or its checkpoint.json / weights.pt.
    """
    directory, meta_file, weights_file = _locate(path)
    meta = read_meta(directory)
    state = read_weights(weights_file)
    model = _build_model(meta, meta_file)
    load_state_strict(
        model, state, str(weights_file),
        hint=f"the weights were saved from another architecture or options than arch '{meta.arch}' "
             f"with options {meta.options} in {meta_file}; fix those fields or re-save the checkpoint",
    )
    model.eval()
    return model, meta
