#!/usr/bin/env bash
# The offline chart tools (no helm binary, no network at check time): helm-python-sdk (the Helm
# SDK as a library), kubernetes-validate (bundled Kubernetes schemas), yamllint, PyYAML; in their
# own venv. Idempotent.
set -euo pipefail
VENV=${FABRIC_HELM_VENV:-$HOME/.cache/fabric-master-helm-venv}
if "$VENV/bin/python" -c 'import helm_python, yaml' 2>/dev/null && [ -x "$VENV/bin/kubernetes-validate" ] \
  && [ -x "$VENV/bin/yamllint" ]; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q helm-python-sdk kubernetes-validate yamllint PyYAML
