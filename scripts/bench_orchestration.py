#!/usr/bin/env python3
"""Orchestration benchmark (issue 15): one fabric-master, two real `crossbar edge start` nodes
(PyPI Crossbar.io, scripts/setup-crossbar.sh), a web cluster, a router cluster with a worker
group of scale 2 over both nodes, and an application realm behind the web cluster, all made
through the management API exactly as tests/python/test_orchestration.py does.

Measured:
  1. start_arealm -> RUNNING (get_arealm polled every 50 ms), over --rounds rounds. The first
     round starts the web cluster (its proxy worker) and the router cluster too, so it is
     reported apart from the later rounds; between rounds stop_arealm -> STOPPED is timed.
     After each RUNNING: the time until a first application client is welcomed through the
     web cluster's proxy port.
  2. restart recovery: kill -9 of edge node2 (its whole process group), the time to DEGRADED,
     then `crossbar edge start` again: edge process start -> RUNNING, the node's reconnect
     (online in get_node) -> RUNNING.
  3. RPC through the proxy into the application realm: a callee and a caller on different
     router workers (the call crosses the router link) and on the same worker, --calls calls
     with --inflight in flight: calls/s, p50/p99. The clients are autobahn-python (asyncio,
     CBOR), one process: above a few thousand calls/s they are the bottleneck.
  4. --reference: the same start_arealm sequence against the Crossbar.io reference master of
     ../shared/tools/crossbar-reference (run.sh with KEEP_RUNNING=1; started here when nothing
     listens on its port, and stopped again at the end), with one edge node and so scale 1,
     bounded by --reference-timeout.

Every wait is bounded; every process started here is stopped at the end (also on an error or
Ctrl-C).

Usage: ~/.cache/fabric-master-venv/bin/python scripts/bench_orchestration.py [--rounds 3]
       [--calls 2000] [--inflight 50] [--restarts 1] [--reference] [--bin PATH]
The binary: --bin, else $FABRIC_MASTER_BIN, else $CARGO_TARGET_DIR (default
~/.cache/fabric-master-target)/release/fabric-master, else .../debug/fabric-master.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/fabric-master-target"))
REF_DIR = ROOT.parent / "shared" / "tools" / "crossbar-reference"

NODE = "crossbarfabriccenter.mrealm."
AREALM = NODE + "arealm."
RCLUSTER = NODE + "routercluster."
WCLUSTER = NODE + "webcluster."
STATUS_BY_CODE = {0: "NONE", 1: "STOPPED", 2: "STARTING", 3: "RUNNING", 4: "PAUSED", 5: "STOPPING",
                  6: "ERROR", 7: "DEGRADED"}
POLL = 0.05


def default_bin() -> str:
    if os.environ.get("FABRIC_MASTER_BIN"):
        return os.environ["FABRIC_MASTER_BIN"]
    release = TARGET / "release" / "fabric-master"
    return str(release if release.exists() else TARGET / "debug" / "fabric-master")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=default_bin(), help="fabric-master binary (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="start/stop rounds of the application realm")
    ap.add_argument("--restarts", type=int, default=1, help="kill -9 / restart rounds of an edge node")
    ap.add_argument("--calls", type=int, default=2000, help="RPC calls per throughput run")
    ap.add_argument("--inflight", type=int, default=50, help="calls in flight")
    ap.add_argument("--timeout", type=float, default=120, help="bound of each wait for a status (s)")
    ap.add_argument("--reference", action="store_true", help="also run the start sequence on the reference master")
    ap.add_argument("--reference-timeout", type=float, default=120, help="bound of the reference's wait for RUNNING (s)")
    ap.add_argument("--reference-stop-timeout", type=float, default=15,
                    help="bound of the reference's wait for STOPPED after stop_arealm (s)")
    ap.add_argument("--reference-url", default="ws://127.0.0.1:9000/ws")
    ap.add_argument("--reference-base", default="/tmp/crossbar-ref", help="BASE of run.sh (its keys are under run/)")
    ap.add_argument("--reference-setup-timeout", type=float, default=900,
                    help="bound of run.sh when the reference has to be started here (s)")
    ap.add_argument("--reference-only", action="store_true", help="skip the fabric-master part (with --reference)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    return ap.parse_args()


ARGS = parse_args()
# conftest reads the binary from the environment when it is imported.
os.environ["FABRIC_MASTER_BIN"] = ARGS.bin
sys.path.insert(0, str(ROOT / "tests" / "python"))

import conftest  # noqa: E402
from autobahn.wamp.exception import ApplicationError  # noqa: E402
from conftest import KeyPair, Master, free_port, join, run_keygen  # noqa: E402
from crossbar_pypi import CROSSBAR  # noqa: E402
from edges import Aborted, Edge, app_client, leave  # noqa: E402

conftest.BIN = ARGS.bin
# autobahn warns about every ABORT (a client retried while a worker starts): keep the output short.
import txaio  # noqa: E402

txaio.set_global_log_level("error")


class BenchError(Exception):
    pass


def status_name(v) -> str:
    return STATUS_BY_CODE.get(v, str(v)) if isinstance(v, int) else str(v)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def pct(values, p):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))]


async def call(s, uri, *args, timeout=30.0):
    return await asyncio.wait_for(s.call(uri, *args), timeout)


async def poll_status(s, get_uri, oid, want: str, timeout: float, t0: float | None = None):
    """Polls `get_uri(oid)` every 50 ms until its status is `want`. Returns (seconds since t0,
    the statuses seen in order); raises BenchError with the last status at the deadline."""
    t0 = time.perf_counter() if t0 is None else t0
    deadline = time.perf_counter() + timeout
    seen: list[str] = []
    last = None
    while True:
        got = await call(s, get_uri, oid)
        st = status_name(got.get("status"))
        now = time.perf_counter()
        if not seen or seen[-1] != st:
            seen.append(st)
        if st == want:
            return now - t0, seen
        last = got
        if now > deadline:
            reason = (last.get("orchestration") or {}).get("reason") if isinstance(last, dict) else None
            raise BenchError(f"{get_uri}({oid}) not {want} after {timeout:.0f} s: stuck in {st} "
                             f"(seen {' -> '.join(seen)}; reason {reason!r})")
        await asyncio.sleep(POLL)


async def first_client(port: int, realm: str, timeout: float = 30.0, path: str = "ws") -> float:
    """Seconds until an anonymous client is welcomed through the proxy (a worker just started
    may not listen yet: the proxy then aborts the client, which tries again)."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    last = None
    while time.perf_counter() < deadline:
        try:
            c = await app_client(port, realm, ["anonymous"], path=path, timeout=10)
            took = time.perf_counter() - t0
            await leave(c)
            return took
        except (Aborted, OSError, asyncio.TimeoutError) as e:
            last = e
            await asyncio.sleep(POLL)
    raise BenchError(f"no client welcomed through port {port} within {timeout:.0f} s: {last!r}")


