#!/usr/bin/env python3
"""Management API benchmark: `list_mrealms` and `remote.node.get_status` on fabric-master and on
the reference Crossbar.io master, with the same load generator (`fabric-master bench`) in the
same run, and the ratios.

fabric-master (release build) is started here with one management realm and two paired nodes:
a simulated node (`bench --mode node`, the master's own capacity) and, when the crossbar venv
exists (scripts/setup-crossbar.sh), a real `crossbar edge start` node (the same kind of node as
the reference's). The reference must already run (../shared/tools/crossbar-reference/run.sh with
KEEP_RUNNING=1); point REF_URL / REF_KEY / REF_REALM / REF_NODE_OID at it, or leave REF_URL unset
to measure fabric-master only.

Usage: python3 scripts/bench_mgmt.py   (env: COUNT, INFLIGHT, CARGO_TARGET_DIR, FABRIC_VENV)
"""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/fabric-master-target"))
BIN = TARGET / "release" / "fabric-master"
CB_VENV = Path(os.environ.get("FABRIC_CROSSBAR_VENV", Path.home() / ".cache/fabric-master-crossbar-venv"))
COUNT = int(os.environ.get("COUNT", "100000"))
REF_COUNT = int(os.environ.get("REF_COUNT", "5000"))
INFLIGHT = int(os.environ.get("INFLIGHT", "100"))

sys.path.insert(0, str(ROOT / "tests" / "python"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class M:
    """What the test suite's join() needs of a master."""

    def __init__(self, url):
        self.url = url
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])


