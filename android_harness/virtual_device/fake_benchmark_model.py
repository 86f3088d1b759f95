"""benchmark_model for the virtual device: runs the .tflite with the host's LiteRT and prints TFLite's format.

The line formats are those of a recent TFLite 2.x benchmark_model as captured from phones
(``../shared/fixtures/android/benchmark_model``: "INFO: " prefixes, ``count= first= curr= min=
max= avg= std= p5= median= p95=`` stat lines, "Inference timings in us: ...", the memory
footprint lines). Timings are real host timings in microseconds. What the host cannot do is
reported the way a phone without that hardware reports it, never faked:
- ``--use_gpu``: no OpenCL or OpenGL ES here, so the GPU delegate fails to prepare and the
  benchmark fails ("Failed to apply GPU delegate.");
- ``--use_nnapi``: the only accelerator is the configured list (default nnapi-reference);
  without a vendor driver the delegate takes no nodes and the graph runs on the CPU; a named
  accelerator not in the list fails as on a phone;
- ``--external_delegate_path``: a device .so cannot be loaded on the host, so it fails.
- ``--enable_op_profiling``: the host interpreter cannot time nodes one by one; a fully
  delegated graph is one node and its time is exact, otherwise the measured time is split
  evenly across nodes and a WARNING line says so.
The virtual device's battery draws ``load_current_now`` while inferences run, so power
sampling sees a load above the idle baseline. Injected faults (crash, hang) come from the
device's state directory.

Installed on the host by ``write_launcher(path)``; push that file as the benchmark binary.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
_TRUE = ("true", "1", "yes")


def write_launcher(path: Path | str) -> Path:
    """An executable file that runs this module with the current Python (the "benchmark binary" for the virtual device)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n# mobile-compress virtual device benchmark_model (runs on the host's LiteRT)\n"
                    f"import sys\nsys.path.insert(0, {str(_REPO)!r})\n"
                    "from android_harness.virtual_device.fake_benchmark_model import main\nsys.exit(main(sys.argv[1:]))\n")
    path.chmod(0o755)
    return path


def _flags(argv: list[str]) -> dict[str, str]:
    flags = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            flags[key] = value
        elif arg.startswith("--"):
            flags[arg[2:]] = "true"
    return flags


def _log(level: str, message: str) -> None:
    # benchmark_model logs to stderr (TFLITE_LOG); so does the LiteRT runtime underneath.
    sys.stderr.write(f"{level}: {message}\n")
    sys.stderr.flush()


def _executed_nodes(ops: list[dict]) -> list[dict]:
    """The execution plan after delegation: delegate nodes plus the original nodes they did not take.

    The Python interpreter lists every node ever added, so a node counts as not delegated when it
    feeds a delegate partition or reads one's output; nodes inside a partition do neither.
    """
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    if not delegates:
        return ops
    feeds = {int(t) for op in delegates for t in op["inputs"]}
    produced = {int(t) for op in delegates for t in op["outputs"]}
    kept = [op for op in ops if op["op_name"] != "DELEGATE"
            and ({int(t) for t in op["outputs"]} & feeds or {int(t) for t in op["inputs"]} & produced)]
    return sorted(kept + delegates, key=lambda op: op["index"])


def _host_path(path: str) -> str:
    root = os.environ.get("MC_VDEV_ROOT")
    if root and path.startswith("/") and not os.path.exists(path):
        from android_harness.virtual_device.sandbox import to_host
        return str(to_host(path, root))
    return path


def _stat_line(samples_us: list[float]) -> str:
    ordered = sorted(samples_us)

    def pct(p: float) -> int:
        return int(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))])

    tail = f"p5={pct(5)} median={pct(50)} p95={pct(95)}"
    if len(samples_us) == 1:
        return f"count=1 curr={int(samples_us[0])} {tail}"
    avg = statistics.fmean(samples_us)
    std = statistics.pstdev(samples_us)
    return (f"count={len(samples_us)} first={int(samples_us[0])} curr={int(samples_us[-1])} min={int(ordered[0])} "
            f"max={int(ordered[-1])} avg={avg:g} std={int(std)} {tail}")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Battery:
    """Raises the virtual battery's current while inferences run; restores it however the process ends."""

    def __init__(self) -> None:
        self.device = None
        root, state = os.environ.get("MC_VDEV_ROOT"), os.environ.get("MC_VDEV_STATE")
        if root and state and (Path(state) / "device.json").is_file():
            self.root = root
            self.device = json.loads((Path(state) / "device.json").read_text())

    def load(self, on: bool) -> None:
        if self.device is None:
            return
        from android_harness.virtual_device.sandbox import write_battery
        battery = self.device["battery"]
        write_battery(self.root, battery, battery["load_current_now" if on else "current_now"])