# --------------------------------------------------------------------------------------
# fabric-master side
# --------------------------------------------------------------------------------------


class Ours:
    def __init__(self, work: Path):
        self.work = work
        self.master: Master | None = None
        self.edges: list[Edge] = []
        self.su: KeyPair | None = None
        self.s = None  # owner session on the management realm
        self.ids: dict = {}

    def start_processes(self):
        r = run_keygen(self.work, name="superuser", user_id="superuser@example.com")
        if r.returncode != 0:
            raise BenchError(f"fabric-master keygen failed: {r.stdout}{r.stderr}")
        self.su = KeyPair(self.work / "superuser.priv", self.work / "superuser.pub")
        (self.work / "master").mkdir()
        self.master = Master(self.work / "master", self.su.pub_path)
        try:
            self.master.start(ready_timeout=30)
        except BaseException as e:  # pytest.fail raises an OutcomeException (a BaseException)
            if isinstance(e, KeyboardInterrupt):
                raise
            raise BenchError(f"fabric-master did not start: {e}") from None
        print(f"fabric-master {ARGS.bin} on {self.master.url} (pid {self.master.proc.pid})", flush=True)

    async def setup(self):
        su = await join(self.master, key=self.su)
        mrealm = "bench"
        await call(su, NODE + "create_mrealm", {"name": mrealm})
        self.edges = [Edge(self.work / "edges", f"node{i}", self.master.url) for i in (1, 2)]
        nodes = {}
        for e in self.edges:
            n = await call(su, NODE + "pair_node", e.pubkey, mrealm, e.name, {"cluster_ip": "127.0.0.1"})
            nodes[e.name] = n["oid"]
        await su.close()
        t0 = time.perf_counter()
        for e in self.edges:
            e.start()
        for e in self.edges:
            await asyncio.to_thread(e.wait_connected, 0, ARGS.timeout)
        self.s = await join(self.master, key=self.su, realm=mrealm)
        for name, oid in nodes.items():
            await poll_status_node(self.s, oid, "online", 60)
        print(f"2 edge nodes paired (cluster_ip 127.0.0.1) and online after {time.perf_counter() - t0:.1f} s",
              flush=True)
        s = self.s
        port = free_port()
        wc = await call(s, WCLUSTER + "create_webcluster", {"name": "wc1", "tcp_port": port, "tcp_interface": "127.0.0.1"})
        await call(s, WCLUSTER + "add_webcluster_node", wc["oid"], nodes["node1"], {"parallel": 1})
        await call(s, WCLUSTER + "add_webcluster_service", wc["oid"], "ws", {
            "type": "websocket", "serializers": ["cbor", "json"],
            "auth": {"anonymous": {"type": "static", "role": "app"}}})
        rc = await call(s, RCLUSTER + "create_routercluster", {"name": "rc1"})
        for oid in nodes.values():
            await call(s, RCLUSTER + "add_routercluster_node", rc["oid"], oid, {"softlimit": 4, "hardlimit": 8})
        wg = await call(s, RCLUSTER + "add_routercluster_workergroup", rc["oid"], {"name": "g1", "scale": 2})
        st = await call(s, RCLUSTER + "stat_routercluster_workergroup", rc["oid"], wg["oid"])
        placed = {p["worker_name"]: p["node_oid"] for p in st["placements"]}
        by_oid = {v: k for k, v in nodes.items()}
        print("placements: " + ", ".join(f"{w} on {by_oid.get(n, n)}" for w, n in sorted(placed.items())), flush=True)
        if set(placed.values()) != set(nodes.values()):
            raise BenchError(f"the worker group is not spread over both nodes: {st}")
        role = await call(s, AREALM + "create_role", {"name": "app"})
        await call(s, AREALM + "add_role_permission", role["oid"], "", {
            "match": "prefix", "allow_call": True, "allow_register": True, "allow_publish": True,
            "allow_subscribe": True})
        a = await call(s, AREALM + "create_arealm", {"name": "app1"})
        await call(s, AREALM + "add_arealm_role", a["oid"], role["oid"])
        self.ids = dict(nodes=nodes, wc=wc["oid"], rc=rc["oid"], wg=wg["oid"], arealm=a["oid"], port=port,
                        realm="app1")

    async def start_rounds(self, rounds: int) -> dict:
        s, ids = self.s, self.ids
        out = {"first": None, "later": [], "stop": [], "client_first": None, "client_later": []}
        for r in range(rounds):
            t0 = time.perf_counter()
            if r == 0:
                await call(s, WCLUSTER + "start_webcluster", ids["wc"])
                await call(s, RCLUSTER + "start_routercluster", ids["rc"])
            await call(s, AREALM + "start_arealm", ids["arealm"], ids["wg"], ids["wc"])
            took, seen = await poll_status(s, AREALM + "get_arealm", ids["arealm"], "RUNNING", ARGS.timeout, t0)
            client = await first_client(ids["port"], ids["realm"])
            label = "first (with web + router cluster start)" if r == 0 else f"round {r + 1}"
            print(f"  start {label}: RUNNING after {ms(took)} ({' -> '.join(seen)}); "
                  f"first client welcomed {ms(client)} after RUNNING", flush=True)
            if r == 0:
                out["first"], out["client_first"] = took, client
                await poll_status(s, WCLUSTER + "get_webcluster", ids["wc"], "RUNNING", ARGS.timeout)
                await poll_status(s, RCLUSTER + "get_routercluster", ids["rc"], "RUNNING", ARGS.timeout)
            else:
                out["later"].append(took)
                out["client_later"].append(client)
            if r < rounds - 1:
                t0 = time.perf_counter()
                await call(s, AREALM + "stop_arealm", ids["arealm"])
                took, seen = await poll_status(s, AREALM + "get_arealm", ids["arealm"], "STOPPED", ARGS.timeout, t0)
                print(f"  stop: STOPPED after {ms(took)} ({' -> '.join(seen)})", flush=True)
                out["stop"].append(took)
        return out

    async def restart(self) -> dict:
        """kill -9 of node2, DEGRADED, restart: edge start -> online -> RUNNING."""
        s, ids = self.s, self.ids
        edge = self.edges[1]
        oid = ids["nodes"][edge.name]
        t_kill = time.perf_counter()
        edge.kill()
        degraded, seen = await poll_status(s, AREALM + "get_arealm", ids["arealm"], "DEGRADED", 60, t_kill)
        mark = edge.log_size()
        t_start = time.perf_counter()
        edge.start()
        connected = online = running = None
        deadline = t_start + ARGS.timeout
        while running is None or online is None:
            now = time.perf_counter()
            if now > deadline:
                raise BenchError(f"after the restart of {edge.name}: connected={connected} online={online} "
                                 f"running={running} after {ARGS.timeout:.0f} s")
            if edge.proc.poll() is not None:
                raise BenchError(f"edge {edge.name} exited after its restart:\n{edge.log()[-3000:]}")
            if connected is None and "Connected to Crossbar.io Master" in edge.log()[mark:]:
                connected = now - t_start
            if online is None:
                n = await call(s, NODE + "get_node", oid)
                if n["status"] == "online":
                    online = time.perf_counter() - t_start
            if running is None:
                a = await call(s, AREALM + "get_arealm", ids["arealm"])
                if status_name(a["status"]) == "RUNNING":
                    running = time.perf_counter() - t_start
            await asyncio.sleep(POLL)
        client = await first_client(ids["port"], ids["realm"])
        out = dict(degraded=degraded, connected=connected, online=online, running=running,
                   online_to_running=running - online, client=client)
        print(f"  kill -9 {edge.name} -> DEGRADED {ms(degraded)}; edge start -> connected (log) "
              f"{ms(connected) if connected is not None else '?'}, -> online {ms(online)}, -> RUNNING {ms(running)} "
              f"(online -> RUNNING {ms(running - online)}); first client {ms(client)} after RUNNING", flush=True)
        return out

    async def rpc(self) -> dict:
        port, realm = self.ids["port"], self.ids["realm"]
        # Clients until two sit on different workers and two on the same one (the proxy picks a
        # backend connection per client); bounded.
        clients = []
        by_worker: dict[str, list] = {}
        deadline = time.perf_counter() + 60
        while True:
            if len(by_worker) >= 2 and any(len(v) >= 2 for v in by_worker.values()):
                break
            if time.perf_counter() > deadline or len(clients) >= 16:
                raise BenchError(f"clients through the proxy did not spread: {({k: len(v) for k, v in by_worker.items()})}")
            try:
                c = await app_client(port, realm, ["anonymous"])
            except Aborted:
                await asyncio.sleep(0.2)
                continue
            clients.append(c)
            by_worker.setdefault(c.worker, []).append(c)
        try:
            same_w = next(w for w, v in by_worker.items() if len(v) >= 2)
            other_w = next(w for w in by_worker if w != same_w)
            res = {}
            # across: callee on one worker, caller on the other (the call crosses the router link)
            res["across"] = await rpc_run(by_worker[same_w][0], by_worker[other_w][0], "com.example.bench.across",
                                          f"callee on {same_w}, caller on {other_w}")
            # local: callee and caller on the same worker
            res["local"] = await rpc_run(by_worker[same_w][0], by_worker[same_w][1], "com.example.bench.local",
                                         f"callee and caller on {same_w}")
            return res
        finally:
            for c in clients:
                await leave(c)

    def stop(self):
        for e in self.edges:
            try:
                e.stop(timeout=20)
            except Exception as ex:  # noqa: BLE001
                print(f"stopping edge {e.name}: {ex!r}", flush=True)
        if self.master is not None:
            self.master.stop()


