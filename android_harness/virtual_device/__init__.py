"""A virtual Android device that speaks the real device-side ADB protocol on 127.0.0.1.

It lets the whole profiler flow (connect, push, shell, pull, faults) run in CI without a
phone. Modules: ``protocol`` (packet framing), ``auth`` (RSA), ``server`` (connections and
streams), ``shell`` (commands with the host's /bin/sh over a sandbox), ``sync`` (file
transfer), ``sandbox`` (the device filesystem), ``tools`` (getprop/dumpsys/cmd),
``fake_benchmark_model`` (benchmark_model on the host's LiteRT), ``config`` and ``faults``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use: the device-side tools (``tools``, ``shell``) run under ``python -S`` with the stdlib only and
# import ``android_harness.virtual_device.sandbox``, which runs this file; eager imports here would break them.
_WHERE = {"VirtualDevice": "server", "VirtualDeviceConfig": "config", "load_config": "config",
          "write_launcher": "fake_benchmark_model"}

__all__ = ["VirtualDevice", "VirtualDeviceConfig", "load_config", "write_launcher"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
