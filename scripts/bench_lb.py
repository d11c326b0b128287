#!/usr/bin/env python3
"""Benchmarks of the cluster behind a load balancer (issue 13), on loopback, release binary.

  1. learners: committed writes/s with 3 voters alone and with 3 voters + 2 learners (the
     leader replicates to the learners too), alternated A B A B; a write and a linearizable
     read through a learner and through a voter-follower, one at a time, p50/p99;
  2. drain: 1,000 sessions (WAMP JSON, anonymous on a management realm) on one replica of a
     cluster made by cluster/up.sh, each calling get_status once a second; SIGTERM: the time
     to exit, every session's close reason, calls that failed other than by the drain, and
     the sessions reconnected through the load balancer;
  3. failover: a real `crossbar edge start` node behind haproxy; kill -9 of the replica
     holding its session, time until `remote.node.get_status` answers again through the
     load balancer (several rounds; the node's reconnect backoff included).

Usage: $VENV/bin/python scripts/bench_lb.py [--bin target/release/fabric-master] [--rounds 5]
(VENV: the test venv of scripts/setup-python.sh; part 3 needs scripts/setup-crossbar.sh.)
"""
import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cluster import Replica, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CROSSBAR = os.path.join(os.environ.get("FABRIC_CROSSBAR_VENV", os.path.expanduser("~/.cache/fabric-master-crossbar-venv")),
                        "bin", "crossbar")


