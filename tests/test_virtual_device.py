"""The virtual device driven over real ADB packets by the adb-shell transport: shell, sync, auth, tools and faults.

Tests with Google's adb client and the adb server are in test_adb_transport.py.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import psutil
import pytest

from android_harness import device_info
from android_harness.transport import (CommandTimeoutError, DeviceDisconnectedError, DeviceStorageFullError,
                                       DeviceUnauthorizedError, TransportError, keys, quote)
from android_harness.transport.adb_shell_transport import AdbShellTransport
from android_harness.virtual_device.config import config_from_dict, load_config
from android_harness.virtual_device.fake_benchmark_model import write_launcher
from android_harness.virtual_device.faults import Faults
from android_harness.virtual_device.sandbox import Unmapper, rewrite
from android_harness.virtual_device.server import VirtualDevice
from mobile_compress.errors import UserError

TINY = Path(__file__).parent / "fixtures" / "tiny.tflite"
FAST = "--min_secs=0 --warmup_min_secs=0 --num_runs=5"


@pytest.fixture(autouse=True)
def private_key(tmp_path_factory, monkeypatch) -> Path:
    """Never touch the user's ~/.android: every test gets its own key location (one key for the module)."""
    path = tmp_path_factory.getbasetemp() / "keys" / "adbkey"
    monkeypatch.setenv(keys.ENV_KEY, str(path))
    return path


@pytest.fixture
def device(tmp_path):
    with VirtualDevice(config_from_dict({"props": {"ro.product.model": "Pixel Test"}}), workdir=tmp_path / "vd") as dev:
        yield dev


@pytest.fixture
def phone(device):
    transport = AdbShellTransport.tcp("127.0.0.1", device.port, connect_timeout=5.0, auth_timeout=1.0)
    yield transport
    transport.close()


@pytest.fixture
def benchmark(phone, tmp_path) -> str:
    phone.push(write_launcher(tmp_path / "host" / "benchmark_model"), "/data/local/tmp/benchmark_model", 0o755)
    phone.push(TINY, "/data/local/tmp/tiny.tflite")
    return "cd /data/local/tmp && ./benchmark_model --graph=/data/local/tmp/tiny.tflite"


def test_shell_v2_separates_streams_and_returns_the_exit_code(phone) -> None:
    result = phone.shell("echo out; echo err >&2; exit 7")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 7)
    assert phone.shell_v2 is True
    assert phone.shell("true").ok and not phone.shell("false").ok


def test_device_paths_map_to_the_sandbox_both_ways(phone, device) -> None:
    result = phone.shell("cd /data/local/tmp && pwd && touch made_here && ls /data/local/tmp && echo /data/local/tmp/*")
    assert result.stdout == "/data/local/tmp\nmade_here\n/data/local/tmp/made_here\n"
    assert (device.sandbox.root / "data/local/tmp/made_here").is_file()
    # A script run through sh is rewritten too, and $0 / arguments keep working.
    phone.shell("printf 'cat /proc/cpuinfo | grep -c ^processor; echo \"$1\"' > /data/local/tmp/s.sh")
    assert phone.shell(f"sh /data/local/tmp/s.sh {quote('a b')}").stdout == "8\na b\n"
    assert phone.shell("ls /sys/class/thermal").stdout.split() == [f"thermal_zone{i}" for i in range(5)]


def test_unmapper_handles_a_prefix_split_across_chunks(tmp_path) -> None:
    root = str(tmp_path / "root")
    data = f"x {root}/data/local/tmp/a and {root}\n".encode()
    for cut in range(1, len(data)):
        unmapper = Unmapper(root)
        assert unmapper.feed(data[:cut]) + unmapper.feed(data[cut:]) + unmapper.flush() == b"x /data/local/tmp/a and /\n"
    assert rewrite(b"cat /sys/x $d/sys /proc/self/status /proc/cpuinfo", b"/R") == \
        b"cat /R/sys/x $d/sys /proc/self/status /R/proc/cpuinfo"


