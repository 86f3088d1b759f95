"""Quantization that simulates TFLite's int8 kernels: QAT, PTQ, and the integer graph the converters write.

``prepare(model, input_shape)`` makes the fake-quant twin of a float model (torch.fx
pass: BN folding, ReLU/ReLU6 fusion, per-channel symmetric weights, per-tensor
asymmetric activations, shared concatenation scales); ``calibrate`` observes ranges
(PTQ); ``QatHook`` is the QAT schedule for the Trainer; ``run_quantize_job`` does
either from a checkpoint; ``is_quantized`` tells a quantized checkpoint; and
``build_integer_graph`` is the converters' one contract (``IntegerGraph``): the float
graph TFLite converts and the int8 parameters to write into the .tflite.
"""
from __future__ import annotations

from mobile_compress.quantization.calibrate import calibrate
from mobile_compress.quantization.fake_quant import ActivationFakeQuant, set_observing
from mobile_compress.quantization.hook import QatHook
from mobile_compress.quantization.integer_graph import IntegerGraph, activation_ranges, build_integer_graph
from mobile_compress.quantization.job import METHODS, QuantizeJob, QuantizeJobResult, run_quantize_job
from mobile_compress.quantization.job import default_qat_config
from mobile_compress.quantization.prepare import prepare, set_bn_frozen
from mobile_compress.quantization.rebuild import is_quantized

__all__ = ["activation_ranges", "ActivationFakeQuant", "build_integer_graph", "calibrate", "default_qat_config",
           "IntegerGraph", "is_quantized", "METHODS", "prepare", "QatHook", "QuantizeJob", "QuantizeJobResult",
           "run_quantize_job", "set_bn_frozen", "set_observing"]
