"""The real Crossbar.io from PyPI, installed into its own venv by scripts/setup-crossbar.sh
(FABRIC_CROSSBAR_VENV overrides where): its paths and output cleaning for the interop tests."""

import os
import re
from pathlib import Path

import pytest

VENV = Path(os.environ.get("FABRIC_CROSSBAR_VENV", Path.home() / ".cache/fabric-master-crossbar-venv"))
CROSSBAR = VENV / "bin" / "crossbar"
CODE = re.compile(r"activation code for (\S+): (\w{4}-\w{4}-\w{4})")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SHELL_TIMEOUT = 60


def require_crossbar():
    if not CROSSBAR.exists():
        pytest.fail(f"{CROSSBAR} is missing: run scripts/setup-crossbar.sh", pytrace=False)
