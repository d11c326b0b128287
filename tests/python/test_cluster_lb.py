"""The cluster as an operator runs it: `cluster/up.sh` (3 replicas, mutual TLS among them,
haproxy in front), and everything else through the load balancer's FABRIC_URL only: the real
`crossbar shell`, two real `crossbar edge start` nodes paired with a management realm,
`remote.*` calls over fresh sessions; `kill -9` of the replica holding a node (the node comes
back through the load balancer and is callable), SIGTERM of another (its sessions get
`wamp.close.system_shutdown` and reconnect), and scaling 3 → 5 → 3 while a client writes.

The tests of this module build on each other (one cluster, two edge nodes) and run in order.
haproxy comes from Debian (.ci/run installs it); Crossbar from scripts/setup-crossbar.sh."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from autobahn.wamp.exception import ApplicationError

from conftest import KeyPair, aio, join, require_binary, w
from mgmt import join_node, node_key, unique
from crossbar_pypi import ANSI, CROSSBAR, SHELL_TIMEOUT, require_crossbar
from waiting import wait_for, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "cluster"
MRELM = "lb-mrealm"
NODES = ("edge-a", "edge-b")
# Long enough for haproxy (checks every 500 ms, 2 failures) to take a draining replica out.
DRAIN_ARGS = "--drain-delay-ms 1500 --drain-window-ms 1000"


def read_env(path: Path) -> dict:
    """DIR/cluster.env (lines `export K=V`) as a dict."""
    env = {}
    for line in path.read_text().splitlines():
        m = re.match(r"(?:export )?([A-Z_0-9]+)=(.*)", line)
        if m:
            env[m.group(1)] = m.group(2).strip('"')
    return env


class Edge:
    """A real `crossbar edge start` node whose master is the load balancer."""

    def __init__(self, base: Path, name: str, url: str):
        self.name, self.url = name, url
        self.cbdir = base / name / ".crossbar"
        self.log_path = base / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def env(self) -> dict:
        e = dict(os.environ)
        e.pop("PYTHONPATH", None)
        e["CROSSBAR_FABRIC_URL"] = self.url
        return e

    def keys(self) -> Path:
        self.cbdir.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([str(CROSSBAR), "edge", "keys", "--cbdir", str(self.cbdir)], capture_output=True,
                           text=True, timeout=SHELL_TIMEOUT, env=self.env(), stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and (self.cbdir / "key.pub").exists(), r.stdout + r.stderr
        return self.cbdir / "key.pub"

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(CROSSBAR), "edge", "start", "--cbdir", str(self.cbdir), "--loglevel", "info"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env(),
            start_new_session=True)

    def log(self) -> str:
        try:
            return ANSI.sub("", self.log_path.read_bytes().decode("utf-8", "replace"))
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()


class Cluster:
    """A cluster made by cluster/up.sh, driven through its scripts and cluster.env."""

    def __init__(self, base: Path):
        self.base = base
        self.dir = base / "cluster"
        self.su_dir = base / "su"
        self.edges: dict[str, Edge] = {}
        self.oids: dict[str, str] = {}

    def script(self, name: str, *args, timeout: float = 180) -> str:
        env = dict(os.environ, REPLICA_ARGS=DRAIN_ARGS)
        r = subprocess.run(["bash", str(SCRIPTS / name), "--dir", str(self.dir), *args], capture_output=True,
                           text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"cluster/{name} {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}\n{self.logs()}"
        return r.stdout

    @property
    def env(self) -> dict:
        return read_env(self.dir / "cluster.env")

    @property
    def lb(self):
        """The load balancer, as an address holder for conftest.join."""
        e = self.env
        return SimpleNamespace(url=e["FABRIC_URL"], port=int(e["LB_PORT"]), ssl=None)

    def replica_ids(self) -> list[int]:
        return [int(i) for i in self.env["MEMBERS"].split()]

    def pid(self, replica: int) -> int:
        return int(self.env[f"REPLICA_{replica}_PID_BY_ID"])

    def replica_addr(self, replica: int):
        port = int(self.env[f"REPLICA_{replica}_WS_BY_ID"])
        return SimpleNamespace(url=f"ws://127.0.0.1:{port}/ws", port=port, ssl=None)

    def cli(self, *args) -> dict | list:
        """A `fabric-master` peer command, answered by the first live member (any replica
        may have been killed by the test)."""
        env = self.env
        answers = []
        for i in env["MEMBERS"].split():
            e = dict(os.environ, **env)
            e["RUST_BACKTRACE"] = "0"
            e["FABRIC_PEER"] = f"127.0.0.1:{env[f'REPLICA_{i}_PEER_BY_ID']}"
            r = subprocess.run([e["FABRIC_BIN"], *args], capture_output=True, text=True, timeout=30, env=e)
            if r.returncode == 0:
                return json.loads(r.stdout)
            answers.append(f"replica {i}: {r.stdout}{r.stderr}")
        raise AssertionError(f"fabric-master {' '.join(args)}: no member answered:\n" + "\n".join(answers))

    def presence(self) -> dict[str, int]:
        """Node authid → the replica holding its session, from the replicated state."""
        return {p["authid"]: p["replica_id"] for p in self.cli("state", "list", "presence")}

    def shell(self, *args, realm: str | None = None) -> str:
        cmd = [str(CROSSBAR), "shell", "--dotdir", str(self.su_dir)]
        if realm:
            cmd += ["--realm", realm]
        e = dict(os.environ, CROSSBAR_FABRIC_URL=self.env["FABRIC_URL"])
        e.pop("PYTHONPATH", None)
        r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=SHELL_TIMEOUT, env=e,
                           stdin=subprocess.DEVNULL)
        out = ANSI.sub("", r.stdout + r.stderr)
        assert r.returncode == 0, f"$ crossbar shell {' '.join(args)}\n{out}"
        return out

    def shell_json(self, *args, realm: str | None = None):
        out = self.shell(*args, realm=realm)
        start = min(i for i in (out.find("{"), out.find("[")) if i >= 0)
        end = out.rfind("Finished command")
        return json.loads(out[start:end if end > 0 else None])

    def logs(self) -> str:
        tails = []
        for log in sorted(self.dir.glob("r*.log")):
            tails.append(f"--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(tails)

    @property
    def keys(self):
        return SimpleNamespace(superuser=KeyPair(self.su_dir / "default.priv", self.su_dir / "default.pub"))


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    require_crossbar()
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed (apt-get install haproxy; .ci/run does)", pytrace=False)
    c = Cluster(tmp_path_factory.mktemp("lb"))
    e = dict(os.environ, USER="su", CROSSBAR_FABRIC_URL="ws://127.0.0.1:1/ws")
    e.pop("PYTHONPATH", None)
    r = subprocess.run([str(CROSSBAR), "shell", "--dotdir", str(c.su_dir), "init", "--yes"], capture_output=True,
                       text=True, timeout=SHELL_TIMEOUT, env=e, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    c.script("up.sh", "--replicas", "3", "--bin", require_binary(), "--superuser", str(c.su_dir / "default.pub"))
    ini = (c.su_dir / "config.ini").read_text()
    (c.su_dir / "config.ini").write_text(re.sub(r"url=.*", f"url={c.env['FABRIC_URL']}", ini))
    yield c
    for edge in c.edges.values():
        edge.stop()
    subprocess.run(["bash", str(SCRIPTS / "down.sh"), "--dir", str(c.dir), "--fast"], capture_output=True,
                   timeout=120)


async def get_status(cl: Cluster, name: str, timeout: float = 20) -> dict:
    """remote.node.get_status of node `name` over a fresh session through the load balancer."""
    s = await join(cl.lb, cl.keys, realm=MRELM)
    try:
        return await w(s.call("crossbarfabriccenter.remote.node.get_status", cl.oids[name]), timeout)
    finally:
        await s.close()


async def status_or_none(cl: Cluster, name: str):
    """One bounded attempt of get_status; None while the node is not callable (yet)."""
    try:
        return await get_status(cl, name, timeout=5)
    except Exception:  # noqa: BLE001 - any failure means "not yet"; the caller's deadline bounds it
        return None


def test_shell_and_two_edge_nodes_through_the_load_balancer(cl):
    out = cl.shell("auth", "--yes")
    assert "authid      : superuser" in out, out
    assert cl.shell_json("create", "mrealm", MRELM)["name"] == MRELM
    for name in NODES:
        edge = cl.edges[name] = Edge(cl.base, name, cl.env["FABRIC_URL"])
        node = cl.shell_json("pair", "node", str(edge.keys()), MRELM, name)
        cl.oids[name] = node["oid"]
        edge.start()
    for edge in cl.edges.values():
        wait_for(lambda: "Connected to Crossbar.io Master" in edge.log() or edge.proc.poll() is not None,
                 90, 0.2, what=f"{edge.name} to connect")
        assert edge.proc.poll() is None, edge.log()[-3000:]
    online = wait_for(lambda: (lambda o: o if sorted(o) == sorted(NODES) else None)(
        cl.shell_json("list", "nodes", "--online", "--names", realm=MRELM)), 30, 0.5, what="both nodes online")
    assert sorted(online) == sorted(NODES)
    status = cl.cli("cluster", "status")
    assert sorted(status["voters"]) == [1, 2, 3] and status["learners"] == [], status
    assert all(m["reachable"] for m in status["members"]), status


@aio(timeout=120)
async def test_remote_calls_over_fresh_sessions(cl):
    # haproxy spreads fresh sessions over the replicas (leastconn): each of them reaches
    # both nodes, wherever they are connected.
    for _ in range(4):
        for name in NODES:
            st = await get_status(cl, name)
            assert st["management_node_id"] == name and st["management_realm"] == MRELM, st


@aio(timeout=180)
async def test_kill_9_of_the_replica_holding_a_node(cl):
    holder = cl.presence()[NODES[0]]
    killed_at = time.monotonic()
    os.kill(cl.pid(holder), signal.SIGKILL)

    st = await wait_until(lambda: status_or_none(cl, NODES[0]), 90, 0.25,
                          what=f"{NODES[0]} callable after kill -9 of replica {holder}")
    print(f"{NODES[0]} callable again {time.monotonic() - killed_at:.1f} s after kill -9 of replica {holder}")
    assert st["management_node_id"] == NODES[0]
    # Its presence moved with it: the node's new session wrote it (no waiting for the lease).
    assert cl.presence()[NODES[0]] != holder
    # The other node is callable too; then the killed replica comes back on its data.
    await get_status(cl, NODES[1])
    await asyncio.to_thread(cl.script, "restart.sh", "--replica", str(holder))
    status = cl.cli("cluster", "status")
    assert all(m["reachable"] for m in status["members"]), status


@aio(timeout=180)
async def test_sigterm_drains_sessions_to_the_survivors(cl):
    # A replica other than the one holding edge-a; a client joined to it directly sees the
    # drain's GOODBYE.
    held = cl.presence()
    target = next(r for r in cl.replica_ids() if r != held[NODES[0]])
    direct = await join(cl.replica_addr(target), cl.keys, realm=MRELM)
    pid = cl.pid(target)
    os.kill(pid, signal.SIGTERM)
    details = await asyncio.wait_for(asyncio.shield(direct.left_f), 30)
    assert details.reason == "wamp.close.system_shutdown", details
    await wait_until(lambda: not os.path.exists(f"/proc/{pid}") or "zombie" in Path(f"/proc/{pid}/status").read_text(),
                     60, 0.2, what=f"replica {target} to exit after its drain", retry_on=(OSError,))
    # Every node is online and callable through the survivors (one may have been on it).
    for name in NODES:
        st = await wait_until(lambda n=name: status_or_none(cl, n), 60, 0.5,
                              what=f"{name} callable after the drain")
        assert st["management_node_id"] == name
    assert target not in cl.presence().values()
    await asyncio.to_thread(cl.script, "restart.sh", "--replica", str(target))


class Writer:
    """Creates application realms through the load balancer until stopped, on a new session
    every few writes (so that sessions land on the new replicas too), reconnecting when a
    drain closes its session. A write whose session closed under it is not counted; a write
    answered with an error is a failure."""

    WRITES_PER_SESSION = 10

    def __init__(self, cl: Cluster):
        self.cl = cl
        self.done = 0
        self.errors: list[str] = []
        self.reconnects = 0
        self.stop = asyncio.Event()
        self.prefix = unique("w")

    async def run(self):
        n = 0
        while not self.stop.is_set():
            try:
                s = await join(self.cl.lb, self.cl.keys, realm=MRELM)
            except Exception:
                self.reconnects += 1
                await asyncio.sleep(0.2)
                continue
            try:
                for _ in range(self.WRITES_PER_SESSION):
                    if self.stop.is_set() or s.left_f.done():
                        break
                    n += 1
                    call = asyncio.ensure_future(
                        s.call("crossbarfabriccenter.mrealm.arealm.create_arealm", {"name": f"{self.prefix}-{n}"}))
                    await asyncio.wait([call, s.left_f], timeout=30, return_when=asyncio.FIRST_COMPLETED)
                    if not call.done():
                        call.cancel()
                        break  # the session went away under the write: a new one, a new name
                    try:
                        call.result()
                        self.done += 1
                    except ApplicationError as e:
                        if s.left_f.done() and e.error in ("wamp.close.system_shutdown", "wamp.error.canceled"):
                            break
                        self.errors.append(f"w{n}: {e.error} {e.args}")
                    except Exception as e:  # transport lost mid-call
                        if not s.left_f.done():
                            self.errors.append(f"w{n}: {e!r}")
                        break
            finally:
                self.reconnects += 1
                await s.close()


@aio(timeout=240)
async def test_leader_kill_fails_no_write(cl):
    """Killing the leader is invisible to writers: writes wait for the next leader (up to the
    write timeout) instead of failing; only sessions on the killed replica are cut."""
    leader = cl.cli("cluster", "status")["leader"]
    writer = Writer(cl)
    task = asyncio.ensure_future(writer.run())
    try:
        await wait_until(lambda: writer.done >= 20, 30, 0.05, what="writes before the kill")
        os.kill(cl.pid(leader), signal.SIGKILL)
        before = writer.done
        await wait_until(lambda: writer.done >= before + 50, 60, 0.05, what="writes after killing the leader")
    finally:
        writer.stop.set()
        await asyncio.wait_for(task, 40)
    assert not writer.errors, writer.errors
    await asyncio.to_thread(cl.script, "restart.sh", "--replica", str(leader))


@aio(timeout=240)
async def test_drain_fails_in_flight_node_calls_clearly(cl, tmp_path):
    """A node call in flight to a node session on a draining replica fails with an error when
    the drain closes that session: it does not hang."""
    target = cl.replica_ids()[-1]
    name = unique("slow")
    kp = node_key(tmp_path, name)
    su = await join(cl.lb, cl.keys)
    node = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, MRELM, name))
    await su.close()
    sim = await join_node(cl.replica_addr(target), kp)
    started = asyncio.Event()

    async def slow_status():
        started.set()
        await asyncio.sleep(120)
        return {"management_node_id": name}

    await w(sim.register(slow_status, f"crossbarfabriccenter.node.{name}.get_status"))
    other = next(r for r in cl.replica_ids() if r != target)
    caller = await join(cl.replica_addr(other), cl.keys, realm=MRELM)
    # The node is online once its presence is applied everywhere.
    await wait_until(lambda: cl.presence().get(name) == target, 20, 0.2, what="the slow node's presence")
    call = asyncio.ensure_future(caller.call("crossbarfabriccenter.remote.node.get_status", node["oid"]))
    await asyncio.wait_for(started.wait(), 20)
    t0 = time.monotonic()
    os.kill(cl.pid(target), signal.SIGTERM)
    with pytest.raises(ApplicationError) as failed:
        await asyncio.wait_for(call, 30)
    print(f"the in-flight node call failed with {failed.value.error} {time.monotonic() - t0:.1f} s after SIGTERM")
    await caller.close()
    await asyncio.to_thread(cl.script, "restart.sh", "--replica", str(target))


@aio(timeout=400)
async def test_scale_3_5_3_while_writing(cl):
    writer = Writer(cl)
    task = asyncio.ensure_future(writer.run())
    try:
        for target in (5, 3):
            before = writer.done
            proc = await asyncio.create_subprocess_exec(
                "bash", str(SCRIPTS / "scale.sh"), "--dir", str(cl.dir), "--replicas", str(target),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env=dict(os.environ, REPLICA_ARGS=DRAIN_ARGS))
            out, _ = await asyncio.wait_for(proc.communicate(), 180)
            assert proc.returncode == 0, out.decode() + cl.logs()
            status = cl.cli("cluster", "status")
            assert len(status["members"]) == target, status
            assert sorted(status["voters"]) == [1, 2, 3], status
            assert len(status["learners"]) == target - 3, status
            # Writes went on while the replicas came and went.
            await wait_until(lambda b=before: writer.done > b + 5, 30, 0.1, what="writes after scaling")
            assert not writer.errors, writer.errors
    finally:
        writer.stop.set()
        await asyncio.wait_for(task, 40)
    assert not writer.errors, writer.errors
    assert writer.done > 0
    print(f"{writer.done} writes through the load balancer while scaling 3 → 5 → 3, "
          f"{writer.reconnects} sessions")
    # Every acknowledged write is there.
    s = await join(cl.lb, cl.keys, realm=MRELM)
    names = await w(s.call("crossbarfabriccenter.mrealm.arealm.list_arealms", True), 20)
    await s.close()
    assert len(names) >= writer.done, (len(names), writer.done)