def bench(*args) -> dict:
    out = subprocess.run([str(BIN), "bench", *args], capture_output=True, text=True, timeout=600)
    line = [l for l in out.stdout.splitlines() if l.startswith("JSON ")]
    if out.returncode != 0 or not line:
        raise SystemExit(f"bench {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    print([l for l in out.stdout.splitlines() if not l.startswith("JSON ")][-1], flush=True)
    return json.loads(line[-1][5:])


async def setup(url: str, su_priv: Path, work: Path) -> dict:
    from autobahn.asyncio.wamp import ApplicationRunner  # noqa: F401  (import check)
    from conftest import KeyPair  # the test suite's key loader
    import conftest


    su = KeyPair(su_priv, su_priv.with_suffix(".pub"))
    s = await conftest.join(M(url), key=su, authid="superuser", authextra={"pubkey": su.pubkey_hex},
                            realm=conftest.FABRIC_REALM)
    await s.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": "bench"})
    for i in range(20):  # a realistic catalogue: list_mrealms returns more than one oid
        await s.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": f"bench-extra-{i}"})
    subprocess.run([str(BIN), "keygen", "--out", str(work), "--name", "node", "--user-id", "node"], check=True,
                   capture_output=True)
    node_pub = KeyPair(work / "node.priv", work / "node.pub").pubkey_hex
    sim = await s.call("crossbarfabriccenter.mrealm.pair_node", node_pub, "bench", "sim1")
    out = {"sim_oid": sim["oid"]}
    if (CB_VENV / "bin" / "crossbar").exists():
        edge_dir = work / "edge1" / ".crossbar"
        edge_dir.parent.mkdir(parents=True)
        subprocess.run([str(CB_VENV / "bin" / "crossbar"), "edge", "keys", "--cbdir", str(edge_dir)], check=True,
                       capture_output=True)
        pub = [l.split(":", 1)[1].strip() for l in (edge_dir / "key.pub").read_text().splitlines()
               if l.startswith("public-key-ed25519:")][0]
        edge = await s.call("crossbarfabriccenter.mrealm.pair_node", pub, "bench", "edge1")
        out["edge_oid"] = edge["oid"]
        out["edge_dir"] = edge_dir
    s.leave()
    return out


async def wait_online(url, su_priv, oid, timeout=90):
    import conftest
    from conftest import KeyPair

    su = KeyPair(su_priv, su_priv.with_suffix(".pub"))
    s = await conftest.join(M(url), key=su, authid="superuser", authextra={"pubkey": su.pubkey_hex}, realm="bench")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if oid in await s.call("crossbarfabriccenter.mrealm.get_nodes", "online"):
                # Registered get_status too (the edge registers after joining).
                try:
                    await s.call("crossbarfabriccenter.remote.node.get_status", oid)
                    return
                except Exception:
                    pass
            await asyncio.sleep(0.2)
        raise SystemExit(f"node {oid} did not come online")
    finally:
        s.leave()


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp(prefix="bench-mgmt-"))
    procs = []
    try:
        subprocess.run([str(BIN), "keygen", "--out", str(work), "--name", "su", "--user-id", "superuser"], check=True,
                       capture_output=True)
        port = free_port()
        url = f"ws://127.0.0.1:{port}/ws"
        log = open(work / "master.log", "wb")
        master = subprocess.Popen([str(BIN), "start", "--listen", f"127.0.0.1:{port}", "--peer-listen", "127.0.0.1:0",
                                   "--data-dir", str(work / "data"), "--superuser", str(work / "su.pub")],
                                  stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
        procs.append(master)
        for _ in range(200):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        info = asyncio.run(setup(url, work / "su.priv", work))
        sim = subprocess.Popen([str(BIN), "bench", "--mode", "node", "--url", url, "--key", str(work / "node.priv"),
                                "--hold-seconds", "3600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(sim)
        asyncio.run(wait_online(url, work / "su.priv", info["sim_oid"]))
        if "edge_dir" in info:
            edge = subprocess.Popen([str(CB_VENV / "bin" / "crossbar"), "edge", "start", "--cbdir", str(info["edge_dir"]),
                                     "--loglevel", "warn"], stdout=open(work / "edge.log", "wb"),
                                    stderr=subprocess.STDOUT, env={**os.environ, "CROSSBAR_FABRIC_URL": url},
                                    start_new_session=True)
            procs.append(edge)
            asyncio.run(wait_online(url, work / "su.priv", info["edge_oid"]))

        key = ["--key", str(work / "su.priv"), "--authid", "superuser"]
        results = {}
        common = ["--inflight", str(INFLIGHT), "--serializer", os.environ.get("SERIALIZER", "cbor")]
        results["ours_list"] = bench("--url", url, *key, "--mode", "call", "--procedure",
                                     "crossbarfabriccenter.mrealm.list_mrealms", "--count", str(COUNT), *common,
                                     "--label", "fabric-master list_mrealms")
        results["ours_sim"] = bench("--url", url, *key, "--realm", "bench", "--mode", "call", "--procedure",
                                    "crossbarfabriccenter.remote.node.get_status", "--args",
                                    json.dumps([info["sim_oid"]]), "--count", str(COUNT), *common,
                                    "--label", "fabric-master remote.node.get_status (simulated node)")
        if "edge_oid" in info:
            results["ours_edge"] = bench("--url", url, *key, "--realm", "bench", "--mode", "call", "--procedure",
                                         "crossbarfabriccenter.remote.node.get_status", "--args",
                                         json.dumps([info["edge_oid"]]), "--count", str(REF_COUNT), *common,
                                         "--label", "fabric-master remote.node.get_status (real edge node)")
        ref = os.environ.get("REF_URL")
        if ref:
            rkey = ["--key", os.environ["REF_KEY"]]
            results["ref_list"] = bench("--url", ref, *rkey, "--mode", "call", "--procedure",
                                        "crossbarfabriccenter.mrealm.list_mrealms", "--count", str(REF_COUNT), *common,
                                        "--label", "reference list_mrealms")
            results["ref_remote"] = bench("--url", ref, *rkey, "--realm", os.environ.get("REF_REALM", "mrealm1"),
                                          "--mode", "call", "--procedure", "crossbarfabriccenter.remote.node.get_status",
                                          "--args", json.dumps([os.environ["REF_NODE_OID"]]), "--count",
                                          str(REF_COUNT // 2), *common,
                                          "--label", "reference remote.node.get_status (real edge node)")
            print("\nratios (fabric-master / reference; p50: reference / fabric-master)")
            for ours, theirs, what in (("ours_list", "ref_list", "list_mrealms"),
                                       ("ours_sim", "ref_remote", "remote.node.get_status, simulated node"),
                                       ("ours_edge", "ref_remote", "remote.node.get_status, real edge node")):
                if ours in results:
                    o, t = results[ours], results[theirs]
                    print(f"  {what}: {o['rate'] / t['rate']:.1f}x calls/s, p50 {t['p50_us'] / max(o['p50_us'], 1):.1f}x"
                          f" lower ({o['rate']:.0f} vs {t['rate']:.0f} calls/s, p50 {o['p50_us']} vs {t['p50_us']} us)")
        rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{master.pid}/status").read_text()).group(1))
        print(f"fabric-master RSS after the run: {rss // 1024} MiB")
    finally:
        for p in reversed(procs):
            try:
                if p.poll() is None:
                    if p.args[1:3] == ["edge", "start"]:
                        os.killpg(p.pid, signal.SIGTERM)
                    else:
                        p.terminate()
                    p.wait(timeout=20)
            except Exception:
                p.kill()


if __name__ == "__main__":
    main()
