"""The model zoo: torchvision-compatible vision models without torchvision.

torchvision cannot be imported next to the CPU torch build we ship with, so the
architectures are re-implemented here with exactly torchvision's parameter names,
shapes, initialisation and forward op order (a torchvision checkpoint loads with
``strict=True`` and gives the same outputs), plus CIFAR ResNet-20/56 teachers.

    >>> import models
    >>> net = models.create("mobilenet_v2", num_classes=10, small_input=True)
    >>> models.spec("mobilenet_v2").default_input_size
    224

This package is the bottom layer: it imports nothing else of ours. Its errors are
plain ``ValueError`` subclasses that callers may turn into user-facing messages.
"""
from __future__ import annotations

# Importing the architecture modules registers their builders.
from . import cifar_resnet, mobilenet_v2, mobilenet_v3, resnet, shufflenet_v2, squeezenet  # noqa: F401
from .layers import make_divisible
from .registry import SMALL_INPUT_SIZE, ModelOptionError, ModelSpec, UnknownModelError, create, default_input_size, names, spec

__all__ = [
    "SMALL_INPUT_SIZE",
    "ModelOptionError",
    "ModelSpec",
    "UnknownModelError",
    "create",
    "default_input_size",
    "make_divisible",
    "names",
    "spec",
]
