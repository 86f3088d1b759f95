"""The host-side pieces around the device runner: benchmark_model lookup, delegate flags, big-core masks."""
from __future__ import annotations

from pathlib import Path

import pytest

from android_harness.benchmark_binary import ENV_DIR, ENV_FILE, PREBUILT, cache_path, locate, where_to_get
from android_harness.delegates import DelegateConfig, big_core_mask, expand
from mobile_compress.errors import UserError
from profiler.devices import resolve_serials


def elf(path: Path, machine: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF" + b"\x02\x01\x01" + b"\x00" * 9 + b"\x02\x00" + machine.to_bytes(2, "little") + b"\x00" * 40)
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_FILE, raising=False)
    monkeypatch.delenv(ENV_DIR, raising=False)
    monkeypatch.setenv("MOBILE_COMPRESS_CACHE", str(tmp_path / "cache"))


def test_lookup_order_option_env_dir_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = elf(cache_path("arm64-v8a"), 0xB7)
    assert cached == tmp_path / "cache" / "benchmark_model" / "arm64-v8a" / "benchmark_model"
    assert locate("arm64-v8a").source == "cache"
    by_dir = elf(tmp_path / "bins" / "arm64-v8a" / "benchmark_model", 0xB7)
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "bins"))
    assert locate("arm64-v8a").path == by_dir
    by_file = elf(tmp_path / "mine" / "bm", 0xB7)
    monkeypatch.setenv(ENV_FILE, str(by_file))
    assert locate("arm64-v8a").path == by_file
    explicit = elf(tmp_path / "explicit" / "bm", 0xB7)
    assert locate("arm64-v8a", explicit).path == explicit


