"""The whole profile flow: push, run runner.sh, poll, pull, parse, measure, report, clean up.

Two devices stand in for phones here:
- ``LocalShellDevice``: a small in-test Transport that runs device commands with the host's
  /bin/sh over a temporary directory (device paths rewritten), so the real runner.sh runs;
- the virtual ADB device (android_harness.virtual_device), driven through the real transport.
The benchmark binary is a shell script that prints benchmark_model's format (from a captured
fixture) or fails the way benchmark_model fails, chosen by the flags it gets.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from android_harness.delegates import DelegateConfig
from android_harness.session import DeviceSession, RunnerOptions
from android_harness.transport import ShellResult, TransportError
from android_harness.transport.base import DeviceDisconnectedError, DeviceStorageFullError
from profiler.api import profile
from profiler.device_job import DeviceFacts, ProfileSettings, profile_device
from profiler.reports import format_runs
from profiler.results import ResultStore, load

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny.tflite"
CAPTURED = FIXTURES / "android" / "benchmark_model" / "16_android-phone_adb_xnnpack_cpu_count1-curr-line.txt"
FAILED_NNAPI = FIXTURES / "android" / "benchmark_model" / "04_mi11_yolov5s_int8_nnapi_qti-default_failed.txt"

# A stand-in benchmark_model: prints a captured run for cpu, fails like the real tool for nnapi,
# crashes (SIGSEGV-style exit) for gpu, and sleeps past any timeout with --num_runs=999.
FAKE_BENCHMARK = """#!/bin/sh
case " $* " in
  *--use_nnapi=true*) cat '{failed}'; exit 1 ;;
  *--use_gpu=true*) echo 'INFO: Created TensorFlow Lite delegate for GPU.'; kill -SEGV $$ ;;
  *--num_runs=999*) sleep 30 ;;
