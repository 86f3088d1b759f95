"""A virtual Android device that speaks the real device-side ADB protocol on 127.0.0.1.

It lets the whole profiler flow (connect, push, shell, pull, faults) run in CI without a
phone. Modules: ``protocol`` (packet framing), ``auth`` (RSA), ``server`` (connections and
streams), ``shell`` (commands with the host's /bin/sh over a sandbox), ``sync`` (file
transfer), ``sandbox`` (the device filesystem), ``tools`` (getprop/dumpsys/cmd),
``fake_benchmark_model`` (benchmark_model on the host's LiteRT), ``config`` and ``faults``.
"""

from __future__ import annotations

from android_harness.virtual_device.config import VirtualDeviceConfig, load_config
from android_harness.virtual_device.fake_benchmark_model import write_launcher
from android_harness.virtual_device.server import VirtualDevice

__all__ = ["VirtualDevice", "VirtualDeviceConfig", "load_config", "write_launcher"]
