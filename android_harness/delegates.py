"""Delegate configurations and the benchmark_model flags each one means.

One ``DelegateConfig`` is one benchmark run: cpu (threads, XNNPACK, big-core affinity),
gpu (precision loss), nnapi (accelerator, fp16) or external (a delegate .so with options).
The label is stable, so results can be matched across devices and resumed runs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterable, Sequence

from mobile_compress.errors import UserError

KINDS = ("cpu", "gpu", "nnapi", "external")

# benchmark_model reads --external_delegate_options as "k1:v1;k2:v2", so a ';' or ':' in a key or
# value would add options of its own. Keys and values are held to what real delegate options use
# (QNN's backend_type:htp, library_path:/data/local/tmp/libQnnHtp.so, htp_performance_mode:2 ...);
# an accelerator name (qti-dsp, google-edgetpu, nnapi-reference, mtk-neuron_shim) is also part of
# the run's label, which names a result folder, so it has no '/'.
OPTION_KEY = re.compile(r"[A-Za-z0-9_]+")
OPTION_VALUE = re.compile(r"[A-Za-z0-9_.,/+-]+")
ACCELERATOR = re.compile(r"[A-Za-z0-9_.,+-]+")


@dataclass(frozen=True)
class DelegateConfig:
    kind: str
    threads: int = 1
    xnnpack: bool = True
    big_cores: bool = False
    precision_loss: bool = False  # gpu: allow fp16 arithmetic
    accelerator: str | None = None  # nnapi: e.g. "qti-dsp", "google-edgetpu"
    fp16: bool = False  # nnapi: relax fp32 to fp16
    library: str | None = None  # external: host or device path of the delegate .so
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # external: key/value options

    def __post_init__(self) -> None:
        check_accelerator(self.accelerator)
        check_options(self.options)

    @property
    def label(self) -> str:
        if self.kind == "cpu":
            return f"cpu-{self.threads}t" + ("" if self.xnnpack else "-noxnnpack") + ("-big" if self.big_cores else "")
        if self.kind == "gpu":
            return "gpu-fp16" if self.precision_loss else "gpu-fp32"
        if self.kind == "nnapi":
            return "nnapi" + (f"-{self.accelerator}" if self.accelerator else "") + ("-fp16" if self.fp16 else "")
        return f"external-{PurePosixPath(self.library or 'delegate').stem}"

    def flags(self, device_library: str | None = None) -> list[str]:
        """benchmark_model flags; ``device_library`` is where the external .so lies on the device."""
        flags = [f"--num_threads={self.threads}"]
        if self.kind == "cpu":
            flags.append(f"--use_xnnpack={_bool(self.xnnpack)}")
        elif self.kind == "gpu":
            flags += ["--use_gpu=true", f"--gpu_precision_loss_allowed={_bool(self.precision_loss)}"]
        elif self.kind == "nnapi":
            flags.append("--use_nnapi=true")
            if self.accelerator:
                flags.append(f"--nnapi_accelerator_name={self.accelerator}")
            flags.append(f"--nnapi_allow_fp16={_bool(self.fp16)}")
        elif self.kind == "external":
            flags.append(f"--external_delegate_path={device_library or self.library}")
            if self.options:
                flags.append("--external_delegate_options=" + ";".join(f"{k}:{v}" for k, v in self.options))
        return flags


def check_accelerator(name: str | None) -> None:
    """UserError unless ``name`` is None or a plain NNAPI accelerator name."""
    if name is not None and not ACCELERATOR.fullmatch(name):
        raise UserError(f"--nnapi-accelerator {name!r} is not a valid NNAPI accelerator name",
                        hint="use the name the phone reports, made of letters, digits and _ . , + - only "
                             "(e.g. qti-dsp, google-edgetpu, nnapi-reference)")


def check_options(options: Iterable[tuple[str, str]]) -> None:
    """UserError unless every external delegate option is KEY:VALUE that cannot add options of its own."""
    for key, value in options:
        if not OPTION_KEY.fullmatch(key):
            raise UserError(f"--external-option {key + '=' + value!r}: the key {key!r} is not allowed",
                            hint="a key is letters, digits and _ only (e.g. backend_type); the options reach "
                                 "benchmark_model as KEY:VALUE;KEY:VALUE, so ';' and ':' cannot be part of one")
        if not OPTION_VALUE.fullmatch(value):
            raise UserError(f"--external-option {key + '=' + value!r}: the value {value!r} is not allowed",
                            hint="a value is letters, digits and _ . , / + - only and not empty (e.g. htp, 2, "
                                 "/data/local/tmp/libQnnHtp.so); the options reach benchmark_model as "
                                 "KEY:VALUE;KEY:VALUE, so ';' and ':' cannot be part of one; pass one "
                                 "--external-option per option")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def big_core_mask(max_freq_khz: Sequence[int | None]) -> str | None:
    """The taskset mask (hex) of the cores with the highest maximum frequency, or None if all are equal/unknown.

    Index i of ``max_freq_khz`` is cpu i. On big.LITTLE and tri-cluster phones the fastest
    cluster is the one TFLite's own docs pin benchmarks to, to cut run-to-run variance.
    """
    known = [f for f in max_freq_khz if f]
    if not known or len(set(known)) == 1:
        return None
    top = max(known)
    mask = sum(1 << i for i, f in enumerate(max_freq_khz) if f == top)
    return format(mask, "x")


def expand(kinds: Iterable[str], *, threads: Sequence[int] = (1,), xnnpack: Sequence[bool] = (True,),
           big_cores: bool = False, precision_loss: bool = False, accelerator: str | None = None,
           fp16: bool = False, library: str | None = None,
           options: Sequence[tuple[str, str]] = ()) -> list[DelegateConfig]:
    """Every run the user asked for: cpu multiplies out threads x XNNPACK; the others run once."""
    configs: list[DelegateConfig] = []
    for kind in kinds:
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise UserError(f"unknown delegate {kind!r} in --delegates", hint=f"choose from {', '.join(KINDS)}")
        if kind == "cpu":
            configs += [DelegateConfig("cpu", threads=t, xnnpack=x, big_cores=big_cores) for t in threads for x in xnnpack]
        elif kind == "gpu":
            configs.append(DelegateConfig("gpu", precision_loss=precision_loss))
        elif kind == "nnapi":
            configs.append(DelegateConfig("nnapi", accelerator=accelerator, fp16=fp16))
        else:
            if not library:
                raise UserError("--delegates external needs the delegate library",
                                hint="pass --external-delegate PATH.so (a host file to push, or a path on the device "
                                     "such as /vendor/lib64/libvx_delegate.so)")
            configs.append(DelegateConfig("external", library=library, options=tuple(options)))
    if any(t < 1 for t in threads):
        raise UserError(f"--threads must be 1 or more, got {list(threads)}", hint="for example --threads 1,2,4")
    return configs
