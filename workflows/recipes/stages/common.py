"""Options shared by the stages that train: the training settings and the student model."""
from __future__ import annotations

from dataclasses import fields as dataclass_fields
from typing import Any

import models
from mobile_compress.errors import UserError
from workflows.recipes.fields import Fields, data_source
from workflows.recipes.stages.base import ParseContext
from mobile_compress.training import TrainJobResult
from mobile_compress.training import TrainConfig

TRAIN_FIELDS = [f.name for f in dataclass_fields(TrainConfig)]


def training_config(fields: Fields, key: str = "training", base: TrainConfig | None = None) -> TrainConfig:
    """``training:`` over ``base`` (the stage's own defaults, as its command has them) -> TrainConfig;
    a bad value is reported as ``...training.<field>``."""
    values = fields.mapping(key)
    sub = Fields(values, fields.path(key))
    for name, value in values.items():
        if name not in TRAIN_FIELDS:
            raise UserError(f"{sub.path(str(name))}: unknown option", hint=f"training options: {', '.join(TRAIN_FIELDS)}")
        sub.wrap(name, lambda: TrainConfig(**{name: value}) if name not in ("warmup_epochs", "min_lr")
                 else TrainConfig(**{name: value, "epochs": 10**6, "lr": 10**6}))
    return fields.wrap(key, lambda: TrainConfig(**{**(base.to_dict() if base else {}), **values}))


def model_choice(fields: Fields, name_key: str, options_key: str = "options") -> tuple[str, dict[str, Any]]:
    """A zoo name and its options, checked by building the model once (cheap for the zoo)."""
    name = fields.str(name_key, required=f"name a zoo model, one of: {', '.join(models.names())}")
    options = fields.mapping(options_key)
    try:
        models.spec(name)
    except models.UnknownModelError as err:
        raise UserError(f"{fields.path(name_key)}: {err}", hint="run `mobile-compress models` for the list") from None
    try:
        models.create(name, num_classes=2, **options)
    except models.ModelOptionError as err:
        raise UserError(f"{fields.path(options_key)}: {err}", hint="only options the model family has") from None
    return name, options


def data_option(fields: Fields, ctx: ParseContext) -> str:
    value = data_source(fields, "data", fields.str("data"), ctx.check_files)
    value = value or ctx.data
    if value is None:
        raise UserError(f"{fields.path('data')} is missing and the recipe has no top-level data",
                        hint="add 'data: PATH' (an ImageFolder, an .npz or builtin) at the top of the recipe")
    return value


def training_metrics(result: TrainJobResult) -> dict[str, Any]:
    r = result.result
    return {"best_val_top1": r.best_val_top1, "epochs": len(r.epochs), "stopped_early": r.stopped_early,
            "minutes": r.elapsed / 60, "train_images": result.train_images, "val_images": result.val_images}