def _fault() -> dict | None:
    state = os.environ.get("MC_VDEV_STATE")
    path = Path(state) / "faults.json" if state else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text()).get("benchmark")


def _accelerators() -> list[str]:
    state = os.environ.get("MC_VDEV_STATE")
    if state and (Path(state) / "device.json").is_file():
        return json.loads((Path(state) / "device.json").read_text()).get("nnapi_accelerators", ["nnapi-reference"])
    return ["nnapi-reference"]


def _fail() -> int:
    _log("ERROR", "Benchmarking failed.")
    return 1


@dataclass
class Options:
    """The benchmark_model flags this tool honours, with benchmark_model's defaults."""

    flags: dict[str, str]
    graph: str = ""
    threads: int = -1
    xnnpack: bool | None = None  # None: not given (the runtime applies XNNPACK by default)
    gpu: bool = False
    nnapi: bool = False
    accelerator: str = ""
    external: str = ""
    profiling: bool = False
    csv_path: str = ""
    num_runs: int = 50
    warmup_runs: int = 1
    min_secs: float = 1.0
    max_secs: float = 150.0
    warmup_min_secs: float = 0.5

    @property
    def uses_xnnpack(self) -> bool:
        """XNNPACK is the runtime's default delegate, dropped once another delegate is applied explicitly."""
        return self.xnnpack is True or (self.xnnpack is None and not self.nnapi)

    @classmethod
    def parse(cls, argv: list[str]) -> "Options":
        f = _flags(argv)

        def on(key: str) -> bool:
            return f.get(key, "false").lower() in _TRUE

        return cls(f, graph=f.get("graph", ""), threads=int(f.get("num_threads", "-1")),
                   xnnpack=on("use_xnnpack") if "use_xnnpack" in f else None, gpu=on("use_gpu"), nnapi=on("use_nnapi"),
                   accelerator=f.get("nnapi_accelerator_name", ""), external=f.get("external_delegate_path", ""),
                   profiling=on("enable_op_profiling"), csv_path=f.get("profiling_output_csv_file", ""),
                   num_runs=int(f.get("num_runs", "50")), warmup_runs=int(f.get("warmup_runs", "1")),
                   min_secs=float(f.get("min_secs", "1")), max_secs=float(f.get("max_secs", "150")),
                   warmup_min_secs=float(f.get("warmup_min_secs", "0.5")))


def _print_parameters(o: Options) -> None:
    """The parameter echo at the top of every run (only the flags given, as with verbose=0)."""
    given = o.flags
    lines = [("num_runs", f"Min num runs: [{o.num_runs}]"), ("min_secs", f"Min runs duration (seconds): [{o.min_secs:g}]"),
             ("max_secs", f"Max runs duration (seconds): [{o.max_secs:g}]"), ("num_threads", f"Num threads: [{o.threads}]")]
    _log("INFO", "STARTING!")
    _log("INFO", "Log parameter values verbosely: [0]")
    for key, line in lines:
        if key in given:
            _log("INFO", line)
    _log("INFO", f"Graph: [{o.graph}]")
    _log("INFO", "Signature to run: []")
    if o.profiling:
        _log("INFO", "Enable op profiling: [1]")
    if o.csv_path:
        _log("INFO", f"CSV File to export profiling data to: [{o.csv_path}]")
    if "num_threads" in given:
        _log("INFO", f"#threads used for CPU inference: [{o.threads}]")
    if o.xnnpack is not None:
        _log("INFO", f"Use xnnpack: [{int(o.xnnpack)}]")
    if o.gpu:
        _log("INFO", "Use gpu: [1]")
        if "gpu_precision_loss_allowed" in given:
            _log("INFO", f"Allow lower precision in gpu: [{int(given['gpu_precision_loss_allowed'].lower() in _TRUE)}]")
    if o.nnapi:
        _log("INFO", "Use NNAPI: [1]")
        if o.accelerator:
            _log("INFO", f"NNAPI accelerator name: [{o.accelerator}]")
        if "nnapi_allow_fp16" in given:
            _log("INFO", f"Allow fp16 in NNAPI: [{int(given['nnapi_allow_fp16'].lower() in _TRUE)}]")
        _log("INFO", f"NNAPI accelerators available: [{','.join(_accelerators())}]")
    if o.external:
        _log("INFO", f"External delegate path: [{o.external}]")


