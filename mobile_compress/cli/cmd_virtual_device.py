"""`mobile-compress virtual-device --port N`: an ADB device on 127.0.0.1 for trying the profiler without a phone."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from android_harness.virtual_device.config import VirtualDeviceConfig, load_config
from android_harness.virtual_device.fake_benchmark_model import write_launcher
from android_harness.virtual_device.server import VirtualDevice
from mobile_compress.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("virtual-device", help="run a virtual Android device speaking ADB on 127.0.0.1 (for tests "
                                              "and trying the profiler without a phone)")
    p.add_argument("--port", type=int, default=5555, help="TCP port on 127.0.0.1 (default 5555; 0 picks a free one)")
    p.add_argument("--config", default=None, help="JSON or YAML file: props, cpu_max_khz, battery, thermal_zones, "
                                                   "authorized_keys/authorized_key_files, features, faults")
    p.add_argument("--workdir", default=None, help="sandbox directory (the device's files); default: a temporary one")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else VirtualDeviceConfig()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mc-virtual-device-"))
    try:
        device = VirtualDevice(config, workdir=workdir, port=args.port).start()
    except OSError as err:
        raise UserError(f"cannot listen on 127.0.0.1:{args.port}: {err.strerror}",
                        hint="choose another --port, or 0 for a free one") from err
    binary = write_launcher(workdir / "host" / "benchmark_model")
    print(f"virtual device {config.props.get('ro.product.model')} listening on {device.serial}", flush=True)
    print(f"  sandbox: {device.sandbox.root}")
    print(f"  connect: adb connect {device.serial}   (or --serial {device.serial} with --transport adb-shell-tcp)")
    print(f"  benchmark binary for it: {binary}   (pass it as --benchmark-model)", flush=True)
    try:
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        device.stop()
    return 0
