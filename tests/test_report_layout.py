"""The HTML reports laid out by a real browser at 1280 px: nothing runs off the right of the window.

Headless Chromium loads each page with a small probe script that writes the layout it got
(window width, page width, the right edge of every table, scrolling block and failure
reason) into the page, and ``--dump-dom`` hands that back. Skipped, saying why, where no
Chromium is installed (``apt-get install chromium``).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workflows.deploy.report import render_html as deploy_html
from profiler.reports.html_report import render_html as profile_html
from test_deploy import _float_report
from test_profiler_report import _raw_float_record, failed_record, ok_record

WIDTH = 1280
BROWSER = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium here: apt-get install chromium")

PROBE = """<script>window.addEventListener('load', () => {
  const right = sel => [...document.querySelectorAll(sel)].map(e => Math.ceil(e.getBoundingClientRect().right));
  const out = {inner: window.innerWidth, page: document.documentElement.scrollWidth, tables: right('table'),
               blocks: right('div.wide'), reasons: right('.why, td.note'),
               scrolled: [...document.querySelectorAll('div.wide')].filter(d => d.scrollWidth > d.clientWidth).length};
  const pre = document.createElement('pre'); pre.id = 'layout'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


def layout(page: str, tmp_path: Path) -> dict:
    path = tmp_path / "page.html"
    path.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'ud'}",
                           f"--window-size={WIDTH},1000", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="layout">(.*?)</pre>', proc.stdout)
    assert found, proc.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


def _long_failure():
    failed = failed_record()
    failed.model = ok_record().model
    failed.error = ("benchmark_model exited with 1: ERROR: Failed to apply NNAPI delegate at /data/local/tmp/"
                    "mobile-compress/run-0123456789abcdef/models/a_really_long_model_file_name_int8.tflite " * 6)
    return failed


def test_profile_page_fits_1280px_and_a_failure_reason_is_in_view(tmp_path: Path) -> None:
    records = [_raw_float_record(), ok_record(delegate="gpu-fp16", mean=4.0), _long_failure()]
    got = layout(profile_html(records, environment={"cores": 2, "memory_gib": 23.540279388427734}), tmp_path)
    assert got["inner"] == WIDTH
    assert got["page"] <= WIDTH, got  # no horizontal scrollbar on the page
    assert got["reasons"] and max(got["reasons"]) <= WIDTH, got
    assert max(got["tables"]) <= WIDTH and got["scrolled"] == 0, got  # this run table fits without scrolling


def test_a_table_wider_than_the_window_scrolls_in_its_block_and_keeps_the_reason_in_view(tmp_path: Path) -> None:
    records = [ok_record(device=f"PHONE_{i:02d}_{'X' * 40}") for i in range(14)] + [_long_failure()]
    records[-1].device = records[0].device
    for i, record in enumerate(records):
        record.device_info = {"model": f"Phone model {i} with a long marketing name", "serial": record.device}
    got = layout(profile_html(records), tmp_path)
    assert got["scrolled"] == 2, got  # the devices and the run table are wider than the window: they scroll...
    assert got["page"] <= WIDTH and max(got["blocks"]) <= WIDTH, got  # ...inside its own block, not the page
    assert max(got["reasons"]) <= WIDTH, got


def test_deploy_page_fits_1280px_with_its_failure_reason_in_the_row(tmp_path: Path) -> None:
    got = layout(deploy_html(_float_report()), tmp_path)
    assert got["page"] <= WIDTH and max(got["tables"]) <= WIDTH and got["scrolled"] == 0, got
    assert got["reasons"] and max(got["reasons"]) <= WIDTH, got