def test_getprop_dumpsys_and_cmd_answer_from_the_config(phone) -> None:
    assert phone.shell("getprop ro.product.model").stdout == "Pixel Test\n"
    assert phone.shell("getprop no.such.prop fallback").stdout == "fallback\n"
    props = device_info.parse_getprop(phone.shell("getprop").stdout)
    assert props["ro.soc.model"] == "SM8550" and props["ro.product.cpu.abi"] == "arm64-v8a"
    battery = device_info.parse_dumpsys_battery(phone.shell("dumpsys battery").stdout)
    assert (battery.level, battery.voltage_mv, battery.status_name, battery.updates_stopped) == (80, 3950, "discharging", False)
    phone.shell("cmd battery unplug")
    assert device_info.parse_dumpsys_battery(phone.shell("dumpsys battery").stdout).updates_stopped
    phone.shell("dumpsys battery reset")
    assert not device_info.parse_dumpsys_battery(phone.shell("dumpsys battery").stdout).updates_stopped
    thermal = phone.shell("dumpsys thermalservice").stdout
    assert "Thermal Status: 0" in thermal and "Temperature{mValue=31.4, mType=3, mName=skin, mStatus=0}" in thermal
    assert phone.shell("cmd nosuchservice").exit_code == 20


def test_device_info_collect(phone) -> None:
    info = device_info.collect(phone)
    assert (info.model, info.soc, info.android, info.abi, info.cores) == ("Pixel Test", "SM8550", "14", "arm64-v8a", 8)
    assert info.freq_summary == "1x3.19 + 4x2.80 + 3x2.02 GHz"
    assert info.battery.percent == 80 and not info.battery.plugged


