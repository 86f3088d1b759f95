"""Reading a recipe mapping with errors that name the key path (``recipe.yaml: stages[2].prune.target: ...``)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from mobile_compress.errors import UserError

T = TypeVar("T")
_MISSING = object()


class Fields:
    """The options of one recipe mapping, taken one key at a time; ``done()`` rejects the keys left over."""

    def __init__(self, data: Any, where: str, base_dir: Path | None = None) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: expected a mapping of option: value, found {type(data).__name__} {data!r:.60}",
                            hint="write the options indented under the key, one 'name: value' per line")
        self.data = dict(data)
        self.where = where
        self.base_dir = base_dir
        self._taken: set[str] = set()
        self._known: set[str] = set()

    def path(self, key: str) -> str:
        """``recipe.yaml: stages`` at the top of a file, ``recipe.yaml: stages[0].train.model`` below."""
        return f"{self.where}.{key}" if ": " in self.where else f"{self.where}: {key}"

    def error(self, key: str, value: Any, what: str, hint: str | None = None) -> UserError:
        return UserError(f"{self.path(key)}: {value!r} {what}", hint=hint)

    def has(self, key: str) -> bool:
        self._known.add(key)
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self._taken.add(key)
        return self.data.get(key, default)

    def required(self, key: str, hint: str) -> Any:
        self._taken.add(key)
        if key not in self.data or self.data[key] is None:
            raise UserError(f"{self.path(key)} is missing", hint=hint)
        return self.data[key]

    def str(self, key: str, default: str | None = None, required: str | None = None) -> str | None:
        value = self.required(key, required) if required else self.raw(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.error(key, value, "is not a non-empty string")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise self.error(key, value, f"is not one of {', '.join(choices)}")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, value, "is not true or false")
        return value

    def int(self, key: str, default: int | None = None, minimum: int = 1) -> int | None:
        value = self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, value, f"is not an integer >= {minimum}")
        return value

    def number(self, key: str, default: float | None = None, low: float | None = None, high: float | None = None,
               what: str = "a number") -> float | None:
        value = self.raw(key, default)
        if value is None:
            return None
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or (low is not None and value <= low) or (high is not None and value > high)):
            raise self.error(key, value, f"is not {what}")
        return float(value)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.raw(key, {})
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(key, value, "is not a mapping of name: value")
        return dict(value)

    def str_list(self, key: str, default: Sequence[str] | None = None) -> list[str] | None:
        value = self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, value, "is not a list of names")
        return list(value)

    def file(self, key: str, value: str | None, must_exist: bool, kind: str = "file or folder") -> str | None:
        """A path relative to the recipe's folder (``~`` expanded); checked when ``must_exist``."""
        if value is None:
            return None
        path = Path(os.path.expanduser(value))
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        if must_exist and not path.exists():
            raise UserError(f"{self.path(key)}: {value!r} does not exist (looked for {path})",
                            hint=f"give the {kind}'s path, absolute or relative to the recipe file")
        return str(path)

    def wrap(self, key: str | None, build: Callable[[], T]) -> T:
        """Run ``build`` (a library config's own validation); its UserError gets this key path in front."""
        try:
            return build()
        except UserError as err:
            where = self.path(key) if key else self.where
            message = err.message
            for prefix in ("training config: ", "distillation config: ", "pruning config: "):
                message = message.removeprefix(prefix)
            raise UserError(f"{where}: {message}", hint=err.hint) from None

    def done(self) -> None:
        left = sorted(set(self.data) - self._taken)
        if left:
            raise UserError(f"{self.path(left[0])}: unknown option",
                            hint=f"options of {self.where.rsplit(': ', 1)[-1]}: {', '.join(sorted(self._taken | self._known))}")


def data_source(fields: Fields, key: str, value: str | None, check: bool) -> str | None:
    """A dataset: 'builtin[:name]' as is, otherwise a path relative to the recipe."""
    if value is None or value == "builtin" or value.startswith("builtin:"):
        return value
    return fields.file(key, value, check, "dataset")