async def poll_status_node(s, oid, want, timeout):
    deadline = time.perf_counter() + timeout
    while True:
        n = await call(s, NODE + "get_node", oid)
        if n["status"] == want:
            return
        if time.perf_counter() > deadline:
            raise BenchError(f"node {oid} not {want} after {timeout} s: {n['status']}")
        await asyncio.sleep(0.2)


async def rpc_run(callee, caller, uri, what) -> dict:
    await asyncio.wait_for(callee.register(lambda x: x, uri), 10)
    # The registration reaches the other worker over the router link: until then no_such_procedure.
    deadline = time.perf_counter() + 30
    while True:
        try:
            await asyncio.wait_for(caller.call(uri, 0), 10)
            break
        except ApplicationError as e:
            if e.error != "wamp.error.no_such_procedure" or time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.1)
    for i in range(min(100, ARGS.calls)):  # warm-up
        await asyncio.wait_for(caller.call(uri, i), 10)
    lat: list[float] = []
    sem = asyncio.Semaphore(ARGS.inflight)

    async def one(i):
        async with sem:
            t = time.perf_counter()
            got = await caller.call(uri, i)
            lat.append(time.perf_counter() - t)
            if got != i:
                raise BenchError(f"echo {i} came back as {got!r}")

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(ARGS.calls))), max(120.0, ARGS.calls / 10))
    elapsed = time.perf_counter() - t0
    out = {"what": what, "rate": ARGS.calls / elapsed, "p50": pct(lat, 50), "p99": pct(lat, 99),
           "mean": statistics.mean(lat)}
    print(f"  RPC {what}: {out['rate']:,.0f} calls/s, p50 {out['p50'] * 1000:.2f} ms, "
          f"p99 {out['p99'] * 1000:.2f} ms ({ARGS.calls} calls, {ARGS.inflight} in flight)", flush=True)
    return out


