"""Stopping the phone from charging for a measurement, and always giving it back.

``dumpsys battery unplug`` makes the battery service report no charger (and on most phones
stops charging); ``dumpsys battery reset`` restores the real state. The reset runs however
the block ends, so a failed job never leaves a phone that believes it is unplugged.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from android_harness.transport import Transport, TransportError

log = logging.getLogger(__name__)


@contextmanager
def charging_suspended(transport: Transport, enabled: bool = True) -> Iterator[None]:
    if not enabled:
        yield
        return
    transport.shell("dumpsys battery unplug", timeout=30)
    try:
        yield
    finally:
        try:
            transport.shell("dumpsys battery reset", timeout=30)
        except TransportError as err:
            log.warning("could not run `dumpsys battery reset` on %s: %s; run it by hand", transport.serial, err)