def bench_json(bin_path, *args):
    out = subprocess.run([bin_path, "bench", *args], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    line = next(l for l in out.stdout.splitlines() if l.startswith("JSON "))
    return json.loads(line[5:])


def part_learners(b, work, count):
    print("== 1. learners", flush=True)
    r1 = Replica(b, work, 1, ["--bootstrap"])
    r1.start()
    wait_for(b, r1.peer, "a leader", lambda s: s["leader"] == 1)
    others = []
    for i in (2, 3):
        r = Replica(b, work, i, ["--join", r1.peer])
        r.start()
        others.append(r)
    wait_for(b, r1.peer, "3 voters", lambda s: s["voters"] == [1, 2, 3])
    learners = []
    rates = {"3 voters": [], "3 voters + 2 learners": []}

    cpu = {"3 voters": [], "3 voters + 2 learners": []}

    def cpu_seconds(pid):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def run(label):
        before = cpu_seconds(r1.proc.pid)
        rep = bench_json(b, "--mode", "raft", "--peer", r1.peer, "--inflight", "100", "--count", str(count),
                         "--label", label)
        per_write_us = (cpu_seconds(r1.proc.pid) - before) / max(rep["ops"], 1) * 1e6
        rates[label].append(rep)
        cpu[label].append(per_write_us)
        print(f"  {label}: {rep['rate']:.0f} writes/s p50={rep['p50_us']}us p99={rep['p99_us']}us; "
              f"leader CPU {per_write_us:.0f} us/write", flush=True)

    try:
        for round_ in range(2):
            run("3 voters")
            for i in (4, 5):
                r = Replica(b, work, i + 10 * round_, ["--join", r1.peer])
                r.start()
                learners.append(r)
            wait_for(b, r1.peer, "2 learners", lambda s: len(s["learners"]) == 2, timeout=120)
            run("3 voters + 2 learners")
            if round_ == 0:
                for r in learners:
                    r.proc.send_signal(signal.SIGTERM)  # learners leave on SIGTERM
                    r.proc.wait(timeout=60)
                wait_for(b, r1.peer, "no learner", lambda s: not s["learners"], timeout=60)
                learners.clear()
        alone = statistics.mean(r["rate"] for r in rates["3 voters"])
        with_l = statistics.mean(r["rate"] for r in rates["3 voters + 2 learners"])
        print(f"  writes/s: 3 voters {alone:.0f}, with 2 learners {with_l:.0f} "
              f"(ratio {with_l / alone:.2f}; cost {100 * (1 - with_l / alone):.1f} %; all 5 processes share "
              f"{os.cpu_count()} cores and one disk)", flush=True)
        ca = statistics.mean(cpu["3 voters"])
        cl = statistics.mean(cpu["3 voters + 2 learners"])
        print(f"  leader CPU per write: 3 voters {ca:.0f} us, with 2 learners {cl:.0f} us "
              f"(+{100 * (cl / ca - 1):.1f} %: what the learners cost the leader itself)", flush=True)
        learner = learners[0]
        follower = others[0]
        for label, peer in (("learner", learner.peer), ("voter-follower", follower.peer)):
            w = bench_json(b, "--mode", "raft", "--peer", peer, "--inflight", "1", "--count", "1000",
                           "--label", label)
            r = bench_json(b, "--mode", "raft-read", "--peer", peer, "--inflight", "1", "--count", "2000",
                           "--label", label)
            print(f"  through a {label}: write p50={w['p50_us']}us p99={w['p99_us']}us; "
                  f"read p50={r['p50_us']}us p99={r['p99_us']}us", flush=True)
    finally:
        for r in [r1, *others, *learners]:
            r.kill()


def cluster_env(d):
    env = {}
    for line in open(os.path.join(d, "cluster.env")):
        m = re.match(r"(?:export )?([A-Z_0-9]+)=(.*)", line.strip())
        if m:
            env[m.group(1)] = m.group(2).strip('"')
    return env


def up(b, d, replicas=3, args=""):
    subprocess.run(["bash", os.path.join(ROOT, "cluster/up.sh"), "--dir", d, "--replicas", str(replicas),
                    "--bin", b], check=True, capture_output=True, env=dict(os.environ, REPLICA_ARGS=args), timeout=300)
    return cluster_env(d)


def down(d):
    subprocess.run(["bash", os.path.join(ROOT, "cluster/down.sh"), "--dir", d, "--fast"], capture_output=True,
                   timeout=120)


async def superuser_call(url, key_path, realm, proc, *args):
    import binascii
    from autobahn.wamp.cryptosign import CryptosignKey
    import websockets
    key = CryptosignKey.from_keyfile(key_path)
    async with websockets.connect(url, subprotocols=["wamp.2.json"], max_size=None) as ws:
        await ws.send(json.dumps([1, realm, {"roles": {"caller": {}}, "authmethods": ["cryptosign"],
                                             "authextra": {"pubkey": key.public_key()}}]))
        challenge = json.loads(await ws.recv())
        assert challenge[0] == 4, challenge
        data = binascii.a2b_hex(challenge[2]["challenge"])
        sig = binascii.b2a_hex(key._key.sign(data).signature).decode() + challenge[2]["challenge"]
        await ws.send(json.dumps([5, sig, {}]))
        welcome = json.loads(await ws.recv())
        assert welcome[0] == 2, welcome
        await ws.send(json.dumps([48, 1, {}, proc, list(args)]))
        while True:
            m = json.loads(await ws.recv())
            if m[0] in (50, 8):
                return m


class DrainClient:
    """One anonymous JSON session on a management realm, calling get_status once a second."""

    def __init__(self, url, realm):
        self.url, self.realm = url, realm
        self.reason = None
        self.ok = 0
        self.errors = []
        self.in_flight_at_close = 0

    async def run(self, joined: asyncio.Event, counter):
        import websockets
        try:
            async with websockets.connect(self.url, subprotocols=["wamp.2.json"], max_size=None,
                                          open_timeout=30, ping_interval=None) as ws:
                await ws.send(json.dumps([1, self.realm, {"roles": {"caller": {}}, "authmethods": ["anonymous"]}]))
                welcome = json.loads(await ws.recv())
                if welcome[0] != 2:
                    self.errors.append(f"join: {welcome}")
                    return
                counter[0] += 1
                if counter[0] == counter[1]:
                    joined.set()
                req, pending = 0, set()

                async def caller():
                    nonlocal req
                    while True:
                        req += 1
                        pending.add(req)
                        await ws.send(json.dumps([48, req, {}, "crossbarfabriccenter.mrealm.get_status", []]))
                        await asyncio.sleep(1.0)

                task = asyncio.ensure_future(caller())
                try:
                    async for raw in ws:
                        m = json.loads(raw)
                        if m[0] == 50:
                            pending.discard(m[1])
                            self.ok += 1
                        elif m[0] == 8:
                            pending.discard(m[2])
                            self.errors.append(m[4])
                        elif m[0] == 6:
                            self.reason = m[2]
                            self.in_flight_at_close = len(pending)
                            await ws.send(json.dumps([6, {}, "wamp.close.goodbye_and_out"]))
                            break
                finally:
                    task.cancel()
        except Exception as e:  # the connection dropped without GOODBYE
            if self.reason is None:
                self.errors.append(f"connection: {e!r}")


async def reconnect_ok(url, realm):
    import websockets
    try:
        async with websockets.connect(url, subprotocols=["wamp.2.json"], open_timeout=30) as ws:
            await ws.send(json.dumps([1, realm, {"roles": {"caller": {}}, "authmethods": ["anonymous"]}]))
            if json.loads(await ws.recv())[0] != 2:
                return False
            await ws.send(json.dumps([48, 1, {}, "crossbarfabriccenter.mrealm.get_status", []]))
            return json.loads(await ws.recv())[0] == 50
    except Exception:
        return False


async def part_drain(b, work, sessions):
    print(f"== 2. drain of {sessions} sessions", flush=True)
    d = os.path.join(work, "drain")
    env = up(b, d)
    try:
        res = await superuser_call(env["FABRIC_URL"], os.path.join(d, "superuser.priv"), "com.crossbario.fabric",
                                   "crossbarfabriccenter.mrealm.create_mrealm", {"name": "bench-drain"})
        assert res[0] == 50, res
        target_url = env["REPLICA_2_URL"]
        # The realm exists on every replica once applied.
        for _ in range(100):
            if await reconnect_ok(target_url, "bench-drain"):
                break
            await asyncio.sleep(0.1)
        clients = [DrainClient(target_url, "bench-drain") for _ in range(sessions)]
        joined, counter = asyncio.Event(), [0, sessions]
        tasks = []
        for i, c in enumerate(clients):
            tasks.append(asyncio.ensure_future(c.run(joined, counter)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(joined.wait(), 120)
        await asyncio.sleep(3)  # calls flowing
        pid = int(env["REPLICA_2_PID"])
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        while os.path.exists(f"/proc/{pid}") and "zombie" not in open(f"/proc/{pid}/status").read():
            await asyncio.sleep(0.05)
        exit_s = time.monotonic() - t0
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        reasons = {}
        for c in clients:
            reasons[c.reason] = reasons.get(c.reason, 0) + 1
        failed = [e for c in clients for e in c.errors]
        in_flight = sum(c.in_flight_at_close for c in clients)
        ok = sum(c.ok for c in clients)
        print(f"  SIGTERM to exit: {exit_s:.1f} s (drain delay 3 s + window 5 s + hand-over)", flush=True)
        print(f"  close reasons: {reasons}; calls answered: {ok}; calls failed: {len(failed)} {failed[:5]}; "
              f"calls in flight when their session was closed: {in_flight}", flush=True)
        t1 = time.monotonic()
        back = await asyncio.gather(*(reconnect_ok(env["FABRIC_URL"], "bench-drain") for _ in range(sessions)))
        print(f"  reconnected through the load balancer and called: {sum(back)}/{sessions} "
              f"in {time.monotonic() - t1:.1f} s", flush=True)
    finally:
        down(d)


def part_failover(b, work, rounds):
    print(f"== 3. failover of a real edge node, {rounds} rounds", flush=True)
    if not os.path.exists(CROSSBAR):
        print("  skipped: no crossbar (scripts/setup-crossbar.sh)")
        return
    d = os.path.join(work, "failover")
    su = os.path.join(work, "su")
    cenv = dict(os.environ, USER="su", CROSSBAR_FABRIC_URL="ws://127.0.0.1:1/ws")
    cenv.pop("PYTHONPATH", None)
    subprocess.run([CROSSBAR, "shell", "--dotdir", su, "init", "--yes"], check=True, capture_output=True, env=cenv,
                   timeout=120)
    os.makedirs(d, exist_ok=True)
    subprocess.run(["bash", os.path.join(ROOT, "cluster/up.sh"), "--dir", d, "--replicas", "3", "--bin", b,
                    "--superuser", os.path.join(su, "default.pub")], check=True, capture_output=True, timeout=300,
                   env=dict(os.environ, REPLICA_ARGS="--drain-delay-ms 1500 --drain-window-ms 1000"))
    env = cluster_env(d)
    cenv["CROSSBAR_FABRIC_URL"] = env["FABRIC_URL"]
    ini = open(os.path.join(su, "config.ini")).read()
    open(os.path.join(su, "config.ini"), "w").write(re.sub(r"url=.*", f"url={env['FABRIC_URL']}", ini))
    shell = lambda *a: subprocess.run([CROSSBAR, "shell", "--dotdir", su, *a], capture_output=True, text=True,
                                      env=cenv, timeout=120)
    edge = None
    try:
        shell("auth", "--yes")
        shell("create", "mrealm", "bench-fo")
        cbdir = os.path.join(work, "edge", ".crossbar")
        os.makedirs(os.path.dirname(cbdir), exist_ok=True)
        subprocess.run([CROSSBAR, "edge", "keys", "--cbdir", cbdir], check=True, capture_output=True, env=cenv,
                       timeout=120)
        out = shell("pair", "node", os.path.join(cbdir, "key.pub"), "bench-fo", "edge1").stdout
        oid = re.search(r'"oid": "([0-9a-f-]+)"', out).group(1)
        edge = subprocess.Popen([CROSSBAR, "edge", "start", "--cbdir", cbdir], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=cenv, start_new_session=True)

        async def callable_once():
            try:
                res = await asyncio.wait_for(superuser_call(
                    env["FABRIC_URL"], os.path.join(su, "default.priv"), "bench-fo",
                    "crossbarfabriccenter.remote.node.get_status", oid), 5)
                return res[0] == 50
            except Exception:
                return False

        async def wait_callable(limit):
            t0 = time.monotonic()
            while time.monotonic() - t0 < limit:
                if await callable_once():
                    return time.monotonic() - t0
                await asyncio.sleep(0.1)
            raise SystemExit("the node did not become callable")

        asyncio.run(wait_callable(120))
        times = []
        for _ in range(rounds):
            env = cluster_env(d)
            presence = json.loads(subprocess.run(
                [b, "state", "list", "presence"], capture_output=True, text=True, check=True,
                env=dict(os.environ, **env)).stdout)
            holder = presence[0]["replica_id"]
            os.kill(int(env[f"REPLICA_{holder}_PID_BY_ID"]), signal.SIGKILL)
            t = asyncio.run(wait_callable(60))
            times.append(t)
            print(f"  kill -9 of replica {holder}: node callable again after {t:.2f} s", flush=True)
            subprocess.run(["bash", os.path.join(ROOT, "cluster/restart.sh"), "--dir", d, "--replica", str(holder)],
                           check=True, capture_output=True, timeout=180)
        print(f"  failover: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
              f"over {rounds} rounds (target <= 5 s)", flush=True)
    finally:
        if edge is not None:
            os.killpg(edge.pid, signal.SIGKILL)
        down(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.environ.get(
        "CARGO_TARGET_DIR", os.path.expanduser("~/.cache/fabric-master-target")), "release", "fabric-master"))
    ap.add_argument("--writes", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--parts", default="1,2,3")
    a = ap.parse_args()
    b = os.path.abspath(a.bin)
    work = tempfile.mkdtemp(prefix="fabric-bench-lb-")
    parts = a.parts.split(",")
    if "1" in parts:
        part_learners(b, work, a.writes)
    if "2" in parts:
        asyncio.run(part_drain(b, work, a.sessions))
    if "3" in parts:
        part_failover(b, work, a.rounds)


if __name__ == "__main__":
    main()
