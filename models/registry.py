"""Name -> builder registry for the model zoo (in the spirit of timm's registry).

Each architecture module decorates its public builders with :func:`register_model`.
A builder's keyword-only parameters *are* its options: the registry reads them with
``inspect`` so the list of allowed options can never drift from the code. Every
option name must have a validator in ``_OPTION_VALIDATORS`` so that user input
(from a CLI flag or a recipe file) is checked before any module is built.

This module imports nothing of ``mobile_compress``: the zoo is the bottom layer.
"""
from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from torch import nn

__all__ = [
    "ModelSpec",
    "UnknownModelError",
    "ModelOptionError",
    "register_model",
    "create",
    "names",
    "spec",
    "default_input_size",
    "SMALL_INPUT_SIZE",
]

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)


class UnknownModelError(ValueError):
    """The requested model name is not in the zoo; the message suggests close names."""

    def __init__(self, name: str, suggestions: list[str], available: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        if suggestions:
            options = suggestions[0] if len(suggestions) == 1 else f"{', '.join(suggestions[:-1])} or {suggestions[-1]}"
            message = f"unknown model {name!r}; did you mean {options}?"
        else:
            message = f"unknown model {name!r}; available models: {', '.join(available)}"
        super().__init__(message)


class ModelOptionError(ValueError):
    """An option is not accepted by the model or its value is invalid."""


@dataclass(frozen=True)
class ModelSpec:
    """What the zoo knows about a model without building it."""

    name: str
    family: str
    default_input_size: int
    options: tuple[str, ...]
    is_student: bool
    summary: str


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ModelOptionError(f"option {name!r} must be true or false, got {value!r}")
    return value


def _check_positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelOptionError(f"option {name!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ModelOptionError(f"option {name!r} must be a positive number, got {value!r}")
    return value


def _check_probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelOptionError(f"option {name!r} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ModelOptionError(f"option {name!r} must be in [0, 1), got {value!r}")
    return value


# Every option any builder may expose, with the check applied to user values.
_OPTION_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "width_mult": _check_positive_float,
    "dropout": _check_probability,
    "small_input": _check_bool,
    "zero_init_residual": _check_bool,
}


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    builder: Builder


_REGISTRY: dict[str, _Entry] = {}


def _builder_options(builder: Builder) -> tuple[str, ...]:
    """Keyword-only parameters of ``builder`` (its options), in declaration order."""
    params = inspect.signature(builder).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def register_model(
    *,
    family: str,
    default_input_size: int = 224,
    is_student: bool = False,
) -> Callable[[B], B]:
    """Decorator that adds a builder ``fn(num_classes, *, option=...)`` to the zoo.

    The model name is the function name and the one-line summary is the first line
    of its docstring, so registration needs no duplicated strings.
    """

    def decorator(builder: B) -> B:
        name = builder.__name__
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        options = _builder_options(builder)
        unchecked = [o for o in options if o not in _OPTION_VALIDATORS]
        if unchecked:
            raise RuntimeError(f"model {name!r} has options without a validator: {unchecked}")
        summary = (inspect.getdoc(builder) or name).strip().splitlines()[0]
        _REGISTRY[name] = _Entry(
            ModelSpec(
                name=name,
                family=family,
                default_input_size=default_input_size,
                options=options,
                is_student=is_student,
                summary=summary,
            ),
            builder,
        )
        return builder

    return decorator


def _suggest(key: str, limit: int = 3) -> list[str]:
    """Registered names closest to ``key`` (difflib ratio), best first.

    Names that start with ``key`` come first ("mobilenet_v3" -> both V3 models);
    then only names almost as close as the best one are kept, so a plain typo
    gets one answer ("mobilenetv2" -> mobilenet_v2).
    """
    prefixed = [cand for cand in names() if len(key) >= 4 and cand.startswith(key)]
    scored = []
    for candidate in names():
        matcher = difflib.SequenceMatcher(None, key, candidate)
        scored.append((matcher.ratio(), candidate))
    scored = [(score, cand) for score, cand in scored if score >= 0.6]
    close: list[str] = []
    if scored:
        best = max(score for score, _ in scored)
        close = [cand for _, cand in sorted((-score, cand) for score, cand in scored if score >= best - 0.1)]
    return (prefixed + [cand for cand in close if cand not in prefixed])[:limit]


def _entry(name: str) -> _Entry:
    if not isinstance(name, str):
        raise UnknownModelError(str(name), [], names())
    entry = _REGISTRY.get(name)
    if entry is None:
        # Forgive case and dashes in suggestions ("MobileNet-V2" -> mobilenet_v2).
        key = name.strip().lower().replace("-", "_")
        raise UnknownModelError(name, _suggest(key), names())
    return entry


def names() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; raises :class:`UnknownModelError`."""
    return _entry(name).spec


SMALL_INPUT_SIZE = 32  # what the small-input (CIFAR-style) stem is built for


def default_input_size(name: str, **options: Any) -> int:
    """The input size a model is meant for: 32 with the small-input stem, else its spec's."""
    return SMALL_INPUT_SIZE if options.get("small_input") else spec(name).default_input_size


def create(name: str, num_classes: int = 1000, **options: Any) -> nn.Module:
    """Build model ``name`` with a fresh (torchvision-style) initialisation.

    Options are validated before anything is built: an option the model does not
    have, or a bad value, raises :class:`ModelOptionError` naming the allowed ones.
    """
    entry = _entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelOptionError(f"num_classes must be a positive integer, got {num_classes!r}")
    allowed = entry.spec.options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) if allowed else "(none)"
        plural = "s" if len(unknown) > 1 else ""
        raise ModelOptionError(
            f"model {name!r} has no option{plural} {', '.join(map(repr, unknown))}; "
            f"allowed options: {allowed_text}"
        )
    checked = {key: _OPTION_VALIDATORS[key](key, value) for key, value in options.items()}
    return entry.builder(num_classes, **checked)
