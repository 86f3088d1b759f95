"""ADB transports behind one interface (``Transport``); ``connect`` picks one, ``list_devices`` shows what is attached.

Names exported here are the stable API for the profiler.
"""
from android_harness.transport.base import (CommandTimeoutError, DeviceDisconnectedError, DeviceNotFoundError,
                                            DeviceStorageFullError, DeviceUnauthorizedError, ShellResult, Transport,
                                            TransportError, quote)
from android_harness.transport.select import KINDS, AttachedDevice, connect, list_devices

__all__ = ["AttachedDevice", "CommandTimeoutError", "connect", "DeviceDisconnectedError", "DeviceNotFoundError",
           "DeviceStorageFullError", "DeviceUnauthorizedError", "KINDS", "list_devices", "quote", "ShellResult",
           "Transport", "TransportError"]
