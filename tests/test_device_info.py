"""getprop, /proc/cpuinfo, cpufreq, `dumpsys battery` and uevent parsing on outputs captured from real phones.

Fixtures are copies of ../shared/fixtures/android (each with its .source.txt). Cases no
capture covers (CR-only line ends, UTF-16 without a BOM) are built from a captured file and
say so.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from android_harness import device_info as di

FIXTURES = Path(__file__).parent / "fixtures" / "android"


def read(folder: str, prefix: str) -> bytes:
    (path,) = [p for p in (FIXTURES / folder).glob(f"{prefix}_*.txt") if not p.name.endswith(".source.txt")]
    assert (path.with_name(path.name[:-4] + ".source.txt")).is_file(), "every fixture keeps its source note"
    return path.read_bytes()


GETPROP = [
    # prefix, model, soc, soc source, android, sdk, abi
    ("01", "24069PC21I", "SM8635", "ro.soc.model", "15", 35, "arm64-v8a"),
    ("02", "Infinix X670", "MT6781V/CDZAMB-H", "ro.soc.model", "13", 33, "arm64-v8a"),
    ("03", "SM-S936B", "SM8750", "ro.soc.model", "16", 36, "arm64-v8a"),  # UTF-16LE with BOM, CRLF
    ("06", "SM-A5560", "s5e8845", "ro.soc.model", "15", 35, "arm64-v8a"),
    ("08", "LIO-AL00", "kirin", "ro.soc.model", "12", 31, "arm64-v8a"),  # CRLF
    ("09", "CPH1909", "msm8953", "ro.board.platform", "8.1.0", 27, "arm64-v8a"),  # "000" before the first line
]


@pytest.mark.parametrize("prefix,model,soc,source,android,sdk,abi", GETPROP)
def test_getprop_dumps_give_the_device(prefix, model, soc, source, android, sdk, abi) -> None:
    props = di.parse_getprop(read("getprop", prefix))
    info = di.device_info_from("S", props, None, {}, None)
    assert (info.model, info.soc, info.soc_source, info.android, info.sdk, info.abi) == (model, soc, source, android, sdk, abi)


def test_getprop_keeps_every_property_and_multiline_values() -> None:
    props = di.parse_getprop(read("getprop", "01"))
    assert len(props) == 1067  # 1070 lines, one value spans 4 of them
    assert props["persist.sys.boot.reason.history"].split("\n") == [
        "reboot,,1745935181", "shutdown,userrequested,1745815614", "reboot,,1745768086", "reboot,,1745686927"]
    assert di.parse_getprop(read("getprop", "09"))["DEVICE_PROVISIONED"] == "1"  # after the stray "000"


def test_getprop_line_end_variants_match_the_original() -> None:
    original = read("getprop", "06")
    expected = di.parse_getprop(original)
    text = original.decode()
    # Constructed from the captured dump: CR-only line ends and UTF-16LE without a BOM.
    assert di.parse_getprop(text.replace("\n", "\r").encode()) == expected
    assert di.parse_getprop(text.encode("utf-16-le")) == expected
    utf16 = di.parse_getprop(read("getprop", "03"))
    assert utf16["ro.product.device"] == "pa2q" and not any("\r" in v for v in utf16.values())


def test_cpuinfo_arm64_and_armv7() -> None:
    pixel = di.parse_cpuinfo(read("proc", "02"))
    assert pixel.cores == 9
    assert [pixel.parts[i] for i in range(9)] == ["0xd46"] * 4 + ["0xd4d"] * 4 + ["0xd4e"]
    nexus = di.parse_cpuinfo(read("proc", "01"))
    assert nexus.cores == 4 and nexus.hardware.startswith("Qualcomm MSM 8974")


def test_cpufreq_listing_with_soft_wrapped_lines() -> None:
    listing = di.parse_sysfs_listing(read("proc", "04"))
    assert di.cpu_max_freqs_khz(listing) == {**{i: 1766400 for i in range(4)}, **{i: 2956800 for i in range(4, 8)}}
    # format=flowed wrapping is undone: the frequency list is one value again.
    freqs = listing["/sys/devices/system/cpu/cpu0/cpufreq/scaling_available_frequencies"].split()
    assert freqs[0] == "300000" and freqs[-1] == "1766400" and len(freqs) == 18
    info = di.device_info_from("S", {}, None, di.cpu_max_freqs_khz(listing), None)
    assert info.cores == 8 and info.freq_summary == "4x2.96 + 4x1.77 GHz"


BATTERY = [
    # prefix, level, voltage mV, temp (0.1 °C), status, plugged, updates stopped
    ("01", 44, 3872, 280, 2, True, False),
    ("06", 19, 3764, 275, 2, True, False),
    ("07", 100, 4312, 309, 5, True, False),
    ("08", 80, 4200, 180, 4, True, False),
    ("10", 84, 4063, 326, 2, True, False),
]


@pytest.mark.parametrize("prefix,level,voltage,temp,status,plugged,stopped", BATTERY)
def test_dumpsys_battery(prefix, level, voltage, temp, status, plugged, stopped) -> None:
    state = di.parse_dumpsys_battery(read("dumpsys", prefix))
    assert (state.level, state.voltage_mv, state.temperature_decic, state.status, state.plugged,
            state.updates_stopped) == (level, voltage, temp, status, plugged, stopped)


def test_dumpsys_battery_vendor_details() -> None:
    newer = di.parse_dumpsys_battery(read("dumpsys", "08"))
    assert newer.level == 80 and newer.extras["Capacity level"] == "3"  # not confused with "level"
    assert newer.ac_powered and not newer.usb_powered and newer.status_name == "not charging"
    samsung = di.parse_dumpsys_battery(read("dumpsys", "10"))
    assert samsung.current_now == 321 and samsung.charge_counter_uah == 0
    assert samsung.extras["LLB MAN"] == "20160426" and samsung.extras["mSavedBatteryAsoc"] == "77"
    stopped = di.parse_dumpsys_battery(read("dumpsys", "05"))
    assert stopped.updates_stopped and stopped.usb_powered and stopped.level is None


def test_uevent_files_and_logcat_maps() -> None:
    lavender = di.parse_uevent(read("sysfs", "03"))
    assert (lavender["current_now"], lavender["voltage_now"], lavender["status"]) == (-19531, 4336658, "Full")
    assert lavender["type"] == "Battery"  # listed twice in the file; the first wins
    pax = di.parse_uevent(read("sysfs", "05"))  # a shell prompt line on top
    assert (pax["current_now"], pax["voltage_now"], pax["temp"]) == (300, 4332000, 251)
    gta04 = di.parse_uevent(read("sysfs", "07"))
    assert (gta04["current_now"], gta04["status"], gta04["power_avg"]) == (354144, "Discharging", 1392840)
    moto = di.parse_uevent_samples(read("sysfs", "04"))
    assert [s["current_now"] for s in moto] == [-4306, -2103, 503, -9214, -2704]
    assert moto[0]["voltage_now"] == 4311731 and moto[0]["voltage_ocv"] == -22
    usb = di.parse_uevent(read("sysfs", "02"))  # a shell prompt line on top, microamps
    assert usb["current_max"] == 1500000 and usb["type"] == "USB_HVDCP"
    assert di.parse_uevent(read("sysfs", "01"))["current_max"] == 2000  # same vendor, milliamps: kept as reported
    broken = di.parse_uevent(read("sysfs", "06"))  # a gauge that failed to answer
    assert broken["temp"] == -2731 and broken["current_now"] == 0
