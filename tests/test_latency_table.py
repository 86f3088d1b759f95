"""The measured per-layer latency table (the measuring tests are slow: they convert a few variants with onnx2tf),
and where a prune run gets its table from."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import models
from mobile_compress.errors import UserError
from mobile_compress.pruning import LatencyTable, LayerLatency, PruneConfig, prune
from profiler import latency_table
from profiler.latency_table import LATENCY_FILE, build_latency_table, obtain_latency_table, tflite_latency_ms

pytestmark = [pytest.mark.usefixtures("single_thread")]


@pytest.mark.slow
def test_table_from_few_conversions_drives_a_latency_target(tmp_path: Path) -> None:
    model = models.create("mobilenet_v2", num_classes=10, small_input=True, width_mult=0.5).eval()
    table = build_latency_table(model, 32, variants=6, runs=20, min_seconds=0.5, log=lambda s: None)
    assert table.info["conversions"] == 7
    prunable = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert set(prunable) <= set(table.layers)
    assert table.info["max_relative_error"] < 0.35  # a 6-coefficient fit of 7 timed variants on a busy host
    table.save(tmp_path / "t.json")
    result = prune(model, PruneConfig(target="latency=0.6"), 32, latency=LatencyTable.load(tmp_path / "t.json"))
    assert result.latency_after_ms <= 0.6 * result.latency_before_ms
    before = tflite_latency_ms(model, (32, 32), tmp_path / "a", runs=30, min_seconds=1.0)
    after = tflite_latency_ms(result.model, (32, 32), tmp_path / "b", runs=30, min_seconds=1.0)
    assert after < 0.85 * before  # measured, on a shared CPU: the cut is real, the exact figure is noisy


@pytest.mark.slow
def test_table_measured_on_a_phone_through_the_profiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The virtual device over real ADB packets: variants pushed, run by benchmark_model, timed, fitted."""
    from android_harness.delegates import DelegateConfig
    from android_harness.session import RunnerOptions
    from android_harness.transport import keys
    from android_harness.transport.adb_shell_transport import AdbShellTransport
    from android_harness.virtual_device.config import config_from_dict
    from android_harness.virtual_device.fake_benchmark_model import write_launcher
    from android_harness.virtual_device.server import VirtualDevice
    from profiler.device_job import ProfileSettings
    from profiler.devices import attach
    from profiler.latency_table import device_timer

    monkeypatch.setenv(keys.ENV_KEY, str(tmp_path / "keys" / "adbkey"))
    monkeypatch.setenv("MOBILE_COMPRESS_BENCHMARK_MODEL", str(write_launcher(tmp_path / "host" / "benchmark_model")))

    def opener(serial: str):
        host, _, port = serial.rpartition(":")
        return attach(AdbShellTransport.tcp(host, int(port), connect_timeout=5.0, auth_timeout=1.0))

    model = models.create("mobilenet_v2", num_classes=10, small_input=True, width_mult=0.5).eval()
    settings = ProfileSettings(models=[], delegates=[DelegateConfig("cpu", threads=1)], num_runs=10, min_secs=0.0,
                               extra_flags=["--warmup_min_secs=0"],
                               runner=RunnerOptions(interval_s=0.05, baseline_s=0, timeout_s=60, poll_s=0.1))
    with VirtualDevice(config_from_dict({"cpu_max_khz": [1800000, 2400000]}), workdir=tmp_path / "vd") as dev:
        serial = dev.serial
        timer = device_timer(serial, settings, opener=opener, out_dir=tmp_path / "profile")
        table = build_latency_table(model, 32, variants=3, timer=timer, log=lambda s: None)
        runs = json.loads((tmp_path / "profile" / "profile.json").read_text())["runs"]
    assert table.info["runtime"].startswith(serial) and table.info["conversions"] == 4
    assert len(runs) == 4 and all(r["device"] == serial and r["status"] == "ok" for r in runs)
    measured = [v["measured_ms"] for v in table.info["variants"]]
    print("variants on the phone (ms):", measured)
    assert all(ms > 0 for ms in measured)
    assert measured[0] == max(measured)  # the unpruned variant is the slowest on the phone too
    result = prune(model, PruneConfig(target="latency=0.7"), 32, latency=table)
    assert result.latency_after_ms <= 0.7 * result.latency_before_ms



def test_obtain_reads_a_given_table_reuses_a_saved_one_and_measures_otherwise(tmp_path: Path, monkeypatch) -> None:
    """Measuring is replaced by a recorder: what is checked is which table a prune run gets, and where it is saved."""
    measured: list[tuple[str, str]] = []

    def fake_build(source, input_size=None, *, timer=None, log=print, **_):
        runtime = getattr(timer, "description", "host LiteRT interpreter")
        measured.append((source, runtime))
        return LatencyTable(0.1 * len(measured), {"fc": LayerLatency(1e-8)}, {"runtime": runtime})

    monkeypatch.setattr(latency_table, "build_latency_table", fake_build)
    lines: list[str] = []
    out = tmp_path / "out"
    first = obtain_latency_table("ck", out, progress=lines.append)
    assert first.measured and first.path == out / LATENCY_FILE and measured == [("ck", "host LiteRT interpreter")]
    assert LatencyTable.load(first.path).base_ms == first.table.base_ms
    assert "on the host LiteRT interpreter" in lines[0]

    again = obtain_latency_table("ck", out, progress=lines.append)  # a resumed run: the saved table, not a new one
    assert not again.measured and again.table.base_ms == first.table.base_ms and len(measured) == 1
    assert "reusing" in lines[-1]
    fresh = obtain_latency_table("ck", out, reuse=False, progress=lines.append)
    assert fresh.measured and len(measured) == 2 and LatencyTable.load(out / LATENCY_FILE).base_ms == fresh.table.base_ms

    given = obtain_latency_table("ck", tmp_path / "other", out / LATENCY_FILE, progress=lines.append)
    assert not given.measured and given.path == out / LATENCY_FILE and not (tmp_path / "other").exists()
    with pytest.raises(UserError, match="missing.json"):
        obtain_latency_table("ck", out, tmp_path / "missing.json")

    phone = obtain_latency_table("ck", tmp_path / "phone", device="PHONE1", delegate="gpu", progress=lines.append)
    assert phone.measured and measured[-1][1].startswith("PHONE1") and "gpu" in measured[-1][1]
    with pytest.raises(UserError, match="unknown latency delegate 'tpu'"):
        obtain_latency_table("ck", tmp_path / "tpu", device="PHONE1", delegate="tpu")
