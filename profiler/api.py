"""``profile()``: every model x delegate on every device (or on the host), merged into one report.

One worker thread per device, so several phones are profiled at once; they all write to
one ResultStore. Whatever happens to one device (unauthorized, unplugged, no
benchmark_model for its ABI) is recorded against that device and the others go on.
"""
from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from android_harness.transport import Transport, TransportError
from profiler.device_job import DeviceFacts, ProfileSettings, now, profile_device
from profiler.host_job import profile_host
from profiler.model_id import identify
from profiler.reports import write_csv, write_html
from profiler.results import ResultStore, RunRecord

log = logging.getLogger(__name__)

# Opens one device: returns its transport and facts, or raises TransportError (unauthorized, gone...).
Opener = Callable[[str], "tuple[Transport, DeviceFacts]"]


@dataclass
class ProfileOutputs:
    json: Path
    csv: Path
    html: Path
    records: list[RunRecord] = field(default_factory=list)


def profile(settings: ProfileSettings, out_dir: Path, *, serials: list[str] | None = None,
            opener: Opener | None = None, host: bool = False, environment: dict | None = None,
            progress: Callable[[str], None] | None = None) -> ProfileOutputs:
    """Run (or resume) a profile into ``out_dir``; host mode when ``host`` is true."""
    progress = progress or _to_stderr
    store = ResultStore(out_dir, environment)
    if host:
        profile_host(settings, store, progress)
    else:
        if not serials or opener is None:
            raise ValueError("device mode needs serials and an opener")
        lock = threading.Lock()

        def say(message: str) -> None:
            with lock:
                progress(message)

        with ThreadPoolExecutor(max_workers=len(serials), thread_name_prefix="device") as pool:
            for future in [pool.submit(_one_device, serial, opener, settings, store, say) for serial in serials]:
                future.result()
    return write_reports(store)


def _to_stderr(message: str) -> None:
    """Progress goes to stderr, so `--json` output on stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


def write_reports(store: ResultStore) -> ProfileOutputs:
    records = store.records
    out = store.out_dir
    return ProfileOutputs(json=store.path, csv=write_csv(records, out / "profile.csv"),
                          html=write_html(records, out / "profile.html", store.environment), records=records)


def _one_device(serial: str, opener: Opener, settings: ProfileSettings, store: ResultStore,
                progress: Callable[[str], None]) -> None:
    try:
        transport, facts = opener(serial)
    except TransportError as err:
        _record_device_error(serial, settings, store, f"cannot open device {serial}: {err}")
        return
    try:
        progress(f"{facts.serial}: {facts.info.get('model', '?')} ({facts.abi})")
        profile_device(transport, facts, settings, store, progress)
    except Exception as err:  # a bug on one device must not lose the others' runs
        log.exception("profiling %s failed", serial)
        _record_device_error(facts.serial, settings, store, f"internal error on {serial}: {err!r}",
                             keep_recorded=True)
    finally:
        try:
            transport.close()
        except TransportError:
            pass


def _record_device_error(serial: str, settings: ProfileSettings, store: ResultStore, message: str,
                         keep_recorded: bool = False) -> None:
    """Mark the device's runs as not run; ``keep_recorded`` leaves runs that already have a record (and reason)."""
    for model in identify(settings.models):
        for delegate in settings.delegates:
            if keep_recorded and store.has(serial, model, delegate.label):
                continue
            if not store.done(serial, model, delegate.label):
                store.add(RunRecord.of(model, device=serial, delegate=delegate.label, status="error",
                                       error=message, delegate_config=asdict(delegate), measured_at=now()))
