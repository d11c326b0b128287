#!/usr/bin/env bash
# Creates the Python venv the integration tests use (autobahn-python and friends from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FABRIC_VENV:-$HOME/.cache/fabric-master-venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -r tests/python/requirements.txt
# bjdata (autobahn's ubjson) is built against numpy 1.x in pip's isolated build and fails to
# import under numpy 2 (a traceback at every start); rebuild it against the installed numpy.
if ! "$VENV/bin/python" -c "import bjdata" 2>/dev/null && "$VENV/bin/pip" show bjdata >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q setuptools wheel
  "$VENV/bin/pip" install -q --no-build-isolation --no-cache-dir --force-reinstall --no-deps \
    "bjdata==$("$VENV/bin/pip" show bjdata | awk '/^Version/{print $2}')" || true
fi
echo "python test venv ready: $VENV"
