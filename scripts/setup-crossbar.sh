#!/usr/bin/env bash
# Installs the real, unmodified Crossbar.io from PyPI (edge node and `crossbar shell`) into its
# own venv, for the interop tests. Its dependency set (Twisted, web3, numpy, …) stays out of the
# test venv. Idempotent: an existing working install is kept.
set -euo pipefail
VENV=${FABRIC_CROSSBAR_VENV:-$HOME/.cache/fabric-master-crossbar-venv}
SPEC=${CROSSBAR_SPEC:-crossbar}
if "$VENV/bin/crossbar" version >/dev/null 2>&1; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "$SPEC"
# bjdata is built against numpy 1.x in pip's isolated build and fails to import under numpy 2
# (a harmless traceback on every start); rebuild it against the installed numpy.
if ! "$VENV/bin/python" -c "import bjdata" 2>/dev/null; then
  "$VENV/bin/pip" install -q --no-build-isolation --no-cache-dir --force-reinstall --no-deps \
    "bjdata==$("$VENV/bin/pip" show bjdata | awk '/^Version/{print $2}')" || true
fi
"$VENV/bin/crossbar" version >/dev/null
