"""One profile job's private directory on a device: push, run the runner, pull, clean up.

Everything goes under ``/data/local/tmp/mobile-compress-<random>``, and leaving the
``with`` block removes it whatever happened (a failed push, a crash, a timeout). The
benchmark runs in the background on the device and the host polls for the runner's
``done`` file with short commands, so a run of many minutes never meets the
transport's read timeout, and a dropped link can be reconnected without losing the run.
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from android_harness.transport import Transport, TransportError, quote
from android_harness.transport.base import CommandTimeoutError, DeviceDisconnectedError

log = logging.getLogger(__name__)
REMOTE_ROOT = "/data/local/tmp"
RUNNER = Path(__file__).with_name("runner.sh")
SHORT_TIMEOUT_S = 30.0


@dataclass
class RunnerOptions:
    """How the device-side runner samples and waits (see runner.sh)."""

    interval_s: float = 0.1
    baseline_s: int = 2
    cooldown_s: int = 0
    cpu_mask: str | None = None
    power_supply_dir: str = "/sys/class/power_supply/battery"
    thermal_dir: str = "/sys/class/thermal"
    timeout_s: float = 600.0
    poll_s: float = 0.5


@dataclass
class RunResult:
    """Where the pulled files lie and how the run ended."""

    local_dir: Path
    exit_code: int | None
    timed_out: bool = False
    files: list[str] = field(default_factory=list)
    reconnects: int = 0
    refused: list[str] = field(default_factory=list)  # names the device listed that were not pulled (see pull_dir)


class BenchmarkTimeout(TransportError):
    """The benchmark ran past ``RunnerOptions.timeout_s``; it was killed and its partial files pulled.

    ``result``: what the run got so far (its pulled and refused files), so nothing of it is lost.
    """

    def __init__(self, message: str, result: "RunResult | None" = None) -> None:
        super().__init__(message)
        self.result = result


class DeviceSession:
    """A private working directory on one device for the length of a ``with`` block."""

    def __init__(self, transport: Transport, root: str = REMOTE_ROOT) -> None:
        self.transport = transport
        self.dir = f"{root.rstrip('/')}/mobile-compress-{secrets.token_hex(4)}"
        self.runner = f"{self.dir}/runner.sh"
        self.cleaned = False

    def __enter__(self) -> "DeviceSession":
        result = self.transport.shell(f"mkdir -p {quote(self.dir)}", timeout=SHORT_TIMEOUT_S)
        if not result.ok:
            raise TransportError(f"cannot create {self.dir} on {self.transport.serial}: {result.stdout.strip()}")
        try:
            self.transport.push(RUNNER, self.runner, 0o755)
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Remove the working directory; after a dropped link, reconnect once to do it."""
        stop = f"{_stop_runs(quote(self.dir) + '/*')}; rm -rf {quote(self.dir)}"
        for attempt in range(2):
            try:
                self.transport.shell(stop, timeout=SHORT_TIMEOUT_S)
                self.cleaned = True
                return
            except TransportError as err:
                if attempt == 0 and reconnect_quietly(self.transport):
                    continue
                log.warning("could not remove %s on %s: %s", self.dir, self.transport.serial, err)
                return

    def push(self, local: Path | str, name: str | None = None, mode: int = 0o644) -> str:
        """Copy a host file into the working directory; returns its device path."""
        remote = f"{self.dir}/{name or Path(local).name}"
        self.transport.push(local, remote, mode)
        return remote

    def out_dir(self, tag: str) -> str:
        """The device folder a run's files go to (for flags that name an output file there)."""
        return f"{self.dir}/{tag}"

    def run(self, tag: str, command: Sequence[str], local_dir: Path, options: RunnerOptions) -> RunResult:
        """Run ``command`` (benchmark and its flags) under the runner, wait for it, pull its results."""
        out = self.out_dir(tag)
        runner_args = ["-o", out, "-i", f"{options.interval_s:g}", "-b", str(int(options.baseline_s)),
                       "-c", str(int(options.cooldown_s)), "-p", options.power_supply_dir, "-t", options.thermal_dir]
        if options.cpu_mask:
            runner_args += ["-m", options.cpu_mask]
        words = " ".join(quote(w) for w in [*runner_args, "--", *command])
        # A retried run reuses its folder: stop the first attempt's runner if it still runs, then start clean.
        self.transport.shell(f"{_stop_runs(quote(out))}; rm -rf {quote(out)} && mkdir -p {quote(out)}",
                             timeout=SHORT_TIMEOUT_S)
        start = (f"cd {quote(self.dir)} && (sh {quote(self.runner)} {words} < /dev/null "
                 f"> {quote(out + '.log')} 2>&1 &)")
        self.transport.shell(start, timeout=SHORT_TIMEOUT_S)
        result = RunResult(local_dir=local_dir, exit_code=None)
        deadline = time.monotonic() + options.timeout_s + options.baseline_s + options.cooldown_s
        while True:
            try:
                done = self.transport.shell(f"cat {quote(out + '/done')} 2>/dev/null", timeout=SHORT_TIMEOUT_S)
            except (DeviceDisconnectedError, CommandTimeoutError):
                # The runner keeps going on the device; a new link can pick the run up where it is.
                if result.reconnects >= 1 or not reconnect_quietly(self.transport):
                    raise
                result.reconnects += 1
                continue
            text = done.stdout.strip()
            if text.lstrip("-").isdigit():
                result.exit_code = int(text)
                break
            if time.monotonic() > deadline:
                result.timed_out = True
                self._kill(out)
                break
            time.sleep(options.poll_s)
        result.files = self.pull_dir(out, local_dir, refused=result.refused)
        if result.timed_out:
            raise BenchmarkTimeout(f"benchmark ran past {options.timeout_s:g} s on {self.transport.serial}; "
                                   f"killed, partial files in {local_dir}", result)
        return result

    def _kill(self, out: str) -> None:
        meta = quote(out + "/meta.txt")
        # The benchmark only: the runner then records its exit status and the "after" snapshot.
        self.transport.shell(f"pid=$(sed -n 's/^pid=//p' {meta}); [ -n \"$pid\" ] && kill -9 \"$pid\"; true",
                             timeout=SHORT_TIMEOUT_S)
        for _ in range(20):
            if self.transport.shell(f"cat {quote(out + '/done')} 2>/dev/null", timeout=SHORT_TIMEOUT_S).stdout.strip():
                return
            time.sleep(0.25)

    def pull_dir(self, remote: str, local: Path, refused: list[str] | None = None) -> list[str]:
        """Every plain file of a device directory (not recursive); returns the names pulled.

        The listing is device output, so it is untrusted: a name that is not a plain file name
        (``../x``, ``/etc/x``, ``a/b``) or whose target would not lie directly in ``local`` is
        not pulled but logged and appended to ``refused``, and the other files are pulled as usual.
        """
        local.mkdir(parents=True, exist_ok=True)
        folder = local.resolve()
        listing = self.transport.shell(f"ls {quote(remote)} 2>/dev/null", timeout=SHORT_TIMEOUT_S)
        pulled: list[str] = []
        for name in dict.fromkeys(n.strip() for n in listing.stdout.splitlines() if n.strip()):
            problem = unsafe_name(name) or _outside(folder, name)
            if problem:
                log.warning("%s: not pulling %r listed in %s: %s", self.transport.serial, name, remote, problem)
                if refused is not None:
                    refused.append(name)
                continue
            self.transport.pull(f"{remote}/{name}", folder / name)
            pulled.append(name)
        return pulled


