"""Interop with the real, unmodified Crossbar.io from PyPI: `crossbar shell` as the superuser
and as a new user through the activation-code flow, a real `crossbar edge start` node paired
with a management realm, managed through remote.* calls, going offline and being unpaired.

The tests of this module build on each other (one master, one edge node) and run in order.
Crossbar lives in its own venv (scripts/setup-crossbar.sh); FABRIC_CROSSBAR_VENV overrides it."""

import asyncio
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from conftest import KeyPair, Master, aio, free_port, join, w
from crossbar_pypi import ANSI, CODE, CROSSBAR, SHELL_TIMEOUT, VENV, require_crossbar
from waiting import wait_for, wait_until

class Env:
    """The master, the shell dot-dirs, and the edge node of this module."""

    def __init__(self, base: Path):
        self.base = base
        self.su_dir = base / "su"
        self.alice_dir = base / "alice"
        self.edge_dir = base / "edge1" / ".crossbar"
        self.edge_log = base / "edge1.log"
        self.master: Master | None = None
        self.edge: subprocess.Popen | None = None
        self.edge_log_file = None
        self.node_oid: str | None = None
        # The TCP port of the edge router's WebSocket transport (realm "app1").
        self.edge_port: int | None = None
        self.mrealm = "mrealm1"

    def env(self) -> dict:
        e = dict(os.environ)
        e.pop("PYTHONPATH", None)
        if self.master is not None:
            e["CROSSBAR_FABRIC_URL"] = self.master.url
        return e

    def shell(self, dotdir: Path, *args, realm: str | None = None, check: bool = True) -> str:
        cmd = [str(CROSSBAR), "shell", "--dotdir", str(dotdir)]
        if realm:
            cmd += ["--realm", realm]
        cmd += list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=SHELL_TIMEOUT, env=self.env(),
                           stdin=subprocess.DEVNULL)
        out = ANSI.sub("", r.stdout + r.stderr)
        if check:
            assert r.returncode == 0, f"$ {' '.join(cmd)}\n{out}"
        return out

    def shell_json(self, dotdir: Path, *args, realm: str | None = None):
        out = self.shell(dotdir, *args, realm=realm)
        # The shell prints the JSON result, then "Finished command in …".
        start = min(i for i in (out.find("{"), out.find("[")) if i >= 0)
        end = out.rfind("Finished command")
        return json.loads(out[start:end if end > 0 else None])

    def start_edge(self):
        self.edge_log_file = open(self.edge_log, "ab")
        self.edge = subprocess.Popen(
            [str(CROSSBAR), "edge", "start", "--cbdir", str(self.edge_dir), "--loglevel", "info"],
            stdout=self.edge_log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env(), start_new_session=True)

    def stop_edge(self, sig=signal.SIGTERM, timeout=30):
        if self.edge is not None and self.edge.poll() is None:
            os.killpg(self.edge.pid, sig)
            try:
                self.edge.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.edge.pid, signal.SIGKILL)
                self.edge.wait(timeout=10)
        if self.edge_log_file is not None:
            self.edge_log_file.close()
            self.edge_log_file = None

    def edge_log_text(self) -> str:
        try:
            return ANSI.sub("", self.edge_log.read_bytes().decode("utf-8", "replace"))
        except OSError:
            return ""