esac
exec python3 -c "x = bytearray(30_000_000); import time; time.sleep(0.4); print(open('{captured}').read(), end='')"
"""


class LocalShellDevice:
    """A Transport over a host directory: device paths under /data and /sys map into ``root``."""

    def __init__(self, root: Path, serial: str = "LOCAL1") -> None:
        self.root, self.serial = root, serial
        self.commands: list[str] = []
        self.fail_push_after: int | None = None  # raise DeviceStorageFullError on the Nth push
        self.drop_on_poll: int = 0  # raise DeviceDisconnectedError on this many `cat .../done` polls
        self.reconnects = 0
        self.pushes = 0
        for sub in ("data/local/tmp", "sys/class/power_supply/battery", "sys/class/thermal/thermal_zone0"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        battery = root / "sys/class/power_supply/battery"
        (battery / "current_now").write_text("-450000\n")
        (battery / "voltage_now").write_text("3900000\n")
        (root / "sys/class/thermal/thermal_zone0/type").write_text("cpu-big\n")
        (root / "sys/class/thermal/thermal_zone0/temp").write_text("41500\n")

    def _map(self, text: str) -> str:
        return re.sub(r"(?<![\w/])/(data|sys)(?=/)", str(self.root) + r"/\1", text)

    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        self.commands.append(command)
        if self.drop_on_poll and "/done" in command and command.startswith("cat "):
            self.drop_on_poll -= 1
            raise DeviceDisconnectedError("USB link dropped")
        proc = subprocess.run(["/bin/sh", "-c", self._map(command)], capture_output=True, text=True, timeout=timeout)
        return ShellResult(proc.stdout.replace(str(self.root), ""), proc.returncode, proc.stderr)

    def push(self, local, remote: str, mode: int = 0o644) -> None:
        self.pushes += 1
        if self.fail_push_after is not None and self.pushes >= self.fail_push_after:
            raise DeviceStorageFullError(f"No space left on device writing {remote}")
        target = Path(self._map(remote))
        shutil.copyfile(local, target)
        target.chmod(mode)

    def pull(self, remote: str, local) -> None:
        shutil.copyfile(self._map(remote), local)

    def reconnect(self) -> None:
        self.reconnects += 1

    def close(self) -> None:
        pass

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in (self.root / "data/local/tmp").iterdir())


@pytest.fixture()
def fake_benchmark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "benchmark_model"
    path.write_text(FAKE_BENCHMARK.format(captured=CAPTURED, failed=FAILED_NNAPI))
    monkeypatch.setenv("MOBILE_COMPRESS_BENCHMARK_MODEL", str(path))
    return path


def settings(**overrides) -> ProfileSettings:
    base = dict(models=[TINY], delegates=[DelegateConfig("cpu", threads=4, big_cores=True), DelegateConfig("gpu"),
                                          DelegateConfig("nnapi", accelerator="qti-dsp")],
                runner=RunnerOptions(interval_s=0.05, baseline_s=0, timeout_s=20, poll_s=0.1), num_runs=5)
    base.update(overrides)
    return ProfileSettings(**base)


# Two cores like the CI host (taskset really runs here): cpu1 is the "big" one.
FACTS = DeviceFacts(serial="LOCAL1", abi="arm64-v8a", max_freq_khz=[1800000, 2400000], charging=False,
                    info={"model": "Local shell"})


def test_full_flow_on_local_shell_device(tmp_path: Path, fake_benchmark: Path) -> None:
    device = LocalShellDevice(tmp_path / "device")
    out = tmp_path / "out"
    with_baseline = settings(runner=RunnerOptions(interval_s=0.05, baseline_s=1, timeout_s=20, poll_s=0.1))
    outputs = profile(with_baseline, out, serials=["LOCAL1"], opener=lambda s: (device, FACTS), progress=lambda m: None)
    runs = {r.delegate: r for r in load(out / "profile.json")}
    cpu, gpu, nnapi = runs["cpu-4t-big"], runs["gpu-fp32"], runs["nnapi-qti-dsp"]
    # cpu: figures from the captured output, memory and power from the runner's samples
    assert cpu.status == "ok" and cpu.latency["mean_ms"] == 699.438 and cpu.latency["n"] == 50
    assert cpu.memory["footprint_overall_mb"] == 99.2031 and cpu.memory["vm_hwm_mb"] > 5
    assert cpu.power["status"] == "measured" and cpu.power["current_unit"] == "uA"
    assert cpu.power["run_mw"] == pytest.approx(0.45 * 3.9 * 1e3) and cpu.power["above_baseline_mw"] == pytest.approx(0)
    assert cpu.power["sample_rate_hz"] > 2 and cpu.power["baseline_samples"] >= 3
    assert cpu.thermal_before["temperatures_c"] == {"cpu-big": 41.5} and cpu.thermal_after["max_c"] == 41.5
    assert cpu.coverage[0]["delegate"] == "XNNPACK" and cpu.coverage[0]["state"] == "complete"
    assert any("-m 2 " in c for c in device.commands)  # pinned to the big core (mask 0x2)
    # gpu crashed, nnapi failed to apply: recorded, and the cpu run above is intact
    assert gpu.status == "failed" and "exited with 139" in gpu.error
    assert nnapi.status == "failed" and "Failed to apply NNAPI delegate" in nnapi.error
    assert nnapi.coverage == [{"delegate": "NNAPI", "state": "failed", "kernels": None, "nodes_replaced": None,
                               "nodes_total": None}]
    assert device.leftovers() == []  # the working directory is gone
    assert outputs.csv.read_text().count("\n") == 4 and "<svg" in outputs.html.read_text()
    assert (out / cpu.raw_dir / "stdout.txt").is_file() and (out / cpu.raw_dir / "power.tsv").is_file()


def test_resume_skips_recorded_runs(tmp_path: Path, fake_benchmark: Path) -> None:
    device = LocalShellDevice(tmp_path / "device")
    out = tmp_path / "out"
    one = settings(delegates=[DelegateConfig("cpu", threads=1)])
    profile(one, out, serials=["LOCAL1"], opener=lambda s: (device, FACTS), progress=lambda m: None)
    first = (out / "profile.json").read_text()
    device.commands.clear()
    messages: list[str] = []
    profile(one, out, serials=["LOCAL1"], opener=lambda s: (device, FACTS), progress=messages.append)
    assert device.commands == [] and any("already recorded" in m for m in messages)
    assert json.loads((out / "profile.json").read_text())["runs"] == json.loads(first)["runs"]


def test_disconnect_mid_run_reconnects_and_keeps_going(tmp_path: Path, fake_benchmark: Path) -> None:
    device = LocalShellDevice(tmp_path / "device")
    device.drop_on_poll = 1
    store = ResultStore(tmp_path / "out")
    profile_device(device, FACTS, settings(delegates=[DelegateConfig("cpu", threads=1)]), store)
    [record] = store.records
    assert record.status == "ok" and device.reconnects == 1 and device.leftovers() == []


def test_second_drop_retries_the_run_once_after_stopping_the_first(tmp_path: Path, fake_benchmark: Path) -> None:
    device = LocalShellDevice(tmp_path / "device")
    device.drop_on_poll = 2  # the session's own reconnect absorbs one drop; the second makes the job retry the run
    store = ResultStore(tmp_path / "out")
    profile_device(device, FACTS, settings(delegates=[DelegateConfig("cpu", threads=1)]), store)
    [record] = store.records
    assert record.status == "ok" and record.attempts == 2 and device.reconnects == 2
    restart = [c for c in device.commands if "rm -rf" in c and "mkdir -p" in c]
    assert len(restart) == 2 and "kill -9" in restart[1]  # the retry stopped the first attempt's runner
    assert device.leftovers() == []


def test_device_that_stays_gone_fails_clearly_and_keeps_finished_runs(tmp_path: Path, fake_benchmark: Path) -> None:
    device = LocalShellDevice(tmp_path / "device")
    store = ResultStore(tmp_path / "out")
    original = device.shell
    calls = {"n": 0}

    def flaky(command: str, timeout: float | None = None) -> ShellResult:
        # after the first run finishes, every later poll loses the link, and reconnecting does not help
        if "/done" in command and command.startswith("cat ") and store.records:
            raise DeviceDisconnectedError("device vanished")
        return original(command, timeout)

    device.shell = flaky  # type: ignore[method-assign]
    two = settings(delegates=[DelegateConfig("cpu", threads=1), DelegateConfig("cpu", threads=2),
                              DelegateConfig("cpu", threads=4)])
    profile_device(device, FACTS, two, store)
    by = {r.delegate: r for r in store.records}
    assert by["cpu-1t"].status == "ok"
    assert by["cpu-2t"].status == "error" and "disconnected" in by["cpu-2t"].error
    assert by["cpu-4t"].status == "error" and "run the same command again" in by["cpu-4t"].error
    assert device.leftovers() == []


def test_storage_full_on_push_is_recorded_and_cleaned(tmp_path: Path, fake_benchmark: Path) -> None:
    device = LocalShellDevice(tmp_path / "device")
    device.fail_push_after = 3  # runner, benchmark_model, then the model
    store = ResultStore(tmp_path / "out")
    profile_device(device, FACTS, settings(delegates=[DelegateConfig("cpu", threads=1)]), store)
    [record] = store.records
    assert record.status == "error" and "storage full" in record.error and "tiny.tflite" in record.error
    assert device.leftovers() == []


def test_benchmark_timeout_kills_and_records(tmp_path: Path, fake_benchmark: Path) -> None:
    device = LocalShellDevice(tmp_path / "device")
    store = ResultStore(tmp_path / "out")
    slow = settings(delegates=[DelegateConfig("cpu", threads=1)], num_runs=999,
                    runner=RunnerOptions(interval_s=0.05, baseline_s=0, timeout_s=1.0, poll_s=0.1))
    profile_device(device, FACTS, slow, store)
    [record] = store.records
    assert record.status == "failed" and "timed out" in record.error
    assert device.leftovers() == []


def test_corrupt_model_and_missing_benchmark_binary(tmp_path: Path, fake_benchmark: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"<html>not a model</html>")
    device = LocalShellDevice(tmp_path / "device")
    store = ResultStore(tmp_path / "out")
    profile_device(device, FACTS, settings(models=[bad, TINY], delegates=[DelegateConfig("cpu", threads=1)]), store)
    by = {r.model: r for r in store.records}
    assert by["bad.tflite"].status == "error" and "not a TFLite flatbuffer" in by["bad.tflite"].error
    assert by["tiny.tflite"].status == "ok"
    monkeypatch.setenv("MOBILE_COMPRESS_BENCHMARK_MODEL", str(tmp_path / "nowhere" / "benchmark_model"))
    store2 = ResultStore(tmp_path / "out2")
    profile_device(device, FACTS, settings(delegates=[DelegateConfig("cpu", threads=1)]), store2)
    [missing] = store2.records
    assert missing.status == "error" and "android_aarch64_benchmark_model" in missing.error


def test_session_cleans_up_when_a_push_fails(tmp_path: Path) -> None:
    device = LocalShellDevice(tmp_path / "device")
    device.fail_push_after = 1
    with pytest.raises(TransportError):
        with DeviceSession(device):
            pass
    assert device.leftovers() == []


def test_two_devices_concurrently_merge_into_one_report(tmp_path: Path, fake_benchmark: Path) -> None:
    devices = {s: LocalShellDevice(tmp_path / s, serial=s) for s in ("PHONE_A", "PHONE_B")}
    facts = {s: DeviceFacts(serial=s, abi="arm64-v8a", charging=False, info={"model": s}) for s in devices}
    out = tmp_path / "out"
    outputs = profile(settings(delegates=[DelegateConfig("cpu", threads=1)]), out, serials=list(devices),
                      opener=lambda s: (devices[s], facts[s]), progress=lambda m: None)
    assert sorted((r.device, r.status) for r in outputs.records) == [("PHONE_A", "ok"), ("PHONE_B", "ok")]
    html = outputs.html.read_text()
    assert "PHONE_A · cpu-1t" in html and "PHONE_B · cpu-1t" in html


def test_unreachable_device_does_not_stop_the_other(tmp_path: Path, fake_benchmark: Path) -> None:
    good = LocalShellDevice(tmp_path / "good", serial="GOOD")

    def opener(serial: str):
        if serial == "BAD":
            raise TransportError("device BAD is unauthorized")
        return good, DeviceFacts(serial="GOOD", abi="arm64-v8a", charging=False)

    outputs = profile(settings(delegates=[DelegateConfig("cpu", threads=1)]), tmp_path / "out",
                      serials=["BAD", "GOOD"], opener=opener, progress=lambda m: None)
    by = {r.device: r for r in outputs.records}
    assert by["GOOD"].status == "ok" and by["BAD"].status == "error" and "unauthorized" in by["BAD"].error


def test_host_mode_is_labelled_host(tmp_path: Path) -> None:
    outputs = profile(settings(delegates=[DelegateConfig("cpu", threads=1), DelegateConfig("gpu")], num_runs=20),
                      tmp_path / "out", host=True, progress=lambda m: None)
    by = {r.delegate: r for r in outputs.records}
    cpu = by["cpu-1t"]
    assert cpu.mode == "host" and cpu.device == "host" and cpu.status == "ok"
    assert cpu.latency["source"] == "per-run samples" and cpu.latency["n"] == 20
    assert cpu.latency["p50_ms"] <= cpu.latency["p99_ms"] and cpu.latency["ci95_low_ms"] <= cpu.latency["mean_ms"]
    assert by["gpu-fp32"].status == "skipped"
    assert "not on a phone" in outputs.html.read_text()


# ---------------------------------------------------------------- the virtual ADB device, over real ADB packets

@pytest.fixture()
def adb_key(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    from android_harness.transport import keys

    monkeypatch.setenv(keys.ENV_KEY, str(tmp_path_factory.getbasetemp() / "keys" / "adbkey"))


@pytest.fixture()
def virtual_benchmark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from android_harness.virtual_device.fake_benchmark_model import write_launcher

    path = write_launcher(tmp_path / "host" / "benchmark_model")
    monkeypatch.setenv("MOBILE_COMPRESS_BENCHMARK_MODEL", str(path))
    return path


def virtual_device(tmp_path: Path, **config):
    from android_harness.virtual_device.config import config_from_dict
    from android_harness.virtual_device.server import VirtualDevice

    # Two cores like the CI host, because taskset really runs there: cpu1 is the big one.
    return VirtualDevice(config_from_dict({"cpu_max_khz": [1800000, 2400000], **config}), workdir=tmp_path / "vd")


def quick(**overrides) -> ProfileSettings:
    base = dict(models=[TINY], delegates=[DelegateConfig("cpu", threads=1)], num_runs=5, min_secs=0.0,
                extra_flags=["--warmup_min_secs=0"],
                runner=RunnerOptions(interval_s=0.05, baseline_s=0, timeout_s=30, poll_s=0.1))
    base.update(overrides)
    return ProfileSettings(**base)


def open_virtual(serial: str):
    """adb-shell over TCP with a short auth timeout (an unauthorized device answers in 1 s, not 10)."""
    from android_harness.transport.adb_shell_transport import AdbShellTransport
    from profiler.devices import attach

    host, _, port = serial.rpartition(":")
    return attach(AdbShellTransport.tcp(host, int(port), connect_timeout=5.0, auth_timeout=1.0))


def test_virtual_device_full_flow(tmp_path: Path, adb_key, virtual_benchmark) -> None:
    with virtual_device(tmp_path) as dev:
        settings_ = quick(delegates=[DelegateConfig("cpu", threads=1, big_cores=True), DelegateConfig("gpu"),
                                     DelegateConfig("nnapi")], min_secs=0.2, peak_memory=True,
                          runner=RunnerOptions(interval_s=0.05, baseline_s=1, timeout_s=30, poll_s=0.1))
        outputs = profile(settings_, tmp_path / "out", serials=[dev.serial], opener=open_virtual,
                          progress=lambda m: None)
        leftovers = sorted(p.name for p in (dev.sandbox.root / "data/local/tmp").iterdir())
    by = {r.delegate: r for r in outputs.records}
    cpu = by["cpu-1t-big"]
    assert cpu.status == "ok", cpu.error
    assert cpu.device_info["model"] == "Virtual Phone" and cpu.device_info["abi"] == "arm64-v8a"
    assert cpu.latency["n"] >= 5 and 0 < cpu.latency["min_ms"] <= cpu.latency["mean_ms"] <= cpu.latency["max_ms"]
    assert cpu.latency["ci95_low_ms"] <= cpu.latency["mean_ms"] <= cpu.latency["ci95_high_ms"]
    assert cpu.memory["vm_hwm_mb"] > 10 and cpu.memory["footprint_overall_mb"] is not None
    assert cpu.memory["periodic_peak_mb"] > 0  # --report_peak_memory_footprint
    # the virtual battery draws 950 mA under load against 250 mA idle (config defaults, negative = discharge)
    assert cpu.power["status"] == "measured" and cpu.power["discharge_sign"] == "negative"
    assert 0 < cpu.power["above_baseline_mw"] and cpu.power["mj_per_inference"] > 0
    assert cpu.thermal_before["status_name"] == "none" and cpu.thermal_before["max_c"] == 40.1
    assert by["gpu-fp32"].status == "failed" and "Failed to apply GPU delegate" in by["gpu-fp32"].error
    nnapi = by["nnapi"]
    assert nnapi.status == "ok" and {"delegate": "NNAPI", "state": "not executed", "kernels": 0,
                                     "nodes_replaced": None, "nodes_total": None} in nnapi.coverage
    assert leftovers == []


def test_virtual_device_disconnect_mid_run_reconnects(tmp_path: Path, adb_key, virtual_benchmark) -> None:
    faults = {"disconnect": {"during": "shell", "match": "/done", "after_seconds": 0.0, "times": 1}}
    with virtual_device(tmp_path, faults=faults) as dev:
        outputs = profile(quick(op_profiling=True), tmp_path / "out", serials=[dev.serial], opener=open_virtual,
                          progress=lambda m: None)
        leftovers = sorted(p.name for p in (dev.sandbox.root / "data/local/tmp").iterdir())
    [record] = outputs.records
    assert record.status == "ok" and leftovers == []
    # op profiling went to the CSV file on the device, was pulled and parsed
    assert (tmp_path / "out" / record.raw_dir / "op_profile.csv").is_file()
    assert record.slowest_ops and record.slowest_ops[0]["avg_ms"] >= record.slowest_ops[-1]["avg_ms"]


def test_virtual_device_unauthorized(tmp_path: Path, adb_key, virtual_benchmark) -> None:
    with virtual_device(tmp_path, faults={"unauthorized": True}) as dev:
        outputs = profile(quick(), tmp_path / "out", serials=[dev.serial], opener=open_virtual, progress=lambda m: None)
    [record] = outputs.records
    assert record.status == "error" and "did not accept this host's ADB key" in record.error
    assert "tap 'Allow'" in record.error


def test_virtual_device_storage_full(tmp_path: Path, adb_key, virtual_benchmark) -> None:
    with virtual_device(tmp_path, faults={"storage_full": {"free_bytes": 0}}) as dev:
        outputs = profile(quick(), tmp_path / "out", serials=[dev.serial], opener=open_virtual, progress=lambda m: None)
        leftovers = sorted(p.name for p in (dev.sandbox.root / "data/local/tmp").iterdir())
    [record] = outputs.records
    assert record.status == "error" and "no space left" in record.error and leftovers == []


def test_virtual_device_crash_hang_and_corrupt_model(tmp_path: Path, adb_key, virtual_benchmark) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(TINY.read_bytes()[:8] + b"\x00" * 64)  # a TFLite identifier, then garbage
    with virtual_device(tmp_path, faults={"benchmark": {"crash": "segv"}}) as dev:
        crashed = profile(quick(models=[TINY, broken]), tmp_path / "out", serials=[dev.serial], opener=open_virtual,
                          progress=lambda m: None)
        dev.config.faults.benchmark = None
        from android_harness.virtual_device.faults import BenchmarkFault

        dev.config.faults.benchmark = BenchmarkFault(hang=True)
        dev.publish_faults()
        hung = profile(quick(runner=RunnerOptions(interval_s=0.05, baseline_s=0, timeout_s=2, poll_s=0.1)),
                       tmp_path / "out2", serials=[dev.serial], opener=open_virtual, progress=lambda m: None)
        leftovers = sorted(p.name for p in (dev.sandbox.root / "data/local/tmp").iterdir())
    by = {r.model: r for r in crashed.records}
    assert by["tiny.tflite"].status == "failed" and "exited with 139" in by["tiny.tflite"].error
    assert by["broken.tflite"].status == "failed"
    [hang] = hung.records
    assert hang.status == "failed" and "timed out" in hang.error
    assert leftovers == []


def test_pull_dir_pulls_only_plain_names_into_the_folder(tmp_path: Path) -> None:
    """Each kind of name a device could list to reach past the local folder is refused; the rest is pulled."""

    class ListingDevice(LocalShellDevice):
        def shell(self, command: str, timeout: float | None = None) -> ShellResult:
            if command.startswith("ls "):
                return ShellResult("\n".join(listing) + "\n", 0, "")
            return super().shell(command, timeout)

    device = ListingDevice(tmp_path / "device")
    remote = device.root / "data/local/tmp/run"
    remote.mkdir()
    for name in ("stdout.txt", "power.tsv", "done", "me..ta.txt"):
        (remote / name).write_text(f"device {name}\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("the user's file\n")
    local = tmp_path / "out" / "raw"
    local.mkdir(parents=True)
    (local / "done").symlink_to(outside)  # left in the run folder: a pull must not write through it
    listing = ["stdout.txt", "power.tsv", "stdout.txt", "me..ta.txt", "done", "..", ".", "../outside.txt",
               str(outside), "a/b", "a\\b", "nul\0name", "esc\x1bname"]
    refused: list[str] = []
    pulled = DeviceSession(device).pull_dir("/data/local/tmp/run", local, refused=refused)
    assert pulled == ["stdout.txt", "power.tsv", "me..ta.txt"]
    assert refused == ["done", "..", ".", "../outside.txt", str(outside), "a/b", "a\\b", "nul\0name", "esc\x1bname"]
    assert outside.read_text() == "the user's file\n"
    assert (local / "stdout.txt").read_text() == "device stdout.txt\n"
    assert sorted(p.name for p in local.iterdir()) == ["done", "me..ta.txt", "power.tsv", "stdout.txt"]


# A hostile phone: its `ls` of a finished run folder adds names that point off the host's run folder,
# and puts a file behind each on the device, so the pull succeeds. Other listings are the real ls.
HOSTILE_LS = """#!/bin/sh
for ls in /bin/ls /usr/bin/ls; do [ -x "$ls" ] && break; done
"$ls" "$@" || exit
if [ $# -eq 1 ] && [ -f "$1/done" ]; then
  for name in {names}; do
    mkdir -p "$(dirname "$1/$name")" && echo 'written by the device' > "$1/$name" && echo "$name"
  done
fi
"""


def test_virtual_device_listing_cannot_write_outside_out(tmp_path: Path, adb_key, virtual_benchmark, caplog) -> None:
    """Names from the device's ls are untrusted: '../..' and absolute paths are refused, the run's files pulled."""
    out = tmp_path / "out"
    # the run's files go to out/raw/<serial>/<model>/<delegate>/: five '..' climb out of --out
    climbing, absolute = "../../../../../escaped.txt", str(tmp_path / "absolute.txt")
    with virtual_device(tmp_path) as dev:
        ls = dev.sandbox.root / "system/bin/ls"
        ls.write_text(HOSTILE_LS.format(names=f"'{climbing}' '{absolute}'"))
        ls.chmod(0o755)
        with caplog.at_level("WARNING", logger="android_harness.session"):
            outputs = profile(quick(), out, serials=[dev.serial], opener=open_virtual, progress=lambda m: None)
    assert not (tmp_path / "escaped.txt").exists() and not Path(absolute).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host", "out", "vd"]
    [record] = outputs.records
    assert record.status == "ok", record.error  # the run's own files were pulled and measured
    raw = out / record.raw_dir
    assert (raw / "stdout.txt").is_file() and (raw / "done").is_file()
    assert not list(out.rglob("*escaped*")) and not list(out.rglob("absolute.txt"))
    refused = [r.getMessage() for r in caplog.records if "not pulling" in r.getMessage()]
    assert len(refused) == 2 and climbing in refused[0] + refused[1] and absolute in refused[0] + refused[1]
    assert all("not a plain file name" in message for message in refused)
    # nothing is lost: the run's record keeps what the device listed and was not pulled, and every view says so
    [run] = json.loads((out / "profile.json").read_text())["runs"]
    assert [r["name"] for r in run["refused_files"]] == [climbing, absolute]
    assert all(r["reason"] == "a path, not a plain file name" for r in run["refused_files"])
    note = "not pulled from the device, 2 unsafe file names"
    assert note in format_runs(outputs.records) and climbing in format_runs(outputs.records)
    assert note in outputs.html.read_text() and absolute in outputs.html.read_text()
    [row] = csv.DictReader(outputs.csv.open(newline=""))
    assert climbing in row["refused_files"] and absolute in row["refused_files"]


def test_a_timed_out_run_still_records_what_it_refused_to_pull(tmp_path: Path, adb_key, virtual_benchmark) -> None:
    from android_harness.virtual_device.faults import BenchmarkFault

    with virtual_device(tmp_path) as dev:
        ls = dev.sandbox.root / "system/bin/ls"
        ls.write_text(HOSTILE_LS.format(names="'../../../../../escaped.txt'"))
        ls.chmod(0o755)
        dev.config.faults.benchmark = BenchmarkFault(hang=True)
        dev.publish_faults()
        hung = profile(quick(runner=RunnerOptions(interval_s=0.05, baseline_s=0, timeout_s=2, poll_s=0.1)),
                       tmp_path / "out", serials=[dev.serial], opener=open_virtual, progress=lambda m: None)
    [record] = hung.records
    assert record.status == "failed" and "timed out" in record.error
    assert [r["name"] for r in record.refused_files] == ["../../../../../escaped.txt"]
    assert not (tmp_path / "escaped.txt").exists()


# ---------------------------------------------------------------- the command line

def test_cli_profile_on_virtual_device(tmp_path: Path, adb_key, virtual_benchmark, capsys) -> None:
    from workflows.cli import main

    with virtual_device(tmp_path) as dev:
        code = main(["profile", str(TINY), "--device", dev.serial, "--transport", "adb-shell-tcp",
                     "--delegates", "cpu", "--threads", "1,2", "--runs", "3", "--warmup", "1", "--min-secs", "0", "--baseline", "0",
                     "--sample-interval", "0.05", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0
    assert "cpu-1t" in out and "cpu-2t" in out and "Virtual Phone (arm64-v8a)" in captured.err  # progress on stderr
    runs = json.loads((tmp_path / "out" / "profile.json").read_text())["runs"]
    assert sorted((r["delegate"], r["status"]) for r in runs) == [("cpu-1t", "ok"), ("cpu-2t", "ok")]
    assert {r["device_info"]["soc"] for r in runs} == {"SM8550"}
    assert (tmp_path / "out" / "profile.html").is_file() and (tmp_path / "out" / "profile.csv").is_file()


def test_host_mode_survives_a_model_file_that_crashes_the_interpreter(tmp_path: Path) -> None:
    """A crafted .tflite segfaults LiteRT's parser: the run of that file is recorded as an error, the others go on."""
    import sys

    crafted = tmp_path / "crafted.tflite"
    crafted.write_bytes(TINY.read_bytes()[:200] + b"\xff" * 100)  # a real header, then bytes that crash LiteRT 2.1
    done = subprocess.run([sys.executable, "-m", "workflows", "profile", str(TINY), str(crafted), "--host",
                           "--runs", "3", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode >= 0, f"the profile itself died ({done.returncode}): {done.stderr[-500:]}"
    runs = {r["model"]: r for r in json.loads((tmp_path / "out" / "profile.json").read_text())["runs"]}
    assert runs["tiny.tflite"]["status"] == "ok"
    assert runs["crafted.tflite"]["status"] == "error" and "SIGSEGV" in runs["crafted.tflite"]["error"]
    assert "corrupt or crafted" in runs["crafted.tflite"]["error"]


def test_cli_host_mode_and_from_log(tmp_path: Path, capsys) -> None:
    from workflows.cli import main

    assert main(["profile", str(TINY), "--host", "--threads", "1", "--runs", "10", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "host (LiteRT on this computer)" in out and "per-run" not in out
    log = FIXTURES / "android" / "benchmark_model" / "09_am62xx-evm_tflite2.20_xnnpack_partial_delegate.txt"
    assert main(["profile", "--from-log", str(log)]) == 0
    text = capsys.readouterr().out
    assert "899.641" in text and "XNNPACK: partial, 1 kernels" in text
    assert main(["profile", "--from-log", str(log), "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)["runs"]
    assert run["mean_ms"] == 899.641 and run["median_ms"] == 899.281 and run["mem_overall_mb"] == 150.141


def test_cli_mistakes_are_one_clear_message(tmp_path: Path, capsys) -> None:
    from workflows.cli import main

    assert main(["profile", str(tmp_path / "missing.tflite"), "--host", "--out", str(tmp_path)]) == 2
    assert "model file" in capsys.readouterr().err
    assert main(["profile", str(TINY), "--host", "--delegates", "tpu", "--out", str(tmp_path)]) == 2
    assert "unknown delegate 'tpu'" in capsys.readouterr().err
    assert main(["profile", str(TINY), "--host", "--threads", "one", "--out", str(tmp_path)]) == 2
    assert main(["profile", str(TINY), "--host", "--delegates", "external", "--out", str(tmp_path)]) == 2
    assert "--external-delegate" in capsys.readouterr().err
    assert main(["profile", "--from-log", str(tmp_path / "nothing.txt")]) == 2
    (tmp_path / "empty.txt").write_text("hello\n")
    assert main(["profile", "--from-log", str(tmp_path / "empty.txt")]) == 2
    assert "no benchmark_model output" in capsys.readouterr().err


def test_cli_refuses_delegate_options_that_would_add_options(tmp_path: Path, capsys) -> None:
    from workflows.cli import main

    base = ["profile", str(TINY), "--host", "--out", str(tmp_path / "o")]
    external = [*base, "--delegates", "external", "--external-delegate", "/vendor/lib64/libQnnTFLiteDelegate.so"]
    assert main([*external, "--external-option", "backend_type=htp;library_path:/sdcard/evil.so"]) == 2
    err = capsys.readouterr().err
    assert "--external-option 'backend_type=htp;library_path:/sdcard/evil.so'" in err and "';' and ':'" in err
    assert "Traceback" not in err
    assert main([*external, "--external-option", "back:end=htp"]) == 2
    assert "the key 'back:end' is not allowed" in capsys.readouterr().err
    assert main([*base, "--external-option", "backend_type=a;b"]) == 2  # refused even with no external run
    assert main([*base, "--delegates", "nnapi", "--nnapi-accelerator", "qti-dsp;x:y"]) == 2
    assert "--nnapi-accelerator 'qti-dsp;x:y' is not a valid NNAPI accelerator name" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing ran


def test_cooldown_waits_before_the_run(tmp_path: Path, fake_benchmark: Path) -> None:
    device = LocalShellDevice(tmp_path / "device")
    fast = settings(delegates=[DelegateConfig("cpu", threads=1)])
    cooled = settings(delegates=[DelegateConfig("cpu", threads=1)],
                      runner=RunnerOptions(interval_s=0.05, baseline_s=0, cooldown_s=2, timeout_s=20, poll_s=0.1))
    timings = []
    for name, chosen in (("fast", fast), ("fast-again", fast), ("cooled", cooled)):
        start = time.monotonic()
        profile(chosen, tmp_path / name, serials=["LOCAL1"], opener=lambda s: (device, FACTS), progress=lambda m: None)
        timings.append(time.monotonic() - start)
    assert timings[2] - min(timings[:2]) >= 1.5  # the first run also pays one-time start-up costs
    assert any("-c 2 " in c or "'-c' '2'" in c or " -c 2" in c for c in device.commands)
