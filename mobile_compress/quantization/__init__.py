"""Quantization that simulates TFLite's int8 kernels: QAT, PTQ, and what the converters need to deploy it.

``prepare(model, input_shape)`` makes the fake-quant twin of a float model (torch.fx
pass: BN folding, ReLU/ReLU6 fusion, per-channel symmetric weights, per-tensor
asymmetric activations, shared concatenation scales); ``calibrate`` observes ranges
(PTQ); ``QatHook`` is the QAT schedule for the Trainer; ``run_quantize_job`` does
either from a checkpoint; ``deploy_model`` / ``activation_ranges`` give the converters
the float graph and the int8 parameters to write into the .tflite.
"""
from __future__ import annotations

from mobile_compress.quantization.calibrate import calibrate
from mobile_compress.quantization.deploy import activation_ranges, deploy_model, quantized_activations, weight_scales
from mobile_compress.quantization.scheme import per_channel_scales
from mobile_compress.quantization.fake_quant import ActivationFakeQuant, set_observing
from mobile_compress.quantization.hook import QatHook
from mobile_compress.quantization.job import METHODS, QuantizeJob, QuantizeJobResult, is_quantized, run_quantize_job
from mobile_compress.quantization.prepare import prepare, set_bn_frozen
from mobile_compress.quantization.deploy import concat_quantizer_layers, deployed_layers, quantizer_layers, quantizer_of
from mobile_compress.quantization.job import default_qat_config

__all__ = ["activation_ranges", "ActivationFakeQuant", "calibrate", "concat_quantizer_layers",
           "default_qat_config", "deploy_model", "deployed_layers", "is_quantized", "METHODS", "prepare",
           "QatHook", "quantized_activations", "QuantizeJob", "quantizer_layers", "quantizer_of",
           "QuantizeJobResult", "per_channel_scales", "run_quantize_job", "set_bn_frozen", "set_observing", "weight_scales"]
