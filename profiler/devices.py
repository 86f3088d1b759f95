"""Which phones to profile and what the job needs to know about each, via android_harness."""
from __future__ import annotations

from android_harness.device_info import DeviceInfo, collect
from android_harness.transport import Transport, TransportError, connect, list_devices
from mobile_compress.errors import UserError
from profiler.device_job import DeviceFacts


def facts_from(info: DeviceInfo) -> DeviceFacts:
    cores = max(info.max_freq_khz, default=-1) + 1
    freqs = [info.max_freq_khz.get(i) for i in range(cores)]
    charging = info.battery.plugged if info.battery is not None else None
    summary = {"model": info.model, "manufacturer": info.manufacturer, "soc": info.soc, "android": info.android,
               "sdk": info.sdk, "abi": info.abi, "cores": info.cores, "cpu": info.freq_summary}
    return DeviceFacts(serial=info.serial, abi=info.abi or "", max_freq_khz=freqs, charging=charging,
                       info={k: v for k, v in summary.items() if v is not None})


def open_device(serial: str, kind: str | None = None) -> tuple[Transport, DeviceFacts]:
    """A connected transport and the device's facts; TransportError (unauthorized, gone, ...) if it cannot."""
    return attach(connect(serial, kind))


def attach(transport: Transport) -> tuple[Transport, DeviceFacts]:
    """The facts of an already connected device (closed again if they cannot be read)."""
    serial = transport.serial
    try:
        facts = facts_from(collect(transport))
    except BaseException:
        transport.close()
        raise
    if not facts.abi:
        transport.close()
        raise TransportError(f"{serial} did not report ro.product.cpu.abi, so no benchmark_model can be chosen")
    return transport, facts


def resolve_serials(requested: list[str], kind: str | None = None) -> list[str]:
    """``auto`` = every attached device (unauthorized ones too, so they are reported, not silently left out)."""
    serials: list[str] = []
    for item in requested:
        for serial in (s.strip() for s in item.split(",")):
            if serial and serial != "auto" and serial not in serials:
                serials.append(serial)
    if any(s.strip() == "auto" for item in requested for s in item.split(",")):
        try:
            attached = list_devices(kind)
        except TransportError as err:
            raise UserError(f"cannot list Android devices: {err}",
                            hint="or profile on this computer with --host") from err
        serials += [d.serial for d in attached if d.state in ("device", "unauthorized") and d.serial not in serials]
        if not serials:
            raise UserError("no Android device is attached",
                            hint="plug one in with USB debugging on, `adb connect HOST:PORT`, or use --host to "
                                 "profile on this computer's LiteRT interpreter")
    return serials