# --------------------------------------------------------------------------------------
# reference side
# --------------------------------------------------------------------------------------


class RefMaster:
    """What conftest.join needs of a master."""

    def __init__(self, url):
        self.url = url
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.ssl = None


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Reference:
    def __init__(self):
        self.base = Path(ARGS.reference_base)
        self.url = ARGS.reference_url
        self.started_here = False

    def ensure_running(self):
        port = RefMaster(self.url).port
        if listening(port):
            print(f"reference master already listening on {self.url} (left running afterwards)", flush=True)
            return
        print(f"starting the reference with {REF_DIR / 'run.sh'} (KEEP_RUNNING=1; stopped again at the end) ..",
              flush=True)
        self.started_here = True
        env = {**os.environ, "KEEP_RUNNING": "1", "BENCH_WARN": "0", "N": "200", "QUIET_WAIT": "10",
               "BENCH_TRIES": "1", "BASE": str(self.base)}
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        log = self.base.parent / "crossbar-ref-run.log"
        self.base.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as f:
            p = subprocess.Popen(["bash", str(REF_DIR / "run.sh")], stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, cwd=str(REF_DIR), start_new_session=True)
            try:
                rc = p.wait(timeout=ARGS.reference_setup_timeout)
            except BaseException as e:  # the timeout, or Ctrl-C: run.sh runs in its own session
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
                if isinstance(e, subprocess.TimeoutExpired):
                    raise BenchError(f"run.sh did not finish within {ARGS.reference_setup_timeout:.0f} s (log {log})")
                raise
        if rc != 0 or not listening(port):
            raise BenchError(f"run.sh failed (exit {rc}, log {log})")

    def key(self) -> tuple[KeyPair, str]:
        """alice's key (crossbar shell init; she owns mrealm1 and paired node1) and her authid."""
        priv = self.base / "run" / "alice" / "default.priv"
        if not priv.exists():
            raise BenchError(f"{priv} is missing: run the reference with run.sh first")
        authid = None
        for line in priv.read_text().splitlines():
            if line.startswith("user-id:"):
                authid = line.split(":", 1)[1].strip()
        return KeyPair(priv, priv.with_name("default.pub")), authid

    async def measure(self) -> dict:
        kp, authid = self.key()
        m = RefMaster(self.url)
        s = await join(m, key=kp, realm="mrealm1", authid=authid, timeout=10)
        try:
            node = await call(s, NODE + "get_node_by_authid", "node1")
            n = await call(s, NODE + "get_node", node["oid"])
            print(f"reference node1 {node['oid']}: {n.get('status')}, cluster_ip {n.get('cluster_ip')!r}", flush=True)
            tag = uuid.uuid4().hex[:6]
            port = free_port()
            wc = await call(s, WCLUSTER + "create_webcluster", {"name": f"wc{tag}", "tcp_port": port,
                                                                "tcp_interface": "127.0.0.1"})
            await call(s, WCLUSTER + "add_webcluster_node", wc["oid"], node["oid"], {"parallel": 1})
            # A path of its own: the reference applies the services of every web cluster to every
            # proxy worker (bug 6), so a service of an earlier run at the same path would win.
            await call(s, WCLUSTER + "add_webcluster_service", wc["oid"], f"ws{tag}", {
                "type": "websocket", "serializers": ["cbor", "json"],
                "auth": {"anonymous": {"type": "static", "role": f"app{tag}"}}})
            rc = await call(s, RCLUSTER + "create_routercluster", {"name": f"rc{tag}"})
            await call(s, RCLUSTER + "add_routercluster_node", rc["oid"], node["oid"], {"softlimit": 4, "hardlimit": 8})
            # The reference's RouterWorkerGroup.parse needs the cluster oid in the dict as well.
            wg = await call(s, RCLUSTER + "add_routercluster_workergroup", rc["oid"],
                            {"name": f"g{tag}", "scale": 1, "cluster_oid": rc["oid"]})
            role = await call(s, AREALM + "create_role", {"name": f"app{tag}"})
            await call(s, AREALM + "add_role_permission", role["oid"], "", {
                "match": "prefix", "allow_call": True, "allow_register": True, "allow_publish": True,
                "allow_subscribe": True})
            a = await call(s, AREALM + "create_arealm", {"name": f"app{tag}"})
            await call(s, AREALM + "add_arealm_role", a["oid"], role["oid"])
            log = self.base / "run" / "master.log"
            log_mark = log.stat().st_size if log.exists() else 0
            # The reference raises TypeError when the arealm starts before its web cluster (bug 9):
            # the clusters first, then the arealm, as on our side.
            t0 = time.perf_counter()
            await call(s, WCLUSTER + "start_webcluster", wc["oid"])
            await call(s, RCLUSTER + "start_routercluster", rc["oid"])
            await call(s, AREALM + "start_arealm", a["oid"], wg["oid"], wc["oid"])
            out = {"scale": 1, "timeout": ARGS.reference_timeout, "cluster_ip": n.get("cluster_ip")}
            try:
                took, seen = await poll_status(s, AREALM + "get_arealm", a["oid"], "RUNNING", ARGS.reference_timeout, t0)
                out["running"] = took
                out["seen"] = seen
                client = None
                try:
                    client = await first_client(port, f"app{tag}", timeout=30, path=f"ws{tag}")
                except BenchError as e:
                    out["client_error"] = str(e)
                out["client"] = client
                print(f"  reference start (with web + router cluster start, scale 1): RUNNING after {ms(took)} "
                      f"({' -> '.join(seen)}); first client "
                      f"{ms(client) + ' after RUNNING' if client is not None else 'not welcomed: ' + out['client_error']}",
                      flush=True)
            except BenchError:
                got = await call(s, AREALM + "get_arealm", a["oid"])
                out["running"] = None
                out["stuck"] = status_name(got.get("status"))
                wcs = await call(s, WCLUSTER + "get_webcluster", wc["oid"])
                rcs = await call(s, RCLUSTER + "get_routercluster", rc["oid"])
                out["wc_status"], out["rc_status"] = status_name(wcs.get("status")), status_name(rcs.get("status"))
                out["log"] = ref_log_problems(log, log_mark)
                print(f"  reference: not RUNNING after {ARGS.reference_timeout:.0f} s, stuck in {out['stuck']} "
                      f"(web cluster {out['wc_status']}, router cluster {out['rc_status']})", flush=True)
                for line in out["log"]:
                    print(f"    master log: {line}", flush=True)
            await self.teardown(s, out, a["oid"], wc["oid"], rc["oid"], node["oid"], [f"g{tag}_1"])
            return out
        finally:
            await s.close()

    async def teardown(self, s, out, arealm, wc, rc, node_oid, router_workers):
        """stop_arealm (timed, bounded: the reference never reaches STOPPED, bug 8), then the
        clusters, then the workers by hand (the reference's only working teardown), best effort."""
        t0 = time.perf_counter()
        try:
            await call(s, AREALM + "stop_arealm", arealm)
            took, _ = await poll_status(s, AREALM + "get_arealm", arealm, "STOPPED", ARGS.reference_stop_timeout, t0)
            out["stop"] = took
            print(f"  reference stop_arealm -> STOPPED after {ms(took)}", flush=True)
        except (BenchError, ApplicationError) as e:
            got = await call(s, AREALM + "get_arealm", arealm)
            out["stop"] = None
            out["stop_stuck"] = status_name(got.get("status"))
            print(f"  reference stop_arealm: not STOPPED after {ARGS.reference_stop_timeout:.0f} s, "
                  f"{out['stop_stuck']} ({str(e)[:120]})", flush=True)
        for uri, oid in ((WCLUSTER + "stop_webcluster", wc), (RCLUSTER + "stop_routercluster", rc)):
            try:
                await call(s, uri, oid)
            except ApplicationError:
                pass
        workers = [f"cpw-{wc[:8]}-0", *router_workers]
        for w in workers:
            try:
                await call(s, "crossbarfabriccenter.remote.node.stop_worker", node_oid, w, timeout=60)
            except (ApplicationError, asyncio.TimeoutError):
                pass
        print(f"  reference node1: stopped workers {', '.join(workers)} by hand (clean-up)", flush=True)

    def stop(self):
        if not self.started_here:
            return
        for name in ("edge1.pid", "master.pid"):
            f = self.base / "run" / name
            try:
                pid = int(f.read_text().strip())
            except (OSError, ValueError):
                continue
            # run.sh starts each with setsid: the controller leads its own process group.
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            print(f"stopped the reference's {name[:-4]} (process group {pid})", flush=True)


