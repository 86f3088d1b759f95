"""Terminal tables, JSON and CSV output, and the atomic writers behind every report."""
from __future__ import annotations

import csv
import json
import os
import stat

import pytest

from mobile_compress.report import (Column, atomic_open, environment, format_field, format_fields, format_number,
                                    format_table, format_value, printable, safe_cell, write_bytes, write_csv_rows,
                                    write_json, write_text)
from mobile_compress.report.numbers import RAW_FLOAT


def test_table_aligns_columns_and_formats_values() -> None:
    text = format_table([{"name": "a", "n": 1.5}, {"name": "longer", "n": 22.25}],
                        [Column("name", "model"), Column("n", "value", lambda v: f"{v:.1f}", ">")], title="t")
    lines = text.splitlines()
    assert lines[0] == "t" and lines[1].split() == ["model", "value"]
    assert lines[3].endswith("  1.5") and lines[4].endswith(" 22.2")
    assert len({len(l) for l in lines[2:]}) == 1  # every row as wide as the rule


def test_write_json_is_atomic_and_readable_by_others(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "sub" / "r.json", {"a": [1, 2]})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp file left behind


def test_environment_names_machine_and_versions() -> None:
    env = environment()
    assert env.cores >= 1 and "torch" in env.versions and env.python.startswith("3.")
    assert "Machine:" in env.markdown()


def test_write_json_that_fails_midway_keeps_the_previous_file_and_no_temp(tmp_path, monkeypatch) -> None:
    path = write_json(tmp_path / "r.json", {"a": 1})

    def half_then_fail(data, fh, **kw) -> None:
        fh.write('{"a": ')
        raise RuntimeError("serialisation failed")

    monkeypatch.setattr(json, "dump", half_then_fail)
    with pytest.raises(RuntimeError, match="serialisation failed"):
        write_json(path, {"a": 2})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_text_bytes_and_csv_writers_replace_whole_files_or_nothing(tmp_path) -> None:
    text = write_text(tmp_path / "sub" / "page.html", "<p>old</p>")
    data = write_bytes(tmp_path / "sub" / "model.tflite", b"old bytes")
    table = write_csv_rows(tmp_path / "sub" / "t.csv", ["a"], [{"a": 1}])
    assert (text.read_text(), data.read_bytes()) == ("<p>old</p>", b"old bytes")
    with pytest.raises(UnicodeEncodeError):
        write_text(text, "<p>new</p>" * 1000 + "\ud800")  # cannot be encoded: fails after part is written
    with pytest.raises(RuntimeError):
        with atomic_open(data, "wb") as fh:
            fh.write(b"half")
            raise RuntimeError("killed")

    def rows():
        yield {"a": 2}
        raise RuntimeError("a row cannot be computed")

    with pytest.raises(RuntimeError):
        write_csv_rows(table, ["a"], rows())
    assert (text.read_text(), data.read_bytes(), table.read_bytes()) == ("<p>old</p>", b"old bytes", b"a\r\n1\r\n")
    assert sorted(p.name for p in text.parent.iterdir()) == ["model.tflite", "page.html", "t.csv"]


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://evil\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "-cmd",
                                  "@SUM(1,1)", "\t=1", "\r=1", "-0.80 pts", "-inf"])
def test_csv_text_that_a_spreadsheet_would_run_is_quoted(cell) -> None:
    assert safe_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", [-3.5, -3, 0, True, "-3.5", "+2", "-1e-3", "model.tflite", "a=b", "cpu-1t", ""])
def test_csv_numbers_and_plain_text_stay_as_they_are(cell) -> None:
    assert safe_cell(cell) == cell


def test_csv_rows_are_formula_safe_and_keep_numbers(tmp_path) -> None:
    path = write_csv_rows(tmp_path / "t.csv", ["name", "x", "note"],
                          [{"name": "=1+1", "x": -3.5, "note": None, "ignored": "=2"}])
    assert list(csv.reader(path.open(newline=""))) == [["name", "x", "note"], ["'=1+1", "-3.5", ""]]


