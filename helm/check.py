#!/usr/bin/env python3
"""Offline checks of the chart: helm lint (strict) and render (helm-python-sdk, Helm SDK v4),
for the default values and every file in values-tests/, then each rendering validated against
the Kubernetes 1.32 schemas (kubernetes-validate --strict) and linted (yamllint); the
default values without a superuser key must fail with a clear message.

Usage: python3 helm/check.py [--out DIR]   (a venv: pip install helm-python-sdk kubernetes-validate yamllint pyyaml)
Writes the renderings to DIR (default: a temp dir) for other tests to use.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import helm_python
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.join(HERE, "fabric-master")
# The CRD kinds kubernetes-validate has no schema for.
CRDS = {"ServiceMonitor", "Certificate"}
BASE = {"superuser": {"publicKey": "public-key-ed25519: " + "ab" * 32 + "\n"}}


def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(values: dict, name="fm", namespace="fabric") -> str:
    chart = helm_python.Chart.load(CHART)
    files = chart.render(name=name, namespace=namespace, is_install=True, values=values)
    docs = [files[k].strip() + "\n" for k in sorted(files) if k.endswith(".yaml") and files[k].strip()]
    return "\n---\n".join(docs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out_dir = a.out or tempfile.mkdtemp(prefix="fabric-helm-")
    os.makedirs(out_dir, exist_ok=True)
    failures = []

    lint = helm_python.lint(CHART, strict=True, values=BASE)
    # Helm severities: 1 info, 2 warning, 3 error.
    problems = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2]
    if lint.get("errors") or problems:
        failures.append(f"helm lint: {lint}")

    # Without a superuser key the chart refuses to render, saying why.
    try:
        render({})
        failures.append("rendering without superuser.publicKey succeeded")
    except Exception as e:  # noqa: BLE001 - HelmRenderError
        if "superuser.publicKey" not in str(e):
            failures.append(f"rendering without a superuser key: unclear error {e}")
    try:
        render(deep_merge(BASE, {"voters": {"replicas": 4}}))
        failures.append("4 voters rendered")
    except Exception as e:  # noqa: BLE001
        if "must be odd" not in str(e):
            failures.append(f"4 voters: unclear error {e}")

    sets = {"default": BASE}
    for f in sorted(os.listdir(os.path.join(HERE, "values-tests"))):
        with open(os.path.join(HERE, "values-tests", f)) as fh:
            sets[f.removesuffix(".yaml")] = deep_merge(BASE, yaml.safe_load(fh))
    for label, values in sets.items():
        try:
            text = render(values)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{label}: render failed: {e}")
            continue
        path = os.path.join(out_dir, f"{label}.yaml")
        with open(path, "w") as fh:
            fh.write(text)
        docs = [d for d in yaml.safe_load_all(text) if d]
        kinds = sorted(d["kind"] for d in docs)
        plain = [d for d in docs if d["kind"] not in CRDS]
        plain_path = os.path.join(out_dir, f"{label}.k8s.yaml")
        with open(plain_path, "w") as fh:
            yaml.safe_dump_all(plain, fh, sort_keys=False)
        bin_dir = os.path.dirname(sys.executable)
        v = subprocess.run([os.path.join(bin_dir, "kubernetes-validate"), "--strict", "-k", "1.32.0", plain_path],
                           capture_output=True, text=True)
        if v.returncode != 0 or "ERROR" in v.stdout:
            failures.append(f"{label}: kubernetes-validate: {v.stdout}{v.stderr}")
        y = subprocess.run([os.path.join(bin_dir, "yamllint"), "-d", "{extends: relaxed, rules: {line-length: disable}}",
                            path], capture_output=True, text=True)
        if y.returncode != 0:
            failures.append(f"{label}: yamllint: {y.stdout}{y.stderr}")
        for d in docs:
            if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"):
                # The dashboard survives templating: the ConfigMap holds the file's JSON.
                with open(os.path.join(CHART, "dashboards", "fabric-master.json")) as fh:
                    if json.loads(d["data"]["fabric-master.json"]) != json.load(fh):
                        failures.append(f"{label}: the dashboard ConfigMap differs from dashboards/fabric-master.json")
        print(f"{label}: {len(docs)} objects ({', '.join(kinds)})")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"chart checks passed; renderings in {out_dir}")


if __name__ == "__main__":
    main()
