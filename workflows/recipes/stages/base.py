"""What every stage kind provides: an options parser (validation) and a run that calls the library."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from workflows.recipes.fields import Fields

#: What a stage reads and writes: a checkpoint directory, a folder of .tflite files, or nothing usable downstream.
CHECKPOINT, TFLITE, OTHER = "checkpoint", "tflite", "other"


@dataclass(frozen=True)
class Ref:
    """An artifact of an earlier stage (``@N`` or ``@kind`` in a recipe), resolved when the run gets there."""

    index: int


@dataclass
class ParseContext:
    """What a stage's parser may consult: where relative paths start, the recipe's defaults, earlier stages."""

    base_dir: Path
    check_files: bool
    data: str | None
    cache_dir: str | None
    earlier: list[tuple[str, str]]  # (kind, produces) of the stages before this one

    def ref(self, fields: Fields, key: str, value: Any, produces: str) -> Ref | str:
        """``@N`` / ``@kind`` -> Ref to an earlier stage producing ``produces``; anything else is a path."""
        if isinstance(value, str) and value.startswith("@"):
            name = value[1:]
            if name.isdigit():
                index = int(name)
                if index >= len(self.earlier):
                    raise fields.error(key, value, f"names stage {index}, which does not come before this one",
                                       hint="refer to an earlier stage: @0 is the first")
            else:
                matches = [i for i, (kind, _) in enumerate(self.earlier) if kind == name]
                if not matches:
                    raise fields.error(key, value, f"names no earlier '{name}' stage",
                                       hint="use @N (N = the stage's position, from 0) or @kind of an earlier stage")
                index = matches[-1]
            if self.earlier[index][1] != produces:
                raise fields.error(key, value, f"names a stage that produces no {produces}")
            return Ref(index)
        if not isinstance(value, str) or not value:
            raise fields.error(key, value, f"is not a path to a {produces} or a reference like @0")
        return fields.file(key, value, self.check_files, produces)


@dataclass
class StageResult:
    """A finished stage: its artifact (path), what it is, and the numbers it reported."""

    artifact: str
    produces: str
    metrics: dict[str, Any] = field(default_factory=dict)
    source_checkpoint: str | None = None  # for .tflite artifacts: the checkpoint they were made from

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "produces": self.produces, "metrics": self.metrics,
                "source_checkpoint": self.source_checkpoint}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageResult":
        return cls(d["artifact"], d["produces"], dict(d.get("metrics") or {}), d.get("source_checkpoint"))


@dataclass
class RunContext:
    """What a running stage gets: its folder, its input, the recipe defaults, whether to resume."""

    run_dir: Path
    stage_dir: Path
    input: str | None
    data: str | None
    cache_dir: str | None
    resume: bool
    results: list[StageResult]
    log: Callable[[str], None] = print

    def resolve(self, value: Ref | str | None) -> str | None:
        if isinstance(value, Ref):
            return self.results[value.index].artifact
        return value


class Stage(Protocol):
    """One stage kind. ``consumes``: the artifact it needs from before (None: starts from scratch)."""

    kind: str
    consumes: str | None
    produces: str

    def parse(self, fields: Fields, ctx: ParseContext) -> Any: ...

    def run(self, options: Any, ctx: RunContext) -> StageResult: ...
