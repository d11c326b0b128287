"""The soak runner's CI-sized run: scripts/soak.py with 1,000 simulated edge nodes and steady
management traffic through haproxy for 90 s (the long runs, an hour and more, are in
docs/RELIABILITY.md). It judges the run itself: every operation answered, and per replica no
growth of RSS, open files or the redb file after the warm-up; its report is kept with the
test's files."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_a_short_soak_stays_flat(tmp_path):
    out = tmp_path / "soak"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--bin", require_binary(), "--seconds", "90",
         "--nodes", "1000", "--rate", "20", "--sample", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=380,
    )
    tail = "\n".join((r.stdout + r.stderr).splitlines()[-15:])
    assert r.returncode == 0, tail
    assert "1000 of 1000 nodes paired and joined" in r.stdout, tail
    rows = list(csv.DictReader(open(out / "soak.csv")))
    assert len(rows) >= 25, len(rows)
    assert all(int(row["nodes_online"]) == 1000 for row in rows), tail
    assert sum(int(row["ops"]) for row in rows) >= 1000, tail
    assert (out / "soak.html").read_text().count("<svg") == 6
