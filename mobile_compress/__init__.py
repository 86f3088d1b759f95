"""mobile-compress: compress PyTorch vision models and ship them to Android phones."""
from __future__ import annotations

__version__ = "0.1.0"