def test_printable_shows_control_characters_as_escapes() -> None:
    assert printable("model\x1b[31mred\x1b[0m.tflite") == "model\\x1b[31mred\\x1b[0m.tflite"
    assert printable("a\rb\x9b2Jc\x00\x7f") == "a\\x0db\\x9b2Jc\\x00\\x7f"
    assert printable("two\nlines\tand tabs, ünïcode") == "two\nlines\tand tabs, ünïcode"


def test_table_cells_and_title_cannot_drive_the_terminal() -> None:
    text = format_table([{"name": "evil\x1b[2J"}], [Column("name", "model")], title="t\x1b]0;pwned\x07")
    assert "\x1b" not in text and "\x07" not in text
    assert "evil\\x1b[2J" in text and text.splitlines()[0] == "t\\x1b]0;pwned\\x07"


# ----------------------------------------------------------------------------- one rule for how a number is shown


@pytest.mark.parametrize("value, unit, shown", [
    (12.5, "ms", "12.50 ms"), (699.438, "ms", "699.4 ms"), (1.23456789, "ms", "1.235 ms"), (2345.6, "ms", "2346 ms"),
    (0.0123456, "ms", "0.0123 ms"), (0.00155, "ms", "0.0015 ms"), (3e-07, "ms", "3e-07 ms"), (0.0, "ms", "0.0 ms"),
    (42.54010009765625, "MB", "42.5 MB"), (1499.6666667, "mW", "1500 mW"), (18.7512345678, "mJ", "18.75 mJ"),
    (97.49303621169916, "%", "97.49 %"), (7.283, "%", "7.28 %"), (9.87654321, "Hz", "9.9 Hz"),
    (23.54010009765625, "GiB", "23.5 GiB"), (0.75, "GiB", "768.0 MiB"), (771_234, "bytes", "753.2 KiB"),
    (512, "bytes", "512 B"), (3_504_872, "count", "3.50 M"), (101.23456, "s", "101 s"), (50, "ms", "50 ms"),
    (True, None, "yes"), (2.718281828, None, "2.718"),
])
def test_each_unit_has_one_precision(value, unit, shown) -> None:
    assert format_number(value, unit) == shown


def test_facts_from_json_are_shown_in_the_unit_their_key_names() -> None:
    assert format_field("memory_gib", 23.54010009765625) == "23.5 GiB"
    assert format_field("vm_hwm_mb", 42.54010009765625) == "42.5 MB"
    assert format_field("temperature_decic", 314) == "31.4 °C"
    assert format_field("max_freq_khz", {"0": 2016000, "1": 2016000, "2": 2016000, "3": 2803200, "7": 3187200}) \
        == "0-2: 2.02 GHz; 3: 2.80 GHz; 7: 3.19 GHz"
    battery = {"level": 81, "voltage_mv": 4211, "temperature_decic": 314, "present": True, "ac_powered": False,
               "technology": None, "extras": {}}
    assert format_field("battery", battery) == "level 81, voltage 4211 mV, temperature 31.4 °C, present"
    env = {"cores": 2, "memory_gib": 23.540279388427734, "versions": {"torch": "2.13.0"}}
    assert format_fields(env) == "cores 2, memory 23.5 GiB, versions (torch 2.13.0)"
    assert format_value(None) == "–" and format_value([1.23456789, 2], "ms") == "1.235 ms, 2 ms"


def test_table_never_shows_a_float_repr() -> None:
    """A column with no formatter of its own, or one with a unit, shows a float at its unit's precision."""
    rows = [{"name": "a", "x": 23.54010009765625, "t": 0.123456789, "n": 7}]
    text = format_table(rows, [Column("name", "model"), Column("x", "value", align=">"),
                               Column("t", "time ms", align=">", unit="ms"), Column("n", "n", align=">")])
    assert not RAW_FLOAT.search(text), text
    assert text.splitlines()[2].split() == ["a", "23.54", "0.123", "7"]
