"""The host's LiteRT interpreter: one place that loads a .tflite and times it.

Converters (parity, latency tables), pruning (latency-driven allocation) and the virtual
device's benchmark_model all run .tflite files on the host; they share this module so
the interpreter options and the timing loop are defined once.
"""
from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobile_compress.logs import third_party_output


def interpreter(path: Path | str, *, delegates: bool = True, num_threads: int | None = None,
                preserve_all_tensors: bool = False) -> Any:
    """A LiteRT interpreter; ``delegates=False`` keeps the graph as written (no XNNPACK rewrite);
    ``preserve_all_tensors`` keeps intermediate tensors readable after ``invoke`` (for tensor-level checks)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_path=str(path), experimental_op_resolver_type=kind, num_threads=num_threads,
                       experimental_preserve_all_tensors=preserve_all_tensors)


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float input to the tensor's type (affine int8/uint8 or float)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Tensor output back to float32."""
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


@dataclass
class HostTiming:
    """Wall-clock timings of one .tflite on the host interpreter, in milliseconds."""

    path: str
    num_threads: int
    xnnpack: bool
    init_ms: float
    first_ms: float
    samples_ms: list[float] = field(default_factory=list)

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms))

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def std_ms(self) -> float:
        return float(np.std(self.samples_ms))

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "num_threads": self.num_threads, "xnnpack": self.xnnpack,
                "init_ms": self.init_ms, "first_ms": self.first_ms, "runs": len(self.samples_ms),
                "mean_ms": self.mean_ms, "median_ms": self.median_ms, "std_ms": self.std_ms,
                "min_ms": float(min(self.samples_ms)), "max_ms": float(max(self.samples_ms))}


def time_model(path: Path | str, *, num_threads: int = 1, xnnpack: bool = True, warmup: int = 3,
               runs: int = 20, min_seconds: float = 0.0, seed: int = 0) -> HostTiming:
    """Time ``invoke()`` on random input: init, first run, then ``runs`` timed runs after ``warmup``.

    ``min_seconds`` keeps running past ``runs`` until that much time is spent, as
    benchmark_model's ``--min_secs`` does, so fast models get enough samples.
    """
    with third_party_output():  # LiteRT announces its delegates ("INFO: Created TensorFlow Lite XNNPACK ...")
        start = time.perf_counter()
        interp = interpreter(path, delegates=xnnpack, num_threads=num_threads)
        interp.allocate_tensors()
        init_ms = (time.perf_counter() - start) * 1e3
    rng = np.random.default_rng(seed)
    for detail in interp.get_input_details():
        shape = [int(s) if s > 0 else 1 for s in detail["shape"]]
        interp.set_tensor(detail["index"], quantize(rng.standard_normal(shape).astype(np.float32), detail))
    t = time.perf_counter()
    interp.invoke()
    first_ms = (time.perf_counter() - t) * 1e3
    for _ in range(warmup):
        interp.invoke()
    samples: list[float] = []
    begin = time.perf_counter()
    while len(samples) < runs or time.perf_counter() - begin < min_seconds:
        t = time.perf_counter()
        interp.invoke()
        samples.append((time.perf_counter() - t) * 1e3)
    return HostTiming(str(path), num_threads, xnnpack, init_ms, first_ms, samples)


class InterpreterCrash(RuntimeError):
    """LiteRT died on a model file (a signal or a hang), in the child process that ran it."""


def time_isolated(path: Path, *, timeout_s: float = 600.0, **options: Any) -> HostTiming:
    """``time_model`` in a child process: a .tflite is untrusted, and LiteRT's parser can crash on a crafted or
    truncated one (a segfault, measured on LiteRT 2.1). The crash then costs one record, not the whole profile."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds TensorFlow's or torch's threads
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_time_in_child, args=(sender, str(path), options), daemon=True)
    child.start()
    sender.close()
    try:
        answer = receiver.recv() if receiver.poll(timeout_s + float(options.get("min_seconds", 0.0))) else None
    except EOFError:
        answer = None
    finally:
        receiver.close()
    if answer is None:
        child.kill()
    child.join()
    if answer is None:
        code = child.exitcode
        how = (f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exited with status {code}" if code else f"ran past {timeout_s:g} s")
        raise InterpreterCrash(f"the LiteRT interpreter {how} on {path}: the file is corrupt or crafted; "
                               "convert the model again with `mobile-compress convert`")
    kind, value = answer
    if kind == "error":
        raise RuntimeError(value)
    return value


def _time_in_child(sender: Any, path: str, options: dict[str, Any]) -> None:
    try:
        sender.send(("ok", time_model(path, **options)))
    except (ValueError, RuntimeError) as err:
        sender.send(("error", str(err)))
    finally:
        sender.close()
