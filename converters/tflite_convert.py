"""Keras model (from onnx2tf) -> one .tflite per flavour, each converted exactly once.

onnx2tf's own output stage saves the model as a SavedModel three times (about 80 % of
its run time on MobileNetV2, spent serialising Keras layer configs) and calibrates four
integer variants when we need one. We convert from a concrete function whose trackable
holds only the variables, so no Keras config is ever serialised. Only TFLite builtin ops are allowed: a model that needs TensorFlow
(Flex) ops would not load in a plain Android app, so that is a conversion error here.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

_IO_TYPES = {"int8": "int8", "uint8": "uint8", "float": "float32"}


def concrete_function(model: Any) -> Any:
    """The Keras model's call as a ``tf.function`` with fixed input shapes."""
    import tensorflow as tf

    signature = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    return tf.function(lambda *inputs: model(list(inputs) if len(inputs) > 1 else inputs[0]),
                       input_signature=signature).get_concrete_function()


def convert(model: Any, function: Any, fmt: str, calib: np.ndarray | None = None, int8_io: str = "int8") -> bytes:
    """Serialised .tflite for ``fmt`` (fp32, fp16, dynamic or int8); ``calib`` in the model's input layout."""
    import tensorflow as tf

    # The trackable holds only the variables: given the Keras model itself, TensorFlow would
    # serialise every layer's config into a SavedModel first (minutes on a MobileNet).
    holder = tf.Module()
    holder.variables_ = list(model.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], trackable_obj=holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fmt == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "int8":
        if calib is None or not len(calib):
            raise ValueError("full-integer int8 needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: _batches(calib, int(model.inputs[0].shape[0] or 1))
        converter.inference_input_type = tf.as_dtype(_IO_TYPES[int8_io])
        converter.inference_output_type = tf.as_dtype(_IO_TYPES[int8_io])
    elif fmt != "fp32":
        raise ValueError(f"unknown TFLite flavour {fmt!r}")
    return converter.convert()


def _batches(calib: np.ndarray, batch: int) -> Iterator[list[np.ndarray]]:
    for i in range(0, len(calib) - batch + 1, batch):
        yield [np.ascontiguousarray(calib[i:i + batch], dtype=np.float32)]
