"""The examples that ship inside the package: files a user lists, copies out to edit, or runs by name.

They are package data (setup.cfg's ``[options.package_data]``) read with importlib.resources, so an
installed package has them whatever folder it runs in; this folder is the only copy. Each kind of
example is a subfolder (``recipes/``); an example's name is its file stem and its description the
first comment line of the file. A new kind (search spaces, say) is one more ``Kind`` and a folder
(with an ``__init__.py``, so that setuptools ships it): ``mobile-compress examples`` lists and copies
whatever is here.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from mobile_compress.errors import UserError

SUFFIX = ".yaml"


@dataclass(frozen=True)
class Kind:
    """One kind of example: its label in the listing, its folder here, and the commands that take one."""

    name: str
    folder: str
    commands: tuple[str, ...]  # `mobile-compress COMMAND NAME|FILE`; the first is the one suggested

    @property
    def command(self) -> str:
        return self.commands[0]


KINDS: tuple[Kind, ...] = (Kind("recipe", "recipes", ("run", "deploy")),)


@dataclass(frozen=True)
class Example:
    name: str
    kind: Kind
    description: str
    resource: Traversable

    @property
    def filename(self) -> str:
        return self.resource.name

    @property
    def location(self) -> Path:
        """Where the file is (a label only if the package were imported from a zip archive)."""
        return Path(str(self.resource))

    def text(self) -> str:
        return self.resource.read_text(encoding="utf-8")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind.name, "description": self.description,
                "file": str(self.location)}


def description(text: str) -> str:
    """The first comment line: the one line the listing shows."""
    for line in text.splitlines():
        if line.startswith("#") and line.lstrip("#").strip():
            return line.lstrip("#").strip()
    return ""


def all_examples(root: Traversable | None = None, kinds: tuple[Kind, ...] | None = None) -> list[Example]:
    """Every example, by kind then name; two examples may not share a name (it is how the user picks one)."""
    root = root if root is not None else resources.files(__name__)
    found: dict[str, Example] = {}
    for kind in kinds if kinds is not None else KINDS:
        folder = root / kind.folder
        if not folder.is_dir():
            continue
        for item in sorted(folder.iterdir(), key=lambda t: t.name):
            if not (item.is_file() and item.name.endswith(SUFFIX)):
                continue
            name = item.name[: -len(SUFFIX)]
            if name in found:
                raise ValueError(f"two examples are named {name!r}: {found[name].location} and {item}")
            found[name] = Example(name, kind, description(item.read_text(encoding="utf-8")), item)
    return list(found.values())


def names_hint(examples: list[Example], wanted: str) -> str:
    """A close match (difflib, like unknown stage kinds) and the names to choose from."""
    names = [e.name for e in examples]
    close = difflib.get_close_matches(wanted, names, n=1)
    return ((f"did you mean {close[0]!r}? " if close else "") + "examples: " + ", ".join(names)
            + " (`mobile-compress examples` lists them)")


def find_example(name: str, examples: list[Example] | None = None) -> Example:
    """The example called ``name``; otherwise a UserError with the names and a suggestion."""
    examples = examples if examples is not None else all_examples()
    for example in examples:
        if example.name == name:
            return example
    raise UserError(f"no example is named {name!r}", hint=names_hint(examples, name))


def copy_example(example: Example, to_dir: str | Path, overwrite: bool = False) -> Path:
    """Copy one example into ``to_dir`` (created if missing) for editing; an existing file is kept unless ``overwrite``."""
    folder = Path(to_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--to {folder} is a file, not a folder", hint="pass the folder to copy the example into")
    target = folder / example.filename
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; it was left as it is",
                        hint="pass --overwrite to replace it, or choose another --to folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target.write_text(example.text(), encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot write {target}: {err}", hint="choose a --to folder you can write to") from None
    return target