def _delegate_fails(o: Options, node_count: int) -> bool:
    """GPU, external and unknown NNAPI accelerators fail here as on a phone without them (see the module docstring)."""
    if o.gpu:
        _log("INFO", "Created TensorFlow Lite delegate for GPU.")
        _log("INFO", "GPU delegate created.")
        _log("ERROR", "Can not open OpenCL library on this device - dlopen failed: library \"libOpenCL.so\" not found")
        _log("ERROR", "Falling back to OpenGL")
        _log("ERROR", "TfLiteGpuDelegate Init: OpenGL-based API disabled")
        _log("INFO", "Created 0 GPU delegate kernels.")
        _log("ERROR", "TfLiteGpuDelegate Prepare: delegate is not initialized")
        _log("ERROR", f"Node number {node_count} (TfLiteGpuDelegateV2) failed to prepare.")
        _log("ERROR", "Restored original execution plan after delegate application failure.")
        _log("ERROR", "Failed to apply GPU delegate.")
        return True
    if o.external:
        _log("ERROR", f"Failed to load delegate from {o.external}")
        _log("ERROR", "Failed to apply EXTERNAL delegate.")
        return True
    if o.nnapi:
        _log("INFO", "Created TensorFlow Lite delegate for NNAPI.")
        if o.accelerator and o.accelerator not in _accelerators():
            _log("ERROR", f"Could not find the specified NNAPI accelerator: {o.accelerator}. "
                          f"Available accelerators: {','.join(_accelerators())}")
            _log("ERROR", "Failed to apply NNAPI delegate.")
            return True
        _log("INFO", "NNAPI delegate created.")
    return False


def _report_delegation(o: Options, node_count: int, executed: list[dict]) -> None:
    partitions = sum(1 for op in executed if op["op_name"] == "DELEGATE")
    remaining = len(executed) - partitions
    if o.uses_xnnpack and partitions:
        _log("VERBOSE", f"Replacing {node_count - remaining} out of {node_count} node(s) with delegate "
                        f"(TfLiteXNNPackDelegate) node, yielding {partitions} partitions for subgraph 0.")
        if o.xnnpack:
            how = ("completely executed by the delegate" if remaining == 0
                   else f"partially executed by the delegate w/ {partitions} delegate kernels")
            _log("INFO", f"Explicitly applied XNNPACK delegate, and the model graph will be {how}.")
    if o.nnapi:
        _log("INFO", "Though NNAPI delegate is explicitly applied, the model graph will not be executed by the delegate.")


def _runs(interp, o: Options, count: int, seconds: float, fault: dict | None, battery: "_Battery") -> list[float]:
    """One "Running benchmark for at least ..." block: invoke until both minimums are met, or max_secs."""
    _log("INFO", f"Running benchmark for at least {count} iterations and at least {seconds:g} seconds "
                 f"but terminate if exceeding {o.max_secs:g} seconds.")
    samples: list[float] = []
    begin = time.perf_counter()
    while (len(samples) < count or time.perf_counter() - begin < seconds) and time.perf_counter() - begin < o.max_secs:
        t = time.perf_counter()
        interp.invoke()
        samples.append((time.perf_counter() - t) * 1e6)
        if fault and len(samples) >= fault.get("after_runs", 0):
            _inject(fault, battery)
    _log("INFO", _stat_line(samples))
    sys.stderr.write("\n")
    return samples


