"""PyTorch to ONNX and TFLite conversion with parity reports (conversion issue)."""
