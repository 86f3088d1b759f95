"""Reading and validating a whole recipe before any work starts.

A recipe is YAML::

    name: digits-chain            # optional
    data: builtin                 # default data of every stage (an ImageFolder, an .npz, or builtin)
    latency: true                 # measure host latency for the stage table (default true)
    stages:
      - train:   {model: resnet20, training: {epochs: 1}}
      - distill: {teacher: "@train", student: mobilenet_v2, options: {width_mult: 0.5, small_input: true}}
      - convert: {formats: [fp32, int8]}

Each stage is a one-key mapping ``kind: options``. A stage that needs a checkpoint takes the
artifact of the nearest stage before it that produced one, or ``input: PATH | @N | @kind``.
Relative paths are relative to the recipe file. Every error names the file and the key path.
Where no file of the given path exists, a packaged example recipe of that name is read instead
(``mobile-compress run digits_full_chain``); its relative paths start from the current folder.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mobile_compress.errors import UserError
from workflows.examples import Example, all_examples, names_hint
from workflows.recipes.fields import Fields, data_source
from workflows.recipes.stages import REGISTRY, ParseContext, Ref

TOP_KEYS = ("name", "data", "cache_dir", "latency", "stages")


@dataclass
class StageSpec:
    index: int
    kind: str
    options: Any
    input: Ref | str | None
    raw: Any  # the stage's mapping as written (compared on --resume)

    @property
    def label(self) -> str:
        return f"{self.index + 1:02d}_{self.kind.replace('-', '_')}"


@dataclass
class Recipe:
    path: Path
    name: str
    data: str | None
    cache_dir: str | None
    latency: bool
    stages: list[StageSpec]


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist", hint="pass the path of a recipe .yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', None) or err}",
                        hint="check the indentation and the quoting around that line") from None


def load_recipe(recipe: str | Path, check_files: bool = True) -> Recipe:
    """Parse and validate every stage; ``check_files=False`` skips the existence of paths (for examples).

    ``recipe`` is a .yaml file or, where no file or folder of that path exists, the name of an example recipe.
    """
    path = Path(recipe)
    if path.exists():
        return _parse(read_yaml(path), path, path.resolve().parent, check_files)
    return _load_example(_recipe_example(path), check_files)


def _recipe_example(path: Path) -> Example:
    """The example recipe a missing path names; otherwise the error says the file is missing and what exists."""
    examples = all_examples()
    for example in examples:
        if example.name == str(path):
            if example.kind.name != "recipe":
                raise UserError(f"{example.name} is a {example.kind.name} example, not a recipe",
                                hint=f"use it with `mobile-compress {example.kind.command} {example.name}`")
            return example
    recipes = [e for e in examples if e.kind.name == "recipe"]
    raise UserError(f"recipe {path} does not exist, and no example recipe has that name",
                    hint="pass the path of a recipe .yaml file or the name of an example recipe; "
                         + names_hint(recipes, path.stem))


def _load_example(example: Example, check_files: bool) -> Recipe:
    """A packaged recipe, its relative paths taken from the current folder (its own folder is inside the package)."""
    try:
        return _parse(parse_yaml(example.text(), example.location), example.location, Path.cwd(), check_files)
    except UserError as err:
        hint = (f"{example.name} is a packaged example: ~ in it is your home folder and a relative path starts from "
                "the current folder. Create what it names there, or copy the example out and edit it: "
                f"`mobile-compress examples {example.name} --to .`")
        raise UserError(err.message, hint=hint + (f"; in the copy, {err.hint}" if err.hint else "")) from None


def _parse(data: Any, path: Path, base_dir: Path, check_files: bool) -> Recipe:
    top = Fields(data, path.name, base_dir=base_dir)
    name = top.str("name", path.stem)
    default_data = data_source(top, "data", top.str("data"), check_files)
    cache_dir = top.file("cache_dir", top.str("cache_dir"), False)
    latency = top.bool("latency", True)
    raw_stages = top.required("stages", "list the stages, e.g. stages: [{train: {model: resnet20}}]")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise UserError(f"{top.path('stages')}: expected a non-empty list of stages",
                        hint="each item is 'kind: options', e.g. '- train: {model: resnet20}'")
    top.done()
    stages: list[StageSpec] = []
    for i, item in enumerate(raw_stages):
        stages.append(_stage(path, base_dir, i, item, stages, default_data, cache_dir, check_files))
    return Recipe(path, name, default_data, cache_dir, latency, stages)


def _stage(path: Path, base_dir: Path, i: int, item: Any, earlier: list[StageSpec], data: str | None,
           cache_dir: str | None, check_files: bool) -> StageSpec:
    where = f"{path.name}: stages[{i}]"
    if not isinstance(item, dict) or len(item) != 1:
        raise UserError(f"{where}: expected one 'kind: options' mapping, found {item!r:.80}",
                        hint=f"e.g. '- train: {{model: resnet20}}'; kinds: {', '.join(REGISTRY)}")
    kind, options = next(iter(item.items()))
    if kind not in REGISTRY:
        close = difflib.get_close_matches(str(kind), list(REGISTRY), n=1)
        raise UserError(f"{where}: unknown stage kind {kind!r}",
                        hint=(f"did you mean {close[0]!r}? " if close else "") + f"kinds: {', '.join(REGISTRY)}")
    stage = REGISTRY[kind]
    f = Fields(options, f"{where}.{kind}", base_dir=base_dir)
    ctx = ParseContext(base_dir=base_dir, check_files=check_files, data=data, cache_dir=cache_dir,
                       earlier=[(s.kind, REGISTRY[s.kind].produces) for s in earlier])
    source: Ref | str | None = None
    if f.has("input"):
        if stage.consumes is None:
            raise UserError(f"{f.path('input')}: a {kind} stage takes no input", hint="remove 'input'")
        source = ctx.ref(f, "input", f.raw("input"), stage.consumes)
    elif stage.consumes is not None:
        before = [s.index for s in earlier if REGISTRY[s.kind].produces == stage.consumes]
        if not before:
            raise UserError(f"{where}.{kind} needs a {stage.consumes} and no stage before it produces one",
                            hint="add a stage before it (train, distill, ...) or give 'input: PATH'")
        source = Ref(before[-1])
    parsed = stage.parse(f, ctx)
    f.done()
    return StageSpec(i, kind, parsed, source, json.loads(json.dumps(item, default=str)))