def main(argv: list[str]) -> int:
    start_rss = _rss_mb()
    o = Options.parse(argv)
    _print_parameters(o)
    path = _host_path(o.graph)
    if not o.graph or not os.path.isfile(path):
        _log("ERROR", f"File {o.graph} does not exist!" if o.graph
             else "Please specify the name of your TF Lite input file with --graph")
        return _fail()
    import numpy as np

    from mobile_compress import litert
    init_start = time.perf_counter()
    try:
        interp = litert.interpreter(path, delegates=o.uses_xnnpack, num_threads=o.threads if o.threads > 0 else None)
    except ValueError as err:  # what FlatBufferModel reports for a bad file, line by line
        for line in str(err).strip().splitlines():
            _log("ERROR", line)
        _log("ERROR", f"Failed to mmap model {o.graph}")
        return _fail()
    _log("INFO", f"Loaded model {o.graph}")
    _log("INFO", "Initialized TensorFlow Lite runtime.")
    node_count = len(litert.interpreter(path, delegates=False)._get_ops_details())
    if _delegate_fails(o, node_count):
        return _fail()
    interp.allocate_tensors()
    executed = _executed_nodes(interp._get_ops_details())
    _report_delegation(o, node_count, executed)
    _log("INFO", f"The input model file size (MB): {os.path.getsize(path) / 1e6:g}")
    rng = np.random.default_rng(0)
    for detail in interp.get_input_details():
        shape = [int(s) if s > 0 else 1 for s in detail["shape"]]
        interp.set_tensor(detail["index"], litert.quantize(rng.standard_normal(shape).astype("float32"), detail))
    init_us = (time.perf_counter() - init_start) * 1e6
    init_rss = _rss_mb()
    _log("INFO", f"Initialized session in {init_us / 1e3:g}ms.")

    battery = _Battery()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: (battery.load(False), os._exit(128 + signum)))
    battery.load(True)
    try:
        warmup = _runs(interp, o, max(1, o.warmup_runs), o.warmup_min_secs, None, battery)
        timed = _runs(interp, o, max(1, o.num_runs), o.min_secs, _fault(), battery)
    finally:
        battery.load(False)
    avg = statistics.fmean(timed)
    _log("INFO", f"Inference timings in us: Init: {int(init_us)}, First inference: {int(warmup[0])}, "
                 f"Warmup (avg): {statistics.fmean(warmup):g}, Inference (avg): {avg:g}")
    _log("INFO", "Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to "
                 "the actual memory footprint of the model at runtime. Take the information at your discretion.")
    overall = _rss_mb()
    _log("INFO", f"Memory footprint delta from the start of the tool (MB): init={init_rss - start_rss:g} "
                 f"overall={overall - start_rss:g}")
    _log("INFO", f"Overall peak memory footprint (MB) via periodic monitoring: {overall:g}")
    if o.profiling or o.csv_path:
        _profile(executed, avg / 1e3, timed[0] / 1e3, o.profiling, o.csv_path)
    return 0


def _inject(fault: dict, battery: _Battery) -> None:
    if fault.get("hang"):
        while True:
            time.sleep(3600)
    crash = fault.get("crash")
    if crash:
        battery.load(False)
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGABRT if crash == "abort" else signal.SIGSEGV)


def _profile(executed: list[dict], avg_ms: float, first_ms: float, table: bool, csv_path: str) -> None:
    """Operator-wise profile in StatsCalculator's layout; see the module docstring for what is measured."""
    rows = [(op["op_name"] if op["op_name"] != "DELEGATE" else "TfLiteXNNPackDelegate",
             f"[{op.get('op_name')}]:{op['index']}") for op in executed]
    if len(rows) > 1:
        _log("WARNING", "per-node timings are not measurable on the virtual device; the measured run time is split "
                        "evenly across nodes")
    share, first_share = avg_ms / len(rows), first_ms / len(rows)
    lines_tab, lines_csv = [], []
    cdf = 0.0
    for index, (node_type, name) in enumerate(rows):
        pct = 100.0 / len(rows)
        cdf += pct
        values = (index * share, first_share, share, pct, cdf)
        lines_tab.append(f"\t{node_type:>24}\t{values[0]:17.3f}\t{values[1]:9.3f}\t{values[2]:9.3f}\t"
                         f"{pct:7.3f}%\t{cdf:7.3f}%\t{0.0:10.3f}\t{1:9d}\t{name}")
        lines_csv.append(f"{node_type}, {values[0]:.3f}, {values[1]:.3f}, {values[2]:.3f}, {pct:.3f}%, {cdf:.3f}%, "
                         f"0.000, 1, {name}")
    header_tab = ("\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t"
                  "  [mem KB]\t[times called]\t[Name]")
    header_csv = "node type, start, first, avg_ms, %, cdf%, mem KB, times called, name"
    if table:
        out = sys.stderr
        out.write("Operator-wise Profiling Info for Regular Benchmark Runs:\n")
        for title in ("Run Order", "Top by Computation Time"):
            out.write(f"============================== {title} ==============================\n")
            out.write(header_tab + "\n" + "\n".join(lines_tab) + "\n\n")
        out.write(f"Number of nodes executed: {len(rows)}\n")
        out.flush()
    if csv_path:
        target = Path(_host_path(csv_path))
        body = "".join(f"============================== {title} ==============================\n{header_csv}\n"
                       + "\n".join(lines_csv) + "\n\n" for title in ("Run Order", "Top by Computation Time"))
        target.write_text(body)
