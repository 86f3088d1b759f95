"""Datasets for training and evaluation: ImageFolder, .npz and the built-in digits.

``open_dataset`` is the entry point; everything decodes through Pillow + numpy (no
torchvision). This package must not import models, converters, profiler,
android_harness or the CLI.
"""
from __future__ import annotations

from mobile_compress.data.dataset import HOLDOUT_FRACTION, SPLITS, ImageDataset, open_dataset
from mobile_compress.data.errors import DataError, DataWarning
from mobile_compress.data.normalization import CIFAR10, DIGITS, IMAGENET, Normalization, compute_normalization
from mobile_compress.data.transforms import eval_transform, train_transform

__all__ = [
    "open_dataset", "ImageDataset", "Normalization", "compute_normalization",
    "IMAGENET", "CIFAR10", "DIGITS", "train_transform", "eval_transform",
    "DataError", "DataWarning", "SPLITS", "HOLDOUT_FRACTION",
]
