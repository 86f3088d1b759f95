"""PyTorch to ONNX and TFLite conversion with parity reports (conversion issue).

``convert(ConvertConfig(source, out_dir, ...)) -> ConvertReport``; ``export_int8`` for a
fake-quant model in memory. Heavy libraries (torch.onnx, onnx2tf/TensorFlow, LiteRT) load
only when a conversion runs.
"""
from converters.api import convert, export_int8
from converters.config import FORMATS, ConvertConfig, Thresholds
from converters.report import ArtifactReport, ConvertReport

__all__ = ["convert", "export_int8", "ConvertConfig", "ConvertReport", "ArtifactReport", "Thresholds", "FORMATS"]
