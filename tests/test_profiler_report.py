"""Profile reports: the versioned JSON (and its resume rules), CSV, HTML with inline SVG, the terminal table."""
from __future__ import annotations

import csv
import json
import re
from xml.etree import ElementTree
from pathlib import Path

import pytest

from mobile_compress.errors import UserError
from profiler.reports import format_runs, write_csv, write_html
from profiler.reports.html_report import latency_svg, render_html
from profiler.reports.rows import flat
from profiler.results import SCHEMA, SCHEMA_VERSION, ResultStore, RunRecord, load


def ok_record(device: str = "PHONE_A", delegate: str = "cpu-4t", mean: float = 12.5) -> RunRecord:
    return RunRecord(
        device=device, model="net.tflite", delegate=delegate, status="ok", device_info={"model": "Pixel 8"},
        latency={"source": "benchmark_model statistics", "n": 50, "init_ms": 30.0, "first_ms": 20.0, "warmup_ms": 15.0,
                 "mean_ms": mean, "std_ms": 1.0, "min_ms": mean - 2, "max_ms": mean + 5, "p5_ms": mean - 1.5,
                 "median_ms": mean - 0.2, "p95_ms": mean + 2, "p50_ms": None, "p90_ms": None, "p99_ms": None,
                 "ci95_low_ms": mean - 0.3, "ci95_high_ms": mean + 0.3},
        memory={"footprint_kind": "delta", "footprint_init_mb": 5.0, "footprint_overall_mb": 20.0,
                "periodic_peak_mb": None, "vm_hwm_mb": 42.5, "vm_rss_max_mb": 40.0, "samples": 12},
        power={"status": "measured", "run_mw": 2400.0, "baseline_mw": 900.0, "above_baseline_mw": 1500.0,
               "mj_per_inference": 18.75, "sample_rate_hz": 9.8},
        thermal_before={"status_name": "none", "max_c": 38.0}, thermal_after={"status_name": "light", "max_c": 44.0},
        coverage=[{"delegate": "XNNPACK", "state": "partial", "kernels": 3}])


def failed_record() -> RunRecord:
    return RunRecord(device="PHONE_A", model="net.tflite", delegate="nnapi-qti-dsp", status="failed",
                     error="benchmark_model exited with 1: Failed to apply NNAPI delegate.",
                     coverage=[{"delegate": "NNAPI", "state": "failed", "kernels": None}])


def test_json_schema_roundtrip_and_resume_rules(tmp_path: Path) -> None:
    from dataclasses import replace

    from profiler.model_id import ModelId

    net = ModelId(Path("/models/net.tflite"), "ab" * 32, "net.tflite")

    def of_net(record: RunRecord) -> RunRecord:
        return replace(record, model_path=str(net.path), model_sha256=net.sha256)

    store = ResultStore(tmp_path, {"cpu": "test"})
    store.add(of_net(ok_record()))
    store.add(of_net(failed_record()))
    data = json.loads((tmp_path / "profile.json").read_text())
    assert (data["schema"], data["schema_version"], data["environment"]) == (SCHEMA, SCHEMA_VERSION, {"cpu": "test"})
    assert [r["status"] for r in data["runs"]] == ["ok", "failed"]
    again = ResultStore(tmp_path)  # a rerun with the same --out
    assert again.done("PHONE_A", net, "cpu-4t")  # ok runs are skipped
    assert not again.done("PHONE_A", net, "nnapi-qti-dsp")  # failed runs are tried again
    assert not again.done("PHONE_A", replace(net, sha256="cd" * 32), "cpu-4t")  # not for other bytes at that path
    assert not again.done("PHONE_A", replace(net, path=Path("/other/net.tflite")), "cpu-4t")  # nor another file
    again.add(of_net(failed_record()))
    [retried] = [r for r in load(tmp_path / "profile.json") if r.delegate == "nnapi-qti-dsp"]
    assert retried.attempts == 2
    assert load(tmp_path / "profile.json")[0].latency["mean_ms"] == 12.5


def test_json_from_another_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"schema": SCHEMA, "schema_version": 99, "runs": []}))
    with pytest.raises(UserError, match="schema_version 99"):
        ResultStore(tmp_path)
    path.write_text("{not json")
    with pytest.raises(UserError, match="not a readable profile JSON"):
        load(path)
    path.write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(UserError, match="field 'schema'"):
        load(path)


