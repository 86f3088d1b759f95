"""`mobile-compress virtual-device --port N`: an ADB device on 127.0.0.1 for trying the profiler without a phone.

Its shell runs as the user who starts it, so it asks for AUTH by default and trusts only that
user's own adb key; ``--insecure`` turns AUTH off and says so loudly. SIGTERM and SIGHUP stop
it like Ctrl-C, so its temporary sandbox is removed whichever way it is ended (SIGKILL aside).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from android_harness.transport import TransportError, keys
from android_harness.virtual_device import VirtualDeviceConfig, load_config
from android_harness.virtual_device import write_launcher
from android_harness.virtual_device import VirtualDevice
from mobile_compress.errors import UserError

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("virtual-device", help="run a virtual Android device speaking ADB on 127.0.0.1 (for tests "
                                              "and trying the profiler without a phone)")
    p.add_argument("--port", type=int, default=5555, help="TCP port on 127.0.0.1 (default 5555; 0 picks a free one)")
    p.add_argument("--config", default=None, help="JSON or YAML file: props, cpu_max_khz, battery, thermal_zones, "
                                                   "authorized_keys/authorized_key_files, features, faults")
    p.add_argument("--workdir", default=None, help="sandbox directory (the device's files); default: a temporary "
                                                    "one, removed when the device stops")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--insecure", action="store_true",
                   help="no AUTH: any local user's program can connect and run commands as you (default: only "
                        "the holder of your ~/.android/adbkey, or of the config's authorized_keys, gets in)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else VirtualDeviceConfig()
    if args.insecure:
        config.require_auth = False
    with _StopSignals() as signals:
        device = None
        try:
            try:
                device = VirtualDevice(config, workdir=args.workdir, port=args.port)
            except (TransportError, ValueError) as err:  # the user's own adb key cannot be made or read
                raise UserError(f"virtual device: cannot use {keys.default_key_path()}.pub: {err}",
                                hint=f"set {keys.ENV_KEY} to a writable key path (a malformed key: delete it to have "
                                     "a new one made), or list the keys to trust in --config authorized_key_files") from err
            try:
                device.start()
            except OSError as err:
                raise UserError(f"cannot listen on 127.0.0.1:{args.port}: {err.strerror}",
                                hint="choose another --port, or 0 for a free one") from err
            binary = write_launcher(device.sandbox.workdir / "host" / "benchmark_model")
            _announce(device, binary)
            deadline = None if args.seconds is None else time.monotonic() + args.seconds
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            signals.stopping = True  # a second Ctrl-C must not cut the cleanup short
            if device is not None:
                device.stop()  # also removes its temporary sandbox (not a --workdir)
    return 0


def _announce(device: VirtualDevice, binary: Path) -> None:
    config = device.config
    print(f"virtual device {config.props.get('ro.product.model')} listening on {device.serial}", flush=True)
    print(f"  sandbox: {device.sandbox.root}")
    if config.require_auth:
        trusted = "the keys in the config" if config.authorized_keys else f"{keys.default_key_path()}.pub"
        print(f"  auth: required; authorized: {trusted}")
    else:
        print("  auth: OFF (--insecure): ANY local user can connect and run commands as you")
        print(f"WARNING: virtual device {device.serial} accepts every ADB client without AUTH: any program of any "
              "user on this computer gets a shell as you. Stop it when done; drop --insecure to require your adb key.",
              file=sys.stderr, flush=True)
    print(f"  connect: adb connect {device.serial}   (or --serial {device.serial} with --transport adb-shell-tcp)")
    print(f"  benchmark binary for it: {binary}   (pass it as --benchmark-model)", flush=True)


class _StopSignals:
    """While active, Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt once (so the device stops and
    removes its temporary sandbox, which a default SIGTERM would leave behind); later ones are ignored."""

    def __init__(self) -> None:
        self.stopping = False
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self._previous = {sig: signal.signal(sig, self._handle) for sig in _STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