@pytest.fixture(scope="module")
def cb(tmp_path_factory):
    require_crossbar()
    base = tmp_path_factory.mktemp("crossbar")
    env = Env(base)
    # Shell profiles (keys + config.ini) first: the superuser's public key configures the master.
    for name, d in (("su", env.su_dir), ("alice", env.alice_dir)):
        e = env.env()
        e["USER"] = name
        e["CROSSBAR_FABRIC_URL"] = "ws://127.0.0.1:1/ws"
        r = subprocess.run([str(CROSSBAR), "shell", "--dotdir", str(d), "init", "--yes"],
                           capture_output=True, text=True, timeout=SHELL_TIMEOUT, env=e, stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and (d / "default.pub").exists(), r.stdout + r.stderr
    env.master = Master(base / "master", env.su_dir / "default.pub", config_text=None)
    env.master.start()
    for d in (env.su_dir, env.alice_dir):
        ini = (d / "config.ini").read_text()
        (d / "config.ini").write_text(re.sub(r"url=.*", f"url={env.master.url}", ini))
    yield env
    env.stop_edge(signal.SIGKILL)
    alive = env.master.alive()
    env.master.stop()
    assert alive, f"fabric-master died\n{env.master.log_tail()}"


def test_shell_superuser(cb):
    out = cb.shell(cb.su_dir, "auth", "--yes")
    assert "authid      : superuser" in out and "authrole    : user" in out, out
    status = cb.shell_json(cb.su_dir, "show", "status")
    assert status["type"] == "domain" and status["realm"] == "com.crossbario.fabric", status
    made = cb.shell_json(cb.su_dir, "create", "mrealm", "su-realm")
    assert made["name"] == "su-realm", made
    assert made["oid"] in cb.shell_json(cb.su_dir, "list", "mrealms")
    assert "su-realm" in cb.shell_json(cb.su_dir, "list", "mrealms", "--names")


def test_shell_user_activation_flow(cb):
    out = cb.shell(cb.alice_dir, "auth", "--yes")
    assert "sent an authentication code" in out, out
    email = wait_for(lambda: [m for m in CODE.findall(cb.master.log_path.read_text()) if "alice" in m[0]],
                     10, 0.2, what="the activation code in the master's log")
    who, code = email[-1]
    out = cb.shell(cb.alice_dir, "auth", "--code", code, "--yes")
    assert f"authid      : {who}" in out, out
    # Logged in now: no code needed any more.
    out = cb.shell(cb.alice_dir, "auth", "--yes")
    assert f"authid      : {who}" in out, out
    made = cb.shell_json(cb.alice_dir, "create", "mrealm", cb.mrealm)
    assert made["name"] == cb.mrealm, made
    # Alice sees her realm only; the superuser sees both.
    assert cb.shell_json(cb.alice_dir, "list", "mrealms", "--names") == [cb.mrealm]
    assert {cb.mrealm, "su-realm"} <= set(cb.shell_json(cb.su_dir, "list", "mrealms", "--names"))
    status = cb.shell_json(cb.alice_dir, "show", "status", realm=cb.mrealm)
    assert status["type"] == "management" and status["realm"] == cb.mrealm, status


def test_edge_node_pairs_and_comes_online(cb):
    cb.edge_dir.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([str(CROSSBAR), "edge", "keys", "--cbdir", str(cb.edge_dir)], capture_output=True,
                       text=True, timeout=SHELL_TIMEOUT, env=cb.env(), stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and (cb.edge_dir / "key.pub").exists(), r.stdout + r.stderr
    node = cb.shell_json(cb.alice_dir, "pair", "node", str(cb.edge_dir / "key.pub"), cb.mrealm, "node1")
    assert node["authid"] == "node1" and node["mrealm_oid"], node
    cb.node_oid = node["oid"]
    cb.start_edge()
    wait_for(lambda: "Connected to Crossbar.io Master" in cb.edge_log_text() or cb.edge.poll() is not None,
             90, 0.2, what="the edge node to connect")
    assert cb.edge.poll() is None, cb.edge_log_text()[-3000:]
    assert cb.shell_json(cb.alice_dir, "list", "nodes", realm=cb.mrealm) == [cb.node_oid]
    assert cb.shell_json(cb.alice_dir, "list", "nodes", "--online", "--names", realm=cb.mrealm) == ["node1"]
    shown = cb.shell_json(cb.alice_dir, "show", "node", "node1", realm=cb.mrealm)
    assert shown["oid"] == cb.node_oid and shown["status"] == "online", shown


def alice_key(cb) -> KeyPair:
    return KeyPair(cb.alice_dir / "default.priv", cb.alice_dir / "default.pub")


def key_user_id(pub: Path) -> str:
    for line in pub.read_text().splitlines():
        if line.startswith("user-id:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no user-id in {pub}")


async def alice(cb):
    kp = alice_key(cb)
    return await join(cb.master, key=kp, realm=cb.mrealm, authid=key_user_id(kp.pub_path),
                      authextra={"pubkey": kp.pubkey_hex})


@aio(timeout=120)
async def test_remote_management_of_the_edge_node(cb):
    s = await alice(cb)
    oid = cb.node_oid
    heartbeats = []
    await w(s.subscribe(lambda *a: heartbeats.append(a), "crossbarfabriccenter.node.on_heartbeat"))
    remote_events = []
    await w(s.subscribe(lambda *a, **kw: remote_events.append((a, kw)), "crossbarfabriccenter.remote.",
                        options=SubscribeOptions(match="prefix", details_arg="details")))

    st = await w(s.call("crossbarfabriccenter.remote.node.get_status", oid), 30)
    assert st["management_node_id"] == "node1" and st["management_realm"] == cb.mrealm, st
    assert await w(s.call("crossbarfabriccenter.remote.node.get_workers", oid), 30) == []

    await w(s.call("crossbarfabriccenter.remote.node.start_worker", oid, "rtr1", "router", {}), 60)
    workers = await w(s.call("crossbarfabriccenter.remote.node.get_workers", oid), 30)
    assert "rtr1" in workers, workers
    await w(s.call("crossbarfabriccenter.remote.router.start_router_realm", oid, "rtr1", "realm001",
                   {"name": "app1", "options": {"bridge_meta_api": True}}), 30)
    await w(s.call("crossbarfabriccenter.remote.router.start_router_realm_role", oid, "rtr1", "realm001",
                   "anonymous", {"name": "anonymous", "permissions": [
                       {"uri": "", "match": "prefix", "allow": {"call": True, "register": True,
                                                                 "publish": True, "subscribe": True}}]}), 30)
    port = cb.edge_port = free_port()
    await w(s.call("crossbarfabriccenter.remote.router.start_router_transport", oid, "rtr1", "tp1",
                   {"type": "websocket", "endpoint": {"type": "tcp", "port": port, "interface": "127.0.0.1"},
                    "serializers": ["json"], "auth": {"anonymous": {"type": "static", "role": "anonymous"}}}), 30)
    transports = await w(s.call("crossbarfabriccenter.remote.router.get_router_transports", oid, "rtr1"), 30)
    assert "tp1" in [t["id"] if isinstance(t, dict) else t for t in transports], transports
    sessions = await w(s.call("crossbarfabriccenter.remote.realm.meta.wamp.session.list", "node1", "rtr1",
                              "realm001"), 30)
    assert isinstance(sessions, list), sessions
    # Node errors pass through with their URI.
    with pytest.raises(ApplicationError) as e:
        await w(s.call("crossbarfabriccenter.remote.node.get_worker", oid, "no-such-worker"), 30)
    assert e.value.error == "crossbar.error.no_such_worker", e.value

    # Worker starts are announced by the node and republished under remote.*.
    await wait_until(
        lambda: any(kw["details"].topic.startswith("crossbarfabriccenter.remote.") for _, kw in remote_events),
        30, 0.2, what=lambda: f"a node event republished under remote.*; got {remote_events[:5]!r}",
    )
    # Heartbeats every 10 s once the node has started (5 s delay).
    await wait_until(lambda: heartbeats, 30, 0.2, what="a heartbeat of the edge node")
    assert heartbeats[0][0] == "node1", heartbeats
    got = await w(s.call("crossbarfabriccenter.mrealm.get_node", oid))
    assert got["heartbeat"] is not None and got["status"] == "online", got
    s.leave()


def test_shell_lists_workers(cb):
    assert "rtr1" in cb.shell_json(cb.alice_dir, "list", "workers", "node1", realm=cb.mrealm)


async def edge_client(cb):
    """An anonymous session on the edge router's own realm, through its transport tp1."""
    edge = SimpleNamespace(url=f"ws://127.0.0.1:{cb.edge_port}", port=cb.edge_port)
    return await join(edge, realm="app1", auth="anonymous", serializer="json", timeout=15)


@aio(timeout=150)
async def test_tracing_on_the_edge_router_worker(cb):
    """A trace of the edge router worker's traffic: started on the node through the
    master, its data read back and streamed as mrealm.tracing.on_trace_data."""
    assert cb.edge_port, "test_remote_management_of_the_edge_node started the transport"
    s = await alice(cb)
    p = "crossbarfabriccenter.mrealm."
    data_events = []
    await w(s.subscribe(lambda *a: data_events.append(a), p + "tracing.on_trace_data"))
    created = await w(s.call(p + "create_trace", "edge-trace", [[cb.node_oid, "rtr1"]], {"batching_period": 100}))
    assert created == {}
    started = await w(s.call(p + "start_trace", "edge-trace"), 30)
    assert len(started["started"]) == 1 and started["failed"] == [], started
    assert started["started"][0]["id"] == "edge-trace" and started["started"][0]["status"] == "running", started
    assert (await w(s.call(p + "get_trace", "edge-trace")))["status"] == "running"

    # Traffic on the traced router: a subscription and acknowledged publications. (Crossbar
    # 26.10.1 records none of it: its Router sets `_is_traced = False` with a FIXME, so no
    # message reaches the worker's traces and every batch is empty; the API works the same.)
    client = await edge_client(cb)
    await w(client.subscribe(lambda *a: None, "com.example.traced"))
    for i in range(5):
        await w(client.publish("com.example.traced", i, options=PublishOptions(acknowledge=True)), 10)
    data = await w(s.call(p + "get_trace_data", "edge-trace", 50), 30)
    answer = data[cb.node_oid]["rtr1"]
    assert answer["success"] is True and isinstance(answer["data"], list), data
    # The node publishes every batching period, empty or not; the master passes it on to the
    # trace's readers.
    await wait_until(lambda: data_events, 30, 0.1, what="crossbarfabriccenter.mrealm.tracing.on_trace_data")
    node_id, worker_id, trace_id, period, _ = data_events[0]
    assert (node_id, worker_id, trace_id) == (cb.node_oid, "rtr1", "edge-trace"), data_events[0]
    assert isinstance(period, dict) and "period" in period, period
    client.leave()

    stopped = await w(s.call(p + "stop_trace", "edge-trace"), 30)
    assert len(stopped["stopped"]) == 1 and stopped["failed"] == [], stopped
    assert stopped["stopped"][0]["status"] == "stopped", stopped
    # The edge forgets a stopped trace.
    data = await w(s.call(p + "get_trace_data", "edge-trace"), 30)
    answer = data[cb.node_oid]["rtr1"]
    assert answer["success"] is False and "crossbar.error.no_such_object" in answer["data"], data
    assert await w(s.call(p + "delete_trace", "edge-trace")) == {}
    assert await w(s.call(p + "get_traces")) == []
    s.leave()


@aio(timeout=120)
async def test_stopped_edge_goes_offline(cb):
    s = await alice(cb)
    shutdown = []
    await w(s.subscribe(lambda *a: shutdown.append(a), "crossbarfabriccenter.mrealm.on_node_shutdown"))
    await asyncio.get_running_loop().run_in_executor(None, cb.stop_edge)
    await wait_until(lambda: shutdown, 30, 0.2, what="on_node_shutdown of the stopped edge node")
    assert shutdown[0][0] == cb.node_oid, shutdown
    assert await w(s.call("crossbarfabriccenter.mrealm.get_nodes", "offline")) == [cb.node_oid]
    assert await w(s.call("crossbarfabriccenter.mrealm.get_nodes", "online")) == []
    with pytest.raises(ApplicationError) as e:
        await w(s.call("crossbarfabriccenter.remote.node.get_status", cb.node_oid))
    assert e.value.error == "wamp.error.no_such_procedure" and "node1" in e.value.args[0], e.value
    s.leave()


def test_unpair_closes_the_session_and_the_node_cannot_rejoin(cb):
    cb.start_edge()
    wait_for(lambda: cb.edge_log_text().count("Connected to Crossbar.io Master") >= 2, 90, 0.2,
             what="the node to reconnect")
    out = cb.shell_json(cb.alice_dir, "unpair", "node", str(cb.edge_dir / "key.pub"))
    assert out["oid"] == cb.node_oid and len(out["killed"]) == 1, out
    # The node's uplink is closed; reconnecting is refused as unpaired, and the edge stops.
    wait_for(lambda: "NODE-UNPAIRED" in cb.edge_log_text().upper() or cb.edge.poll() is not None,
             60, 0.2, what="the edge node to be refused")
    assert cb.shell_json(cb.alice_dir, "list", "nodes", realm=cb.mrealm) == []
