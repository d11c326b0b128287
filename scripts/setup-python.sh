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
echo "python test venv ready: $VENV"