def ref_log_problems(log: Path, mark: int, limit: int = 6) -> list[str]:
    """The reference master log's error-ish lines since `mark` (ANSI stripped, shortened)."""
    from crossbar_pypi import ANSI

    try:
        with open(log, "rb") as f:
            f.seek(mark)
            text = ANSI.sub("", f.read().decode("utf-8", "replace"))
    except OSError:
        return []
    keys = ("Traceback", "Error", "error", "problems left", "failed", "Unhandled")
    lines = [l.strip() for l in text.splitlines() if any(k in l for k in keys)]
    seen, out = set(), []
    for l in lines:
        short = l[:240]
        if short not in seen:
            seen.add(short)
            out.append(short)
    return out[-limit:]


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def fmt_stats(values) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return ms(values[0])
    return f"{ms(statistics.median(values))} median ({', '.join(ms(v) for v in values)})"


def report(starts, restarts, rpc, ref, notes):
    print("\n== results (fabric-master " + ("debug" if "/debug/" in ARGS.bin else "release") + f" build {ARGS.bin})")
    rows = []
    if starts:
        rows.append(("start_arealm -> RUNNING, first round (web cluster proxy worker + router cluster started too)",
                     ms(starts["first"]) if starts["first"] is not None else "-"))
        rows.append(("start_arealm -> RUNNING, later rounds", fmt_stats(starts["later"])))
        rows.append(("stop_arealm -> STOPPED", fmt_stats(starts["stop"])))
        rows.append(("RUNNING -> first client welcomed through the proxy, first / later",
                     f"{ms(starts['client_first'])} / {fmt_stats(starts['client_later'])}"
                     if starts["client_first"] is not None else "-"))
    for r in restarts:
        rows.append(("kill -9 of an edge node -> DEGRADED", ms(r["degraded"])))
        rows.append(("edge process start -> online (node reconnected)", ms(r["online"])))
        rows.append(("edge process start -> RUNNING", ms(r["running"])))
        rows.append(("node online -> RUNNING", ms(r["online_to_running"])))
    if rpc:
        for k, label in (("across", "RPC across router workers (router link)"), ("local", "RPC on one router worker")):
            x = rpc[k]
            rows.append((f"{label}, {ARGS.calls} calls, {ARGS.inflight} in flight",
                         f"{x['rate']:,.0f} calls/s, p50 {x['p50'] * 1000:.2f} ms, p99 {x['p99'] * 1000:.2f} ms"))
        rows.append(("across / local calls/s", f"{rpc['across']['rate'] / rpc['local']['rate']:.2f}"))
    width = max((len(r[0]) for r in rows), default=20)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    if ref is not None:
        print("\n== reference (Crossbar.io master, one edge node: worker group scale 1, so no router links)")
        if ref.get("error"):
            print(f"  not measured: {ref['error']}")
        elif ref.get("running") is not None:
            print(f"  start_arealm -> RUNNING (web cluster + router cluster started too): {ms(ref['running'])}"
                  f" ({' -> '.join(ref['seen'])})")
            if starts and starts["first"] is not None:
                print(f"  ratio reference / fabric-master, first start: {ref['running'] / starts['first']:.1f}x "
                      f"(reference scale 1 on 1 node, fabric-master scale 2 on 2 nodes)")
            if ref.get("client") is not None:
                print(f"  RUNNING -> first client welcomed: {ms(ref['client'])}")
            else:
                print(f"  no client welcomed: {ref.get('client_error')}")
        if "cluster_ip" in ref and ref["cluster_ip"] is None:
            print("  node1 has no cluster_ip (the reference's pair_node never sets it and its modify_node is not "
                  "implemented, bug 5): its proxy connections point at host None")
        if ref.get("stop") is not None:
            print(f"  stop_arealm -> STOPPED: {ms(ref['stop'])}")
        elif "stop_stuck" in ref:
            print(f"  stop_arealm -> STOPPED: not reached in {ARGS.reference_stop_timeout:.0f} s ({ref['stop_stuck']})")
        else:
            print(f"  not RUNNING after {ref['timeout']:.0f} s: stuck in {ref['stuck']} (web cluster "
                  f"{ref['wc_status']}, router cluster {ref['rc_status']}); no ratio")
    for n in notes:
        print(f"  note: {n}")


