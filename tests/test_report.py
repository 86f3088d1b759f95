"""Terminal tables and JSON output."""
from __future__ import annotations

import json
import os
import stat

from mobile_compress.report import Column, environment, format_table, write_json


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
