"""Datasets for training and evaluation: ImageFolder, .npz and the built-in digits.

``open_dataset`` is the entry point; everything decodes through Pillow + numpy (no
torchvision). This package must not import models, converters, profiler,
android_harness or the CLI.
"""
from __future__ import annotations

from mobile_compress.data.dataset import HOLDOUT_FRACTION, SPLITS, ImageDataset, check_source, open_dataset
from mobile_compress.data.errors import DataError, DataWarning
from mobile_compress.data.normalization import CIFAR10, DIGITS, IMAGENET, Normalization, compute_normalization
from mobile_compress.data.transforms import eval_transform, train_transform
from mobile_compress.data.cache import ENV_CACHE
from mobile_compress.data.normalization import NAMED
from mobile_compress.data.transforms import eval_resize

__all__ = ["CIFAR10", "compute_normalization", "DataError", "DataWarning", "DIGITS", "ENV_CACHE", "eval_resize",
           "eval_transform", "HOLDOUT_FRACTION", "ImageDataset", "IMAGENET", "NAMED", "Normalization",
           "check_source", "open_dataset", "SPLITS", "train_transform"]
