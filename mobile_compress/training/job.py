"""One training run from names and paths: the job behind `mobile-compress train`,
the demo and the benchmarks.

It turns user-level choices (a zoo name, a data source, an output folder) into a
model, datasets and a Trainer, and checks everything that can be checked before
the first epoch so a mistake fails in seconds, not after an hour.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import models
from mobile_compress.data import Normalization, compute_normalization, open_dataset
from mobile_compress.data.normalization import NAMED as NAMED_NORMALIZATIONS
from mobile_compress.errors import UserError
from mobile_compress.training import CheckpointMeta, Hook, TrainConfig, Trainer, TrainResult
from mobile_compress.training.checkpoint import read_weights

MAX_IMAGE_SIZE = 1024


@dataclass
class TrainJob:
    """Everything a training run needs, as the user names it."""

    model: str
    data: str
    out_dir: str
    config: TrainConfig = field(default_factory=TrainConfig)
    options: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    init: str | None = None  # a state_dict file (e.g. a torchvision checkpoint) to start from
    resume: bool = False
    cache_dir: str | None = None
    storage_size: int | None = None  # explicit resize of stored images (e.g. 8-px images to 32)
    normalization: str | Normalization | None = None  # a name in data.normalization.NAMED, "auto" (from the training images), a Normalization (e.g. a teacher's), or the data's default
    hooks: list[Hook] = field(default_factory=list)  # compression stages (distillation, QAT, pruning) for the Trainer
    augment: bool = True  # random crops/flips on the training images
    extra: dict[str, Any] = field(default_factory=dict)  # more checkpoint metadata (e.g. the teacher of a distillation)


@dataclass
class TrainJobResult:
    checkpoint: Path
    result: TrainResult
    num_classes: int
    image_size: int
    train_images: int
    val_images: int
    skipped_images: int  # undecodable files left out of training and validation


def check_image_size(size: int) -> None:
    if not 1 <= size <= MAX_IMAGE_SIZE:
        raise UserError(
            f"image size {size} is out of range",
            hint=f"pass --image-size between 1 and {MAX_IMAGE_SIZE} (32 for CIFAR-style models, 224 for ImageNet-style)",
        )


def check_model_accepts(model: nn.Module, name: str, size: int) -> None:
    """Run one zero image through the model, so a size it cannot take fails now with advice."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except RuntimeError as err:
        raise UserError(
            f"model '{name}' cannot take {size}x{size} images ({str(err).splitlines()[0]})",
            hint=f"use a larger --image-size, or --small-input for {models.SMALL_INPUT_SIZE}x{models.SMALL_INPUT_SIZE} images",
        ) from None
    finally:
        model.train(was_training)


def load_initial_weights(model: nn.Module, path: str) -> list[str]:
    """Load a plain state_dict; classifier weights of another class count are skipped.

    Returns the keys that were left at their fresh initialisation.
    """
    state = read_weights(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise UserError(
            f"{path} does not match the architecture: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})",
            hint="check --model and its options (width, small input) against the checkpoint",
        )
    skipped = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    wrong_place = [k for k in skipped if not _is_classifier_key(model, k)]
    if wrong_place:
        k = wrong_place[0]
        raise UserError(
            f"{path}: '{k}' has shape {tuple(state[k].shape)}, the model expects {tuple(own[k].shape)}",
            hint="check --model and its options (width, small input) against the checkpoint",
        )
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return skipped


def _is_classifier_key(model: nn.Module, key: str) -> bool:
    last_linear = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    return key.startswith(last_linear + ".")


def choose_normalization(name: str | None, images, default: Normalization) -> Normalization:
    """The mean/std the model is trained with (and which the checkpoint carries to the phone)."""
    if name is None:
        return default
    if isinstance(name, Normalization):
        return name
    if name == "auto":
        return compute_normalization(images)
    if name not in NAMED_NORMALIZATIONS:
        raise UserError(f"unknown normalization '{name}'",
                        hint=f"use one of {', '.join(sorted(NAMED_NORMALIZATIONS))}, or 'auto' to compute it from the training images")
    return NAMED_NORMALIZATIONS[name]


def run_train_job(job: TrainJob) -> TrainJobResult:
    models.spec(job.model)  # an unknown name fails here, with suggestions, before any data is read
    size = job.image_size if job.image_size is not None else models.default_input_size(job.model, **job.options)
    check_image_size(size)
    opened = dict(image_size=size, cache_dir=job.cache_dir, seed=job.config.seed, storage_size=job.storage_size)
    train = open_dataset(job.data, split="train", train=job.augment, **opened)
    norm = choose_normalization(job.normalization, train.images, train.normalization)
    if norm != train.normalization:
        train = open_dataset(job.data, split="train", train=job.augment, normalization=norm, **opened)
    val = open_dataset(job.data, split="test", train=False, normalization=norm, **opened)
    num_classes = len(train.classes)
    model = models.create(job.model, num_classes=num_classes, **job.options)
    check_model_accepts(model, job.model, size)
    if job.init:
        skipped = load_initial_weights(model, job.init)
        if skipped:
            print(f"note: {len(skipped)} classifier tensors of {job.init} have another class count and start fresh: {', '.join(skipped)}")
    meta = CheckpointMeta(
        arch=job.model,
        options=dict(job.options),
        num_classes=num_classes,
        input_size=size,
        normalization=norm.to_dict(),
        labels=list(train.classes),
        extra={"data": os.path.abspath(job.data) if os.path.exists(job.data) else job.data,
               "skipped_images": [path for path, _ in [*train.skipped, *val.skipped]], **job.extra},
    )
    trainer = Trainer(model, job.config, train, val, hooks=job.hooks, out_dir=job.out_dir, meta=meta)
    result = trainer.fit(resume=job.resume)
    return TrainJobResult(
        checkpoint=Path(job.out_dir) / "best",
        result=result,
        num_classes=num_classes,
        image_size=size,
        train_images=len(train),
        val_images=len(val),
        skipped_images=len(train.skipped) + len(val.skipped),
    )
