"""benchmark_model output, every captured form: each fixture parses to the figures printed in it.

Fixtures in tests/fixtures/android/benchmark_model are real outputs (their .source.txt says
where each came from). The space-layout op table and the CSV file are constructed from the
format in TFLite's stats_calculator.cc, because no public capture exists; those tests say so.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from profiler.coverage import parse_coverage
from profiler.op_profile import parse_op_profile
from profiler.parse import parse_log, parse_output, parse_stats_line

FIXTURES = Path(__file__).parent / "fixtures" / "android" / "benchmark_model"


def fixture(prefix: str) -> str:
    [path] = [p for p in FIXTURES.glob(f"{prefix}_*.txt") if not p.name.endswith(".source.txt")]
    return path.read_text()


def one(prefix: str):
    [run] = parse_log(fixture(prefix))
    return run


def test_every_fixture_has_its_source_note_and_parses() -> None:
    outputs = sorted(p for p in FIXTURES.glob("*.txt") if not p.name.endswith(".source.txt"))
    assert len(outputs) == 15
    for path in outputs:
        assert path.with_name(path.name[:-4] + ".source.txt").is_file(), path.name
        runs = parse_log(path.read_text())
        assert runs, path.name
        assert all(r.complete or r.failed or r.warmup for r in runs), path.name


def test_01_old_format_tail_without_info_prefix() -> None:
    run = one("01")
    assert run.warmup is None  # only the tail of the log was published
    assert (run.inference.count, run.inference.first_us, run.inference.curr_us) == (50, 249042, 250889)
    assert (run.inference.min_us, run.inference.max_us, run.inference.avg_us, run.inference.std_us) == \
        (247067, 254474, 249684, 1442)
    assert (run.init_us, run.first_us, run.warmup_avg_us, run.inference_avg_us) == (16242, 360262, 304586, 249684)
    assert (run.memory_kind, run.memory_init_mb, run.memory_overall_mb) == ("peak", 4.92969, 138.809)
    assert run.complete and not run.failed


def test_02_nnapi_gpu_run() -> None:
    run = one("02")
    assert run.inference.avg_us == 156669 and run.inference.std_us == 2352 and run.init_us == 404292
    assert run.memory_overall_mb == 61.0078


@pytest.mark.parametrize("prefix,error", [("04", "ANEURALNETWORKS_OP_FAILED"), ("05", "ANEURALNETWORKS_BAD_DATA")])
def test_04_05_failed_nnapi_delegate(prefix: str, error: str) -> None:
    run = one(prefix)
    assert run.failed and not run.complete
    assert [(c.delegate, c.state) for c in run.coverage] == [("NNAPI", "failed")]
    assert any(error in e for e in run.errors) and run.errors[-1] == "Benchmarking failed."
    assert run.params["NNAPI accelerators available"] == "qti-default,qti-dsp,qti-gpu,nnapi-reference"


def test_06_oldest_average_inference_timings_line() -> None:
    run = one("06")
    assert run.warmup.count == 1 and run.warmup.curr_us == 146161
    assert run.warmup.avg_us == 146161 and run.warmup.std_us == 0  # count=1 curr=C: every statistic is C
    assert (run.inference.count, run.inference.avg_us, run.inference.std_us) == (50, 137722, 896)
    assert (run.warmup_avg_us, run.init_us, run.inference_avg_us) == (146161, 4452, 137722)  # "no stats: 137722"
    assert run.init_session_ms == 4.452 and run.first_us is None


def test_07_info_prefix_and_scientific_warmup() -> None:
    run = one("07")
    assert run.warmup_avg_us == pytest.approx(1.04176e6) and run.first_us == 1041765
    assert (run.inference.count, run.inference.avg_us, run.inference.min_us, run.inference.max_us) == \
        (50, 971535, 911877, 1112273)
    assert (run.memory_kind, run.memory_init_mb, run.memory_overall_mb) == ("delta", 6.14844, 109.848)
    assert run.model_size_mb == 67.3128 and run.params["Use xnnpack"] == "0"


def test_08_scientific_average_and_percentiles() -> None:
    run = one("08")
    assert run.inference.avg_us == pytest.approx(1.24027e6) and run.inference_avg_us == pytest.approx(1.24027e6)
    assert (run.inference.p5_us, run.inference.median_us, run.inference.p95_us) == (1238753, 1239807, 1247415)
    assert run.warmup.p95_us == 1357602 and run.warmup_avg_us == pytest.approx(1.3576e6)


def test_09_partial_xnnpack() -> None:
    run = one("09")
    assert [(c.delegate, c.state, c.kernels) for c in run.coverage] == [("XNNPACK", "partial", 1)]
    assert run.inference.median_us == 899281 and run.init_us == 614333
    assert (run.memory_init_mb, run.memory_overall_mb) == (146.363, 150.141)


def test_11_external_partial_with_op_profile() -> None:
    run = one("11")
    assert [(c.delegate, c.state, c.kernels) for c in run.coverage] == [("EXTERNAL", "partial", 1)]
    assert run.inference.max_us == 1752106 and run.warmup_avg_us == pytest.approx(8.41626e6)
    ops = run.op_profile.runs
    assert [r.node_type for r in ops.run_order] == ["Vx Delegate", "TFLite_Detection_PostProcess"]
    assert ops.run_order[0].avg_ms == 152.984 and ops.run_order[0].name == "[Squeeze, convert_scores]:64"
    assert ops.run_order[1].start_ms == 152.998 and ops.run_order[1].percent == 0.974  # type wider than its column
    assert [(t.node_type, t.avg_ms) for t in ops.by_type] == [("Vx Delegate", 152.983),
                                                              ("TFLite_Detection_PostProcess", 1.504)]
    assert [r.node_type for r in run.op_profile.init.run_order] == ["ModifyGraphWithDelegate", "AllocateTensors"]
    assert run.op_profile.layout == "table"


def test_12_cpu_op_profile_64_nodes() -> None:
    run = one("12")
    assert run.coverage == []
    assert (run.warmup.count, run.warmup.avg_us, run.warmup.std_us) == (2, 408966, 65614)
    assert run.inference.avg_us == 343696  # not the op table's own "Timings (microseconds): count=50 ... avg=343597"
    ops = run.op_profile.runs
    assert ops.nodes_executed == 64 and len(ops.run_order) == 64 and len(ops.top_by_time) == 10
    assert ops.run_order[0].node_type == "CONV_2D" and ops.run_order[0].avg_ms == 13.795
    assert ops.run_order[0].name == "[FeatureExtractor/MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0"
    assert run.op_profile.slowest(1)[0].name.endswith("Conv2d_3_pointwise/Relu6]:6")
    assert [(t.node_type, t.count, t.avg_ms, t.percent) for t in ops.by_type][:2] == \
        [("CONV_2D", 34, 309.372, 90.047), ("DEPTHWISE_CONV_2D", 13, 29.474, 8.579)]
    assert sum(t.count for t in ops.by_type) == 64


def test_14_nnapi_complete_with_node_counts() -> None:
    run = one("14")
    [cov] = run.coverage
    assert (cov.delegate, cov.state, cov.nodes_replaced, cov.nodes_total) == ("NNAPI", "complete", 31, 31)
    assert (run.inference.count, run.inference.avg_us) == (520, 1885.74)
    assert run.memory_overall_mb == 7.83203  # the line has trailing blanks


def test_15_external_delegate_complete() -> None:
    run = one("15")
    [cov] = run.coverage
    assert (cov.delegate, cov.state, cov.nodes_replaced) == ("EXTERNAL", "complete", 31)
    assert (run.warmup.count, run.warmup.max_us, run.inference.count, run.inference.avg_us) == (277, 201009, 876, 1096.48)
    assert run.params["External delegate path"] == "/vendor/lib64/libvx_delegate.so"


def test_16_count1_curr_line_and_default_xnnpack() -> None:
    run = one("16")  # the shell prompt line before STARTING! is not a run
    assert (run.warmup.count, run.warmup.curr_us, run.warmup.median_us) == (1, 670083, 670083)
    assert run.warmup.min_us == run.warmup.max_us == 670083
    assert (run.inference.p5_us, run.inference.median_us, run.inference.p95_us) == (502674, 576856, 1373207)
    [cov] = run.coverage
    assert (cov.delegate, cov.state, cov.nodes_replaced, cov.nodes_total) == ("XNNPACK", "complete", 49, 49)


def test_17_two_delegates_one_not_executed() -> None:
    run = one("17")
    assert [(c.delegate, c.state) for c in run.coverage] == [("GPU", "complete"), ("NNAPI", "not executed")]
    assert run.coverage[0].nodes_replaced == 49
    assert run.init_us == 5664363 and run.warmup.count == 2 and run.inference.avg_us == 309350
    assert run.memory_init_mb == run.memory_overall_mb == 375.48


def test_19_two_runs_second_cut_off() -> None:
    first, second = parse_log(fixture("19"))
    assert (first.warmup.count, first.warmup.avg_us, first.inference.count, first.inference.avg_us) == \
        (7, 76605.9, 15, 66767.6)
    assert (first.warmup_avg_us, first.init_us, first.inference_avg_us) == (76605.9, 9933, 66767.6)
    assert first.complete
    assert (second.warmup.count, second.warmup.avg_us) == (13, 37625.7)
    assert second.inference is None and not second.complete and second.params["Num threads"] == "2"


def test_stats_line_variants() -> None:
    same = parse_stats_line("count=5 curr=100(all same)")
    assert (same.count, same.avg_us, same.min_us, same.std_us) == (5, 100, 100, 0)
    assert parse_stats_line("count=0").avg_us is None
    assert parse_stats_line("Timings (microseconds): count=1 curr=4786") is None
    assert parse_stats_line("count=2 first=1e+06 curr=2.5E6 min=1e6 max=2.5e+06 avg=1.75e+06 std=750000").avg_us == 1.75e6


def test_newer_memory_lines_and_logcat_summary() -> None:
    text = "\n".join([
        "INFO: Inference timings in us: Init: 1000, First inference: 2000, Warmup (avg): 1500, Inference (avg): 1200",
        "INFO: Memory footprint delta from the start of the tool (MB): init=1.5 overall=3.25",
        "INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.5",
    ])
    run = parse_output(text)
    assert (run.memory_kind, run.memory_overall_mb, run.periodic_peak_mb) == ("delta", 3.25, 12.5)
    logcat = parse_output("I/tflite  ( 1234): Average inference timings in us: Warmup: 91471, Init: 4108, "
                          "Inference: 80660.1")
    assert (logcat.warmup_avg_us, logcat.init_us, logcat.inference_avg_us) == (91471, 4108, 80660.1)


def test_space_layout_op_table_constructed() -> None:
    """Constructed: fixture 12's rows with tabs turned into spaces, as pages and older TF builds show them."""
    text = fixture("12")
    start = text.index("Operator-wise Profiling Info")
    spaced = parse_op_profile(text[start:].replace("\t", "    "))
    tabbed = parse_op_profile(text[start:])
    assert spaced.runs.run_order == tabbed.runs.run_order and len(spaced.runs.run_order) == 64
    assert spaced.runs.by_type == tabbed.runs.by_type