def test_missing_binary_names_the_exact_download(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        locate("arm64-v8a")
    assert PREBUILT["arm64-v8a"] in err.value.hint and str(cache_path("arm64-v8a")) in err.value.hint
    assert PREBUILT["arm64-v8a"].endswith("/android_aarch64_benchmark_model")
    assert PREBUILT["armeabi-v7a"].endswith("/android_arm_benchmark_model")
    assert "no prebuilt" in where_to_get("x86_64") and "--config=android_x86_64" in where_to_get("x86_64")
    with pytest.raises(UserError, match="benchmark_model not found at"):
        locate("arm64-v8a", tmp_path / "typo")


def test_a_binary_for_another_abi_or_a_web_page_is_refused(tmp_path: Path) -> None:
    arm32 = elf(tmp_path / "arm32", 0x28)
    with pytest.raises(UserError, match="built for armeabi-v7a, but the device's ABI is arm64-v8a"):
        locate("arm64-v8a", arm32)
    page = tmp_path / "page"
    page.write_text("<html>404</html>")
    with pytest.raises(UserError, match="not an executable"):
        locate("arm64-v8a", page)
    script = tmp_path / "wrapper"
    script.write_text("#!/bin/sh\nexec real_benchmark_model \"$@\"\n")
    assert locate("arm64-v8a", script).path == script


def test_delegate_flags_and_labels() -> None:
    cpu = DelegateConfig("cpu", threads=4, xnnpack=False, big_cores=True)
    assert cpu.label == "cpu-4t-noxnnpack-big" and cpu.flags() == ["--num_threads=4", "--use_xnnpack=false"]
    gpu = DelegateConfig("gpu", precision_loss=True)
    assert gpu.label == "gpu-fp16" and "--gpu_precision_loss_allowed=true" in gpu.flags()
    nnapi = DelegateConfig("nnapi", accelerator="qti-dsp", fp16=True)
    assert nnapi.label == "nnapi-qti-dsp-fp16"
    assert nnapi.flags()[1:] == ["--use_nnapi=true", "--nnapi_accelerator_name=qti-dsp", "--nnapi_allow_fp16=true"]
    ext = DelegateConfig("external", library="/host/libQnnTFLiteDelegate.so", options=(("backend_type", "htp"),))
    assert ext.label == "external-libQnnTFLiteDelegate"
    assert ext.flags("/data/local/tmp/x/libQnnTFLiteDelegate.so")[1:] == [
        "--external_delegate_path=/data/local/tmp/x/libQnnTFLiteDelegate.so",
        "--external_delegate_options=backend_type:htp"]


def test_delegate_options_and_accelerator_names_cannot_add_options() -> None:
    """benchmark_model splits --external_delegate_options at ';' and ':': neither may come from a value."""
    qnn = expand(["external", "nnapi"], library="/vendor/lib64/libQnnTFLiteDelegate.so", accelerator="google-edgetpu",
                 options=[("backend_type", "htp"), ("library_path", "/data/local/tmp/qnn/libQnnHtp.so"),
                          ("htp_performance_mode", "2"), ("skel_library_dir", "/vendor/lib/rfsa/adsp")])
    assert qnn[0].flags()[-1] == ("--external_delegate_options=backend_type:htp;"
                                  "library_path:/data/local/tmp/qnn/libQnnHtp.so;htp_performance_mode:2;"
                                  "skel_library_dir:/vendor/lib/rfsa/adsp")
    for name in ("qti-dsp", "nnapi-reference", "mtk-neuron_shim"):
        assert DelegateConfig("nnapi", accelerator=name).flags()[2] == f"--nnapi_accelerator_name={name}"
    for key, value in [("backend_type", "htp;library_path:/sdcard/evil.so"), ("backend_type", "htp:x"),
                       ("backend_type", ""), ("backend_type", "h t p"), ("backend_type", "htp\n"),
                       ("backend;x", "htp"), ("backend:x", "htp"), ("", "htp"), ("back-end", "htp")]:
        with pytest.raises(UserError, match="--external-option") as err:
            expand(["external"], library="/x/libd.so", options=[(key, value)])
        assert "';' and ':'" in err.value.hint
        with pytest.raises(UserError):
            DelegateConfig("external", library="/x/libd.so", options=((key, value),))
    for name in ("qti-dsp;x:y", "qti-dsp:1", "../../../etc", "a b", ""):
        with pytest.raises(UserError, match="--nnapi-accelerator") as err:
            expand(["nnapi"], accelerator=name)
        assert "qti-dsp" in err.value.hint


def test_expand_multiplies_cpu_threads_and_xnnpack() -> None:
    configs = expand(["cpu", "gpu", "nnapi"], threads=[1, 4], xnnpack=[True, False])
    assert [c.label for c in configs] == ["cpu-1t", "cpu-1t-noxnnpack", "cpu-4t", "cpu-4t-noxnnpack", "gpu-fp32",
                                          "nnapi"]
    with pytest.raises(UserError, match="unknown delegate 'hexagon'"):
        expand(["hexagon"])
    with pytest.raises(UserError, match="--threads must be 1 or more"):
        expand(["cpu"], threads=[0])


def test_big_core_mask_from_max_frequencies() -> None:
    # Snapdragon 8 Gen 2 layout: 3 little (2.02 GHz), 4 mid (2.80), 1 prime (3.19) -> only cpu7
    assert big_core_mask([2016000] * 3 + [2803200] * 4 + [3187200]) == "80"
    assert big_core_mask([1800000] * 4 + [2400000] * 4) == "f0"
    assert big_core_mask([2000000] * 8) is None  # all equal: nothing to pin
    assert big_core_mask([None, None]) is None


def test_resolve_serials_auto_lists_attached_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    from android_harness.transport import AttachedDevice
    import profiler.devices as devices

    attached = [AttachedDevice("A1", "device", "adb-server", {}), AttachedDevice("B2", "unauthorized", "adb-server", {}),
                AttachedDevice("C3", "offline", "adb-server", {})]
    monkeypatch.setattr(devices, "list_devices", lambda kind=None: attached)
    assert resolve_serials(["auto"]) == ["A1", "B2"]  # unauthorized ones are kept, to be reported
    assert resolve_serials(["X9,A1", "auto"]) == ["X9", "A1", "B2"]
    monkeypatch.setattr(devices, "list_devices", lambda kind=None: [])
    with pytest.raises(UserError, match="no Android device is attached") as err:
        resolve_serials(["auto"])
    assert "--host" in err.value.hint