def test_csv_has_one_row_per_run_with_flat_figures(tmp_path: Path) -> None:
    record = ok_record()
    record.model_path, record.model_sha256 = "/models/a/net.tflite", "ab" * 32
    path = write_csv([record, failed_record()], tmp_path / "p.csv")
    rows = list(csv.DictReader(path.open()))
    header = next(csv.reader(path.open()))
    assert header[header.index("model"):header.index("model") + 3] == ["model", "model_path", "model_sha256"]
    assert (rows[0]["model_path"], rows[0]["model_sha256"]) == ("/models/a/net.tflite", "ab" * 32)  # which file
    assert rows[1]["model_path"] == rows[1]["model_sha256"] == "" and rows[0]["refused_files"] == ""
    assert [r["delegate"] for r in rows] == ["cpu-4t", "nnapi-qti-dsp"]
    assert float(rows[0]["mean_ms"]) == 12.5 and float(rows[0]["vm_hwm_mb"]) == 42.5
    assert float(rows[0]["mj_per_inference"]) == 18.75 and rows[0]["coverage"] == "XNNPACK partial (3 kernels)"
    assert rows[1]["status"] == "failed" and rows[1]["mean_ms"] == "" and "NNAPI" in rows[1]["error"]


def test_terminal_table_shows_figures_and_errors() -> None:
    text = format_runs([ok_record(), failed_record()])
    lines = text.splitlines()
    assert lines[0] == "profile" and "mean ms" in lines[1] and "95% CI" in lines[1]
    row = lines[3]
    assert "12.50" in row and "12.20-12.80" in row and "1500" in row and "18.75" in row and "none->light" in row
    assert "Failed to apply NNAPI delegate" in lines[4]


def test_html_compares_models_delegates_devices_with_inline_svg(tmp_path: Path) -> None:
    records = [ok_record("PHONE_A", "cpu-4t", 12.5), ok_record("PHONE_B", "cpu-4t", 30.0),
               ok_record("PHONE_A", "gpu-fp16", 4.0), failed_record()]
    page = write_html(records, tmp_path / "p.html", {"cpu": "test host"}).read_text()
    assert page.count("<svg") == 4  # latency, memory, power, energy for the one model
    for label in ("PHONE_A · cpu-4t", "PHONE_B · cpu-4t", "PHONE_A · gpu-fp16"):
        assert label in page
    assert "mean 12.50 ms (n=50)" in page and "mean 30.00 ms (n=50)" in page
    assert "Failed to apply NNAPI delegate" in page and "<tr class='run bad'>" in page
    assert "not on a phone" not in page
    assert "<h2>Devices</h2>" in page and "Pixel 8" in page
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        ElementTree.fromstring(svg)  # every plot is well-formed XML


def test_html_lists_the_slowest_operators() -> None:
    record = ok_record()
    record.slowest_ops = [{"node_type": "CONV_2D", "avg_ms": 25.024, "percent": 7.283, "name": "[Conv2d_3]:6"}]
    page = render_html([record])
    assert "25.02 ms (7.28 %) CONV_2D <code>[Conv2d_3]:6</code>" in page


def test_latency_svg_scales_to_the_slowest_run() -> None:
    rows = [{**flat(ok_record(mean=10.0)), "label": "a"}, {**flat(ok_record(mean=20.0)), "label": "b"}]
    svg = latency_svg(rows, "t")
    # the slowest max (25 ms) spans the whole plot: its whisker ends at LABEL_W + PLOT_W = 720
    assert 'x2="720.0"' in svg and svg.startswith("<svg") and svg.endswith("</svg>")


def test_host_rows_are_labelled() -> None:
    record = ok_record(device="host")
    record.mode = "host"
    assert flat(record)["device"] == "host (LiteRT on this computer)"
    assert "not on a phone" in render_html([record])


