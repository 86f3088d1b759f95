"""ADB transports behind one interface (``Transport``)."""
from android_harness.transport.base import (DeviceStorageFullError, DeviceUnauthorizedError, ShellResult, Transport,
                                            TransportError, quote)

__all__ = ["Transport", "ShellResult", "TransportError", "DeviceUnauthorizedError", "DeviceStorageFullError", "quote"]