async def run_ours(ours: Ours, results: dict, notes: list):
    await ours.setup()
    print(f"\n== 1. start/stop of the application realm ({ARGS.rounds} rounds)", flush=True)
    results["starts"] = await ours.start_rounds(ARGS.rounds)
    print(f"\n== 2. edge node kill -9 and restart ({ARGS.restarts}x)", flush=True)
    results["restarts"] = []
    for _ in range(ARGS.restarts):
        results["restarts"].append(await ours.restart())
    print("\n== 3. RPC through the web cluster proxy", flush=True)
    results["rpc"] = await ours.rpc()


async def run_ref(results: dict, ref: Reference):
    print("\n== 4. reference master", flush=True)
    results["ref"] = await ref.measure()


def main():
    if not os.access(ARGS.bin, os.X_OK):
        raise SystemExit(f"fabric-master binary {ARGS.bin} not found (--bin or FABRIC_MASTER_BIN)")
    if not CROSSBAR.exists():
        raise SystemExit(f"{CROSSBAR} is missing: run scripts/setup-crossbar.sh")
    work = Path(tempfile.mkdtemp(prefix="bench-orch-"))
    print(f"work dir {work}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}", flush=True)
    ours = Ours(work)
    ref = Reference() if ARGS.reference else None
    results: dict = {}
    notes: list[str] = []
    failed = False
    try:
        if not ARGS.reference_only:
            ours.start_processes()
            try:
                asyncio.run(asyncio.wait_for(run_ours(ours, results, notes), 1800))
            except (BenchError, ApplicationError, asyncio.TimeoutError, AssertionError) as e:
                failed = True
                traceback.print_exc()
                notes.append(f"fabric-master part stopped early: {e!r}")
            ours.stop()
        if ref is not None:
            try:
                ref.ensure_running()
                asyncio.run(asyncio.wait_for(run_ref(results, ref), ARGS.reference_timeout + 300))
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                traceback.print_exc()
                results["ref"] = {"error": repr(e)}
        notes.append(f"load average at the end {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores; master, edge "
                     f"nodes and clients share them)")
        report(results.get("starts"), results.get("restarts", []), results.get("rpc"), results.get("ref"), notes)
    except KeyboardInterrupt:
        failed = True
        print("\ninterrupted", flush=True)
    except BenchError as e:
        failed = True
        print(f"\nfailed: {e}", flush=True)
    finally:
        ours.stop()
        if ref is not None:
            ref.stop()
        if ARGS.keep or failed:
            print(f"logs kept in {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