def test_csv_cells_from_models_and_devices_cannot_become_formulas(tmp_path: Path) -> None:
    record = ok_record(device="+1+cmd|' /C calc'!A0", mean=-3.5)
    record.model = '=HYPERLINK("http://evil.example","open me").tflite'
    record.device_info = {"model": "@SUM(1+1)*cmd|' /C calc'!A0"}
    failed = failed_record()
    failed.error = "-2+3+cmd|' /C calc'!A0"
    failed.delegate = "\t=1"
    rows = list(csv.DictReader(write_csv([record, failed], tmp_path / "p.csv").open(newline="")))
    assert rows[0]["model"] == "'" + record.model and rows[0]["device"] == "'" + record.device
    assert rows[0]["device_model"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert rows[1]["error"] == "'" + failed.error and rows[1]["delegate"] == "'\t=1"
    assert rows[0]["mean_ms"] == "-3.5" and rows[0]["min_ms"] == "-5.5"  # numbers stay numbers
    assert rows[0]["delegate"] == "cpu-4t" and rows[0]["status"] == "ok"


def test_csv_and_html_are_replaced_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    import profiler.reports.csv_report as csv_report
    import profiler.reports.html_report as html_report

    csv_path = write_csv([ok_record(), failed_record()], tmp_path / "profile.csv")
    html_path = write_html([ok_record(), failed_record()], tmp_path / "profile.html")
    before = {p.name: p.read_bytes() for p in (csv_path, html_path)}
    calls = []

    def flat_then_fail(record: RunRecord) -> dict:
        calls.append(record)
        if len(calls) > 1:
            raise RuntimeError("killed while writing the second row")
        return flat(record)

    monkeypatch.setattr(csv_report, "flat", flat_then_fail)
    with pytest.raises(RuntimeError):
        write_csv([ok_record(mean=1.0), failed_record()], csv_path)
    real_render = html_report.render_html
    monkeypatch.setattr(html_report, "render_html", lambda *a, **kw: real_render(*a, **kw) + "\ud800")
    with pytest.raises(UnicodeEncodeError):  # fails while writing, after the page's text went out
        write_html([ok_record(mean=1.0)], html_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the old reports, and no temp files


def test_terminal_table_shows_device_errors_without_their_control_characters() -> None:
    failed = failed_record()
    failed.error = "benchmark_model: \x1b[31mFAILED\x1b[0m\rinjected"
    text = format_runs([failed])
    assert "\x1b" not in text and "\r" not in text and "\\x1b[31mFAILED\\x1b[0m\\x0dinjected" in text


def test_device_files_not_pulled_are_noted_in_every_view_escaped(tmp_path: Path) -> None:
    """A run's refused device names survive profile.json and show in the CSV, the HTML and the terminal."""
    record = ok_record()
    record.refused_files = [{"name": "../../escaped.txt", "reason": "a path, not a plain file name"},
                            {"name": "esc\x1b[31mred", "reason": "contains a control character (NUL, newline ...)"},
                            {"name": "<b>x</b>", "reason": "its target would lie outside the run folder"},
                            {"name": "=cmd|' /C calc'!A0", "reason": "r"}, {"name": "fifth", "reason": "r"}]
    store = ResultStore(tmp_path)
    store.add(record)
    [loaded] = load(tmp_path / "profile.json")
    assert loaded.refused_files == record.refused_files
    text = format_runs([loaded])
    assert "not pulled from the device, 5 unsafe file names (all in profile.json)" in text
    assert "../../escaped.txt (a path, not a plain file name)" in text and "and 2 more" in text
    assert "\x1b" not in text and "esc\\x1b[31mred" in text
    page = render_html([loaded])
    assert "not pulled from the device, 5 unsafe file names" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x</b>" not in page and "\x1b" not in page
    [row] = csv.DictReader(write_csv([loaded], tmp_path / "p.csv").open(newline=""))
    cell = row["refused_files"]
    assert cell.startswith("../../escaped.txt (a path") and "esc\\x1b[31mred" in cell and "fifth (r)" in cell
    assert "=cmd|' /C calc'!A0 (r)" in cell  # all names here; the cell starts with '.' so is no formula
    assert "not pulled" not in format_runs([ok_record()]) and "not pulled" not in render_html([ok_record()])


# ----------------------------------------------------------------------------- readable: precision, width, reasons


def _raw_float_record() -> RunRecord:
    """A run whose every figure is a float with a long repr, as a phone and the statistics give them."""
    record = ok_record(mean=12.3456789012)
    record.latency = {k: (v * 1.000123456789 if isinstance(v, float) else v) for k, v in record.latency.items()}
    record.memory = {**record.memory, "vm_hwm_mb": 42.54010009765625, "footprint_overall_mb": 20.987654321}
    record.power = {**record.power, "above_baseline_mw": 1499.666666667, "mj_per_inference": 18.7512345678,
                    "sample_rate_hz": 9.87654321}
    record.device_info = {"model": "Pixel 8", "memory_gib": 23.54010009765625, "cores": 8,
                          "max_freq_khz": {"0": 1704000, "1": 1704000, "2": 2367000},
                          "battery": {"level": 81, "temperature_decic": 314, "voltage_mv": 4211.123456789,
                                      "present": True, "extras": {}}}
    record.slowest_ops = [{"node_type": "CONV_2D", "avg_ms": 1.23456789, "percent": 23.456789, "name": "conv"}]
    return record


def _text(page: str) -> str:
    """What a reader sees: the page without its markup (SVG coordinates are not text)."""
    return re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S))