def unsafe_name(name: str) -> str | None:
    """Why ``name`` (from a device) is not a plain file name, or None when it is one."""
    if not name or name in (".", ".."):
        return "not a file name"
    if "/" in name or "\\" in name:
        return "a path, not a plain file name"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "contains a control character (NUL, newline ...)"
    return None


def _outside(folder: Path, name: str) -> str | None:
    """Why ``folder / name`` resolves (through any symlink) to somewhere not directly in ``folder``, or None."""
    target = (folder / name).resolve()
    if target.parent != folder:
        return f"its target {target} lies outside {folder}"
    return None


def _stop_runs(folders: str) -> str:
    """Shell code that kills the runner and benchmark of every run folder matching ``folders`` (already quoted).

    A run abandoned after a lost link keeps going on the phone; it must not write on into a
    folder that is being removed or reused. A pid is only killed while its command line still
    names our folder, so a pid the system has since reused for something else is left alone.
    """
    return (f"for m in {folders}/meta.txt; do [ -f \"$m\" ] && for p in $(sed -n 's/^runner=//p; s/^pid=//p' "
            f"\"$m\"); do grep -q mobile-compress- \"/proc/$p/cmdline\" 2>/dev/null && kill -9 \"$p\"; "
            f"done; done")


def reconnect_quietly(transport: Transport) -> bool:
    """Reopen a dropped link; False (logged) when the transport cannot or the device stays gone."""
    reconnect = getattr(transport, "reconnect", None)
    if reconnect is None:
        return False
    try:
        reconnect()
        return True
    except TransportError as err:
        log.warning("reconnecting to %s failed: %s", transport.serial, err)
        return False
