"""PyTorch to ONNX and TFLite conversion with parity reports (conversion issue).

``convert(ConvertConfig(source, out_dir, ...)) -> ConvertReport``. Heavy libraries
(torch.onnx, onnx2tf/TensorFlow, LiteRT) load only when a conversion runs.
"""
from converters.api import convert
from converters.config import FORMATS, ConvertConfig, Thresholds
from converters.report import ArtifactReport, ConvertReport

__all__ = ["convert", "ConvertConfig", "ConvertReport", "ArtifactReport", "Thresholds", "FORMATS"]