def test_no_float_repr_reaches_the_page_or_the_terminal() -> None:
    from mobile_compress.report.numbers import RAW_FLOAT

    records = [_raw_float_record(), failed_record()]
    environment = {"date": "2026-01-01 00:00 UTC", "cores": 2, "memory_gib": 23.540279388427734,
                   "versions": {"torch": "2.13.0"}}
    page = _text(render_html(records, environment=environment))
    assert not RAW_FLOAT.findall(page), RAW_FLOAT.findall(page)
    assert "memory 23.5 GiB" in page  # the environment line
    assert "23.5 GiB" in page and "0-1: 1.70 GHz; 2: 2.37 GHz" in page and "temperature 31.4 °C" in page  # devices
    assert "42.5" in page and "1500" in page and "18.75" in page and "1.235 ms (23.46 %)" in page
    table = format_runs(records)
    assert not RAW_FLOAT.findall(table), table
    assert "12.35" in table and "42.5" in table and "18.75" in table


def test_wide_tables_stay_inside_their_block() -> None:
    from profiler.reports.html_report import PAGE_STYLE

    page = render_html([_raw_float_record(), failed_record()], environment={"cores": 2})
    tables = re.findall(r"<table", page)
    assert len(tables) == 2 and page.count("<div class='wide'><table") == len(tables)
    wide = re.search(r"\.wide\{([^}]*)\}", PAGE_STYLE).group(1)
    assert "overflow-x:auto" in wide and "max-width:100%" in wide
    assert "svg{max-width:100%" in PAGE_STYLE  # plots shrink with the window, never push the page wider
    assert re.search(r"tr\.reason td\{[^}]*overflow-wrap:anywhere", PAGE_STYLE)  # a long reason wraps


def test_a_failed_runs_reason_is_the_row_under_it_across_the_table() -> None:
    failed = failed_record()
    failed.error = "benchmark_model exited with 1: " + "a very long reason " * 40 + "<end>"
    page = render_html([ok_record(), failed])
    header = re.search(r"<table class='runs'><thead><tr>(.*?)</tr>", page).group(1)
    columns = header.count("<th")
    rows = re.findall(r"<tr class='([^']*)'>(.*?)</tr>", page, flags=re.S)
    kinds = [kind for kind, _ in rows]
    assert kinds == ["run", "run bad", "reason bad"]
    run_cells, reason = rows[1][1], rows[2][1]
    assert "nnapi-qti-dsp" in run_cells and "failed" in run_cells
    assert f"<td colspan='{columns}'>" in reason  # spans the table: starts at its left edge, wraps at its right
    assert "why it failed:" in reason and "&lt;end&gt;" in reason and failed.error[:40] in reason
    assert "error" not in header  # not a last column off to the right any more


def test_a_note_on_an_ok_run_sits_under_it_too() -> None:
    record = ok_record()
    record.power = {"status": "not measured: no battery current node"}  # a phone run without power says why
    record.refused_files = [{"name": "../x", "reason": "a path, not a plain file name"}]
    page = render_html([record])
    rows = re.findall(r"<tr class='([^']*)'>(.*?)</tr>", page, flags=re.S)
    assert [kind for kind, _ in rows] == ["run", "reason"]
    assert "note:" in rows[1][1] and "no battery current node" in rows[1][1] and "not pulled" in rows[1][1]


def test_a_long_plot_label_is_cut_in_the_middle_and_kept_whole_in_its_tooltip() -> None:
    from profiler.reports.svg import MAX_LABEL_W, PLOT_W, VALUE_W

    label = "R5CT00LONGSERIALWITHOUTANYBREAKS" + "X" * 30 + " · gpu-fp16"
    svg = latency_svg([{**flat(ok_record()), "label": label}], "t")
    shown = re.search(r"<text [^>]*><title>(.*?)</title>(.*?)</text>", svg)
    assert shown.group(1) == label and "…" in shown.group(2)
    assert shown.group(2).startswith("R5CT00") and shown.group(2).endswith("· gpu-fp16")  # the delegate stays
    assert f'width="{MAX_LABEL_W + PLOT_W + VALUE_W}"' in svg  # the label column grew to its limit, no further


def test_a_confidence_interval_below_zero_or_past_the_slowest_run_stays_in_the_plot() -> None:
    """Three runs give a wide CI (-0.04 to 0.195 ms here, max 0.143): it is drawn inside the plot, not over labels."""
    from profiler.reports.svg import LABEL_W, PLOT_W

    row = {**flat(ok_record(mean=0.0737)), "label": "a"}
    row.update(min_ms=0.035, max_ms=0.143, ci95_low_ms=-0.0391, ci95_high_ms=0.195)
    svg = latency_svg([row], "t")
    [ci] = re.findall(r'<line x1="(-?[\d.]+)" x2="(-?[\d.]+)"[^>]*stroke="black"', svg)
    assert (float(ci[0]), float(ci[1])) == (LABEL_W, LABEL_W + PLOT_W)  # 0 ms to the CI's top, the plot's end