def test_push_and_pull_round_trip_in_64k_chunks(phone, device, tmp_path) -> None:
    payload = os.urandom(300_000)
    (tmp_path / "blob").write_bytes(payload)
    phone.push(tmp_path / "blob", "/data/local/tmp/sub/blob", 0o750)
    assert phone.shell("stat -c %a /data/local/tmp/sub/blob").stdout.strip() == "750"
    phone.pull("/data/local/tmp/sub/blob", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == payload
    with pytest.raises(TransportError, match="No such file"):
        phone.pull("/data/local/tmp/missing", tmp_path / "missing")
    assert not (tmp_path / "missing").exists() and not (tmp_path / "missing.partial").exists()
    # File transfer never leaves the sandbox, whatever the path says.
    for outside in ("/etc/mc-virtual-device-probe", "/data/../../etc/mc-virtual-device-probe"):
        with pytest.raises(TransportError, match="Permission denied"):
            phone.push(tmp_path / "blob", outside)
    assert not Path("/etc/mc-virtual-device-probe").exists()
    with pytest.raises(TransportError, match="Permission denied"):
        phone.pull("/etc/hostname", tmp_path / "hostname")


def test_sync_stat_and_list_with_adb_shell_directly(phone, device) -> None:
    """adb-shell's own sync client (STAT and LIST) against the device."""
    (device.sandbox.root / "data/local/tmp/f.bin").write_bytes(b"12345")
    mode, size, _mtime = phone._device.stat("/data/local/tmp/f.bin")
    assert size == 5 and mode & 0o170000 == 0o100000
    assert phone._device.stat("/data/local/tmp/none")[:2] == (0, 0)
    names = {entry.filename.decode(): entry.size for entry in phone._device.list("/data/local/tmp")}
    assert names["f.bin"] == 5 and "." in names


def test_legacy_shell_without_shell_v2_still_gives_exit_codes(tmp_path) -> None:
    config = config_from_dict({"features": ["cmd"]})
    with VirtualDevice(config, workdir=tmp_path / "vd") as dev:
        transport = AdbShellTransport.tcp("127.0.0.1", dev.port, connect_timeout=5.0)
        result = transport.shell("echo legacy; exit 3")
        assert (result.stdout, result.exit_code, transport.shell_v2) == ("legacy\n", 3, False)
        transport.close()


def test_auth_accepts_only_configured_keys(tmp_path, private_key) -> None:
    public = keys.public_key_text(private_key)
    assert private_key.stat().st_mode & 0o777 == 0o600
    assert keys.ensure_key(private_key).read_bytes() == private_key.read_bytes()  # reused, not regenerated
    with VirtualDevice(config_from_dict({"authorized_keys": [public]}), workdir=tmp_path / "ok") as dev:
        transport = AdbShellTransport.tcp("127.0.0.1", dev.port, connect_timeout=5.0, auth_timeout=1.0)
        assert transport.shell("echo in").stdout == "in\n"
        transport.close()
    other = tmp_path / "other" / "adbkey"
    with VirtualDevice(config_from_dict({"authorized_keys": [public]}), workdir=tmp_path / "no") as dev:
        with pytest.raises(DeviceUnauthorizedError, match="Allow"):
            AdbShellTransport.tcp("127.0.0.1", dev.port, key_path=other, connect_timeout=5.0, auth_timeout=1.0)


def test_unauthorized_fault_rejects_even_known_keys(tmp_path, private_key) -> None:
    config = config_from_dict({"authorized_keys": [keys.public_key_text(private_key)], "faults": {"unauthorized": True}})
    with VirtualDevice(config, workdir=tmp_path / "vd") as dev:
        with pytest.raises(DeviceUnauthorizedError):
            AdbShellTransport.tcp("127.0.0.1", dev.port, connect_timeout=5.0, auth_timeout=1.0)


def test_long_silent_command_does_not_trip_the_read_timeout(device) -> None:
    transport = AdbShellTransport.tcp("127.0.0.1", device.port, connect_timeout=0.5)
    assert transport.shell("sleep 1.5; echo done").stdout == "done\n"
    assert transport.shell("sleep 1; echo done", timeout=10).stdout == "done\n"
    transport.close()


def test_timeout_kills_the_command_and_reconnect_recovers(phone, device) -> None:
    with pytest.raises(CommandTimeoutError, match="within 0.5 s"):
        phone.shell("sleep 30; echo never", timeout=0.5)
    phone.reconnect()
    assert phone.shell("echo again").stdout == "again\n"
    deadline = time.monotonic() + 5
    while _sandbox_processes(device, "sleep 30") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sandbox_processes(device, "sleep 30")


def _sandbox_processes(device: VirtualDevice, text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if text in " ".join(proc.info["cmdline"] or []) and str(device.sandbox.root) in (proc.info["cwd"] or ""):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_disconnect_mid_shell_then_reconnect(phone, device) -> None:
    device.config.faults = Faults.from_dict({"disconnect": {"during": "shell", "match": "sleep", "after_seconds": 0.3}})
    with pytest.raises(DeviceDisconnectedError, match="disconnected"):
        phone.shell("echo start; sleep 5; echo end")
    with pytest.raises(DeviceDisconnectedError):
        phone.shell("echo while down")
    phone.reconnect()
    assert phone.shell("sleep 0.1; echo fine").stdout == "fine\n"  # the fault fired once


def test_disconnect_mid_push_then_retry(phone, device, tmp_path) -> None:
    (tmp_path / "big").write_bytes(os.urandom(400_000))
    device.config.faults = Faults.from_dict({"disconnect": {"during": "sync", "after_bytes": 100_000}})
    with pytest.raises(DeviceDisconnectedError):
        phone.push(tmp_path / "big", "/data/local/tmp/big")
    phone.reconnect()
    phone.push(tmp_path / "big", "/data/local/tmp/big")
    assert phone.shell("wc -c < /data/local/tmp/big").stdout.strip() == "400000"


def test_storage_full_on_push(phone, device, tmp_path) -> None:
    (tmp_path / "model.tflite").write_bytes(os.urandom(200_000))
    device.config.faults = Faults.from_dict({"storage_full": {"free_bytes": 50_000}})
    with pytest.raises(DeviceStorageFullError, match="No space left on device"):
        phone.push(tmp_path / "model.tflite", "/data/local/tmp/model.tflite")
    assert phone.shell("ls /data/local/tmp").stdout == ""  # no partial file left behind
    (tmp_path / "small").write_bytes(b"x" * 1000)
    phone.push(tmp_path / "small", "/data/local/tmp/small")  # the link still works; small files fit


def test_fake_benchmark_model_prints_benchmark_model_format(phone, benchmark) -> None:
    result = phone.shell(f"{benchmark} --num_threads=2 {FAST} --enable_op_profiling=true "
                         "--profiling_output_csv_file=/data/local/tmp/ops.csv")
    assert result.exit_code == 0, result.stderr
    log = result.stderr  # benchmark_model logs to stderr
    assert "INFO: Num threads: [2]" in log and "INFO: Graph: [/data/local/tmp/tiny.tflite]" in log
    stats = re.findall(r"^INFO: count=(\d+) first=\d+ curr=\d+ min=\d+ max=\d+ avg=[\d.e+]+ std=\d+ p5=\d+ "
                       r"median=\d+ p95=\d+$", log, re.MULTILINE)
    assert stats == ["5"]
    timings = re.search(r"^INFO: Inference timings in us: Init: (\d+), First inference: (\d+), Warmup \(avg\): "
                        r"([\d.e+]+), Inference \(avg\): ([\d.e+]+)$", log, re.MULTILINE)
    assert timings and float(timings.group(4)) > 0
    assert re.search(r"Memory footprint delta from the start of the tool \(MB\): init=[\d.]+ overall=[\d.]+", log)
    assert "Replacing 3 out of 3 node(s) with delegate (TfLiteXNNPackDelegate)" in log
    assert "Number of nodes executed: 1" in log  # fully delegated: one node, timed exactly
    assert phone.shell("head -2 /data/local/tmp/ops.csv").stdout.splitlines()[1].startswith("node type, start")


def test_fake_benchmark_model_delegates_fail_like_a_phone_without_them(phone, benchmark) -> None:
    gpu = phone.shell(f"{benchmark} {FAST} --use_gpu=true")
    assert gpu.exit_code == 1 and "ERROR: Failed to apply GPU delegate." in gpu.stderr
    nnapi = phone.shell(f"{benchmark} {FAST} --use_nnapi=true")
    assert nnapi.exit_code == 0
    assert "NNAPI accelerators available: [nnapi-reference]" in nnapi.stderr
    assert "the model graph will not be executed by the delegate" in nnapi.stderr
    assert "XNNPackDelegate" not in nnapi.stderr  # an explicit delegate replaces the default XNNPACK
    dsp = phone.shell(f"{benchmark} {FAST} --use_nnapi=true --nnapi_accelerator_name=qti-dsp")
    assert dsp.exit_code == 1 and "Failed to apply NNAPI delegate." in dsp.stderr
    external = phone.shell(f"{benchmark} {FAST} --external_delegate_path=/data/local/tmp/libQnnTFLiteDelegate.so")
    assert external.exit_code == 1
    assert "ERROR: Failed to load delegate from /data/local/tmp/libQnnTFLiteDelegate.so" in external.stderr
    plain = phone.shell(f"{benchmark} {FAST} --use_xnnpack=false")
    assert plain.exit_code == 0 and "XNNPackDelegate" not in plain.stderr and "Use xnnpack: [0]" in plain.stderr


def test_corrupt_model_fails_as_benchmark_model_does(phone, benchmark) -> None:
    phone.shell("head -c 3000 /dev/urandom > /data/local/tmp/bad.tflite; printf 'JUNK' | dd of=/data/local/tmp/bad.tflite "
                "bs=1 seek=4 conv=notrunc 2>/dev/null")
    result = phone.shell(f"cd /data/local/tmp && ./benchmark_model --graph=/data/local/tmp/bad.tflite {FAST}")
    assert result.exit_code == 1
    assert "ERROR: Model provided has model identifier 'JUNK', should be 'TFL3'" in result.stderr
    assert "ERROR: Failed to mmap model /data/local/tmp/bad.tflite" in result.stderr


def test_benchmark_crash_and_hang_faults(phone, device, benchmark) -> None:
    device.config.faults = Faults.from_dict({"benchmark": {"crash": "segv", "after_runs": 2}})
    device.publish_faults()
    crash = phone.shell(f"{benchmark} {FAST}")
    assert crash.exit_code == 139 and "Inference timings" not in crash.stderr
    device.config.faults = Faults.from_dict({"benchmark": {"hang": True, "after_runs": 1}})
    device.publish_faults()
    with pytest.raises(CommandTimeoutError):
        phone.shell(f"{benchmark} {FAST}", timeout=4)
    phone.reconnect()
    deadline = time.monotonic() + 5
    while _sandbox_processes(device, "benchmark_model") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sandbox_processes(device, "benchmark_model")


def test_battery_draws_more_while_the_benchmark_runs(phone, benchmark) -> None:
    node = "/sys/class/power_supply/battery/current_now"
    script = (f"rm -f /data/local/tmp/flag; ({benchmark} --min_secs=1.5 --warmup_min_secs=0 >/dev/null 2>&1; "
              f"touch /data/local/tmp/flag) & while [ ! -f /data/local/tmp/flag ]; do cat {node}; sleep 0.05; done; "
              f"cat {node}")
    samples = [int(v) for v in phone.shell(script, timeout=60).stdout.split()]
    assert -950000 in samples and samples[-1] == -250000


def test_config_file_errors_name_the_file_and_field(tmp_path) -> None:
    bad = tmp_path / "vd.yaml"
    bad.write_text("props: {ro.product.model: X}\nbatery: {}\n")
    with pytest.raises(UserError, match=r"vd.yaml: unknown field\(s\) \['batery'\]"):
        load_config(bad)
    bad.write_text("faults: {storage_full: {free: 3}}\n")
    with pytest.raises(UserError, match="vd.yaml: invalid virtual device config"):
        load_config(bad)
    good = tmp_path / "vd.json"
    good.write_text('{"props": {"ro.product.model": "Y"}, "cpu_max_khz": [1800000, 2400000]}')
    config = load_config(good)
    assert config.props["ro.product.model"] == "Y" and config.banner().startswith(b"device::ro.product.name=mc_virtual;")


def test_listens_on_loopback_only(device) -> None:
    assert device._listener.getsockname()[0] == "127.0.0.1"
