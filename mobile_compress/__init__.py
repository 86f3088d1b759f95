"""The compression core of mobile-compress: data, training, distillation, pruning, low-rank factorisation and
quantization, each with one job behind its command. It imports only ``models``; the converters, the device
harness, the profiler and the commands (``workflows``) build on it."""
from __future__ import annotations

__version__ = "0.1.0"