def test_profiling_csv_file_constructed() -> None:
    """Constructed from stats_calculator.cc's format_as_csv output (no public capture of the CSV exists)."""
    csv_text = "\n".join([
        "============================== Run Order ==============================",
        "node type, start, first, avg_ms, %, cdf%, mem KB, times called, name",
        "CONV_2D, 0.009, 13.724, 13.795, 4.015%, 4.015%, 0, 1, [FeatureExtractor/Conv2d_0/Relu6]:0",
        "TFLite_Detection_PostProcess, 342.308, 1.336, 1.357, 0.395%, 100%, 0, 1, "
        "[TFLite_Detection_PostProcess, TFLite_Detection_PostProcess:1]:63",
        "",
        "============================== Summary by node type ==============================",
        "node type, count, avg_ms, avg %, cdf %, mem KB, times called",
        "CONV_2D, 34, 309.372, 90.047%, 90.047%, 0, 34",
        "TFLite_Detection_PostProcess, 1, 1.357, 0.395%, 100%, 0, 1",
    ])
    profile = parse_op_profile(csv_text)
    assert profile.layout == "csv"
    first, last = profile.runs.run_order
    assert (first.node_type, first.avg_ms, first.percent, first.name) == \
        ("CONV_2D", 13.795, 4.015, "[FeatureExtractor/Conv2d_0/Relu6]:0")
    assert last.name == "[TFLite_Detection_PostProcess, TFLite_Detection_PostProcess:1]:63" and last.cdf_percent == 100
    assert [(t.node_type, t.count, t.times_called) for t in profile.runs.by_type] == \
        [("CONV_2D", 34, 34), ("TFLite_Detection_PostProcess", 1, 1)]


def test_hexagon_coverage_constructed() -> None:
    """Constructed: the sentences TFLite prints for any delegate, with the Hexagon kernel name."""
    lines = ["INFO: Replacing 60 out of 64 node(s) with delegate (TfLiteHexagonDelegate) node, yielding 2 partitions.",
             "INFO: Explicitly applied HEXAGON delegate, and the model graph will be partially executed by the "
             "delegate w/ 2 delegate kernels."]
    [cov] = parse_coverage(lines)
    assert (cov.delegate, cov.state, cov.kernels, cov.nodes_replaced, cov.nodes_total) == ("HEXAGON", "partial", 2, 60, 64)
