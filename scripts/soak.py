#!/usr/bin/env python3
"""Soak: a cluster of 3 replicas behind haproxy (cluster/up.sh), N simulated edge nodes
(paired, joined through the load balancer, answering get_status) and steady management
traffic, for a long time; RSS, open files, the redb file and latencies of every replica are
sampled every few seconds, written as CSV and plotted in a self-contained HTML page, and the
run is judged: flat, or growing.

The management traffic, at --rate operations per second in all, cycles through:
  remote.node.get_status of a random node (routed to the replica holding its session),
  create_arealm, then delete_arealm of the arealm created --keep operations earlier (so the
  state stays the same size), list_arealms, and the global list_mrealms.

Verdict (after the first quarter, a warm-up): every operation answered; per replica, the
median RSS of the last quarter at most --rss-growth (1.15) times that of the second quarter,
open files at most 10 more, and (runs of 40 minutes or more, longer than the exactly-once
memory's 10-minute window) the redb file at most --file-growth (1.5) times larger.

Usage: $VENV/bin/python scripts/soak.py --seconds 3600 --nodes 1000 --out docs/soak
       [--bin target/release/fabric-master] [--rate 50] [--sample 5]
(VENV: the test venv of scripts/setup-python.sh.) Exits 1 when the verdict is "growing".
"""
import argparse
import asyncio
import binascii
import csv
import itertools
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs shorter than this are not judged on the redb file (see verdict()).
FILE_JUDGED_AFTER_S = 40 * 60

HELLO, WELCOME, ABORT, CHALLENGE, AUTHENTICATE, GOODBYE = 1, 2, 3, 4, 5, 6
ERROR, CALL, RESULT, REGISTER, REGISTERED, INVOCATION, YIELD = 8, 48, 50, 64, 65, 68, 70


def cluster_env(d):
    env = {}
    for line in open(os.path.join(d, "cluster.env")):
        m = re.match(r"(?:export )?([A-Z_0-9]+)=(.*)", line.strip())
        if m:
            env[m.group(1)] = m.group(2).strip('"')
    return env


class Wamp:
    """A raw WAMP-JSON session over websockets: cryptosign join, calls, registrations."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending = {}
        self.procedures = {}
        self.reader = None
        self.closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def join(cls, url, realm, sign, pubkey_hex, authrole=None):
        import websockets
        ws = await websockets.connect(url, subprotocols=["wamp.2.json"], max_size=None, open_timeout=60,
                                      ping_interval=None)
        details = {"roles": {"caller": {}, "callee": {}}, "authmethods": ["cryptosign"],
                   "authextra": {"pubkey": pubkey_hex}}
        if authrole:
            details["authrole"] = authrole
        await ws.send(json.dumps([HELLO, realm, details]))
        msg = json.loads(await ws.recv())
        if msg[0] != CHALLENGE:
            raise RuntimeError(f"join: {msg}")
        challenge = msg[2]["challenge"]
        signature = sign(binascii.a2b_hex(challenge))
        await ws.send(json.dumps([AUTHENTICATE, signature.hex() + challenge, {}]))
        msg = json.loads(await ws.recv())
        if msg[0] != WELCOME:
            raise RuntimeError(f"join: {msg}")
        s = cls(ws)
        s.reader = asyncio.ensure_future(s.read())
        return s

    async def read(self):
        try:
            async for raw in self.ws:
                m = json.loads(raw)
                if m[0] in (RESULT, REGISTERED):
                    f = self.pending.pop(m[1], None)
                    if f and not f.done():
                        f.set_result(m)
                elif m[0] == ERROR:
                    f = self.pending.pop(m[2], None)
                    if f and not f.done():
                        f.set_result(m)
                elif m[0] == INVOCATION:
                    handler = self.procedures.get(m[2])
                    await self.ws.send(json.dumps([YIELD, m[1], {}, [handler()]]))
                elif m[0] == GOODBYE:
                    break
        except Exception:  # noqa: BLE001 - the connection dropped
            pass
        finally:
            for f in self.pending.values():
                if not f.done():
                    f.set_result([ERROR, 0, 0, {}, "connection.lost"])
            if not self.closed.done():
                self.closed.set_result(True)

    async def request(self, msg, timeout=30):
        f = asyncio.get_running_loop().create_future()
        self.pending[msg[1]] = f
        await self.ws.send(json.dumps(msg))
        return await asyncio.wait_for(f, timeout)

    async def call(self, procedure, *args):
        m = await self.request([CALL, next(self.ids), {}, procedure, list(args)])
        if m[0] == ERROR:
            raise RuntimeError(f"{procedure}: {m[4]} {m[5:] if len(m) > 5 else ''}")
        return m[3][0] if len(m) > 3 and m[3] else None

    async def register(self, procedure, handler):
        m = await self.request([REGISTER, next(self.ids), {}, procedure])
        if m[0] != REGISTERED:
            raise RuntimeError(f"register {procedure}: {m}")
        self.procedures[m[2]] = handler


def superuser_signer(priv_path):
    from autobahn.wamp.cryptosign import CryptosignKey
    key = CryptosignKey.from_keyfile(priv_path)
    return (lambda data: key._key.sign(data).signature), key.public_key()


class Node:
    """A simulated edge node: paired, joined through the load balancer, answering get_status;
    it joins again when its session is closed."""

    def __init__(self, url, authid):
        import nacl.signing
        self.url, self.authid = url, authid
        self.key = nacl.signing.SigningKey.generate()
        self.pubkey = self.key.verify_key.encode().hex()
        self.joins = 0
        self.session = None

    async def run(self, stop):
        while not stop.is_set():
            try:
                s = await Wamp.join(self.url, None, lambda d: self.key.sign(d).signature, self.pubkey, "node")
                status = {"management_node_id": self.authid, "title": "soak", "workers_by_type": {"router": 1}}
                await s.register(f"crossbarfabriccenter.node.{self.authid}.get_status", lambda: status)
                self.session = s
                self.joins += 1
                await s.closed
            except Exception:  # noqa: BLE001 - join again, as an edge node does
                await asyncio.sleep(1 + random.random())


def sample_replica(env, i):
    pid = int(env[f"REPLICA_{i}_PID"])
    rss_kib = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rid = env[f"REPLICA_{i}_ID"]
    return {"rss_mib": rss_kib / 1024, "fds": fds,
            "file_mib": os.path.getsize(os.path.join(env["DIR"], f"r{rid}", "state.redb")) / 2**20}


def percentile(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def joined(url, realm, sign, pub, seconds=60):
    """A set-up session, opened again while the cluster cannot take it yet: haproxy answers 503
    while no replica is ready (an election on a loaded machine), and a replica may not have
    applied a realm created through another one."""
    import websockets
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await Wamp.join(url, realm, sign, pub)
        except (RuntimeError, OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
            transient = not isinstance(e, RuntimeError) or "no_such_realm" in str(e)
            if not transient or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def settled(call, *args, seconds=60):
    """A set-up call, tried again while the cluster cannot answer yet (an election on a loaded
    machine answers no-quorum or times out); any other error ends the run."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call(*args)
        except (RuntimeError, asyncio.TimeoutError) as e:
            transient = isinstance(e, asyncio.TimeoutError) or any(
                w in str(e) for w in ("no-quorum", "no_quorum", "timeout", "unavailable"))
            if not transient or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def soak(args, env):
    url = env["FABRIC_URL"]
    sign, pub = superuser_signer(env["CROSSBAR_FABRIC_SUPERUSER"].removesuffix(".pub") + ".priv")
    su = await joined(url, "com.crossbario.fabric", sign, pub)
    realm = "soak"
    await settled(su.call, "crossbarfabriccenter.mrealm.create_mrealm", {"name": realm})
    nodes = [Node(url, f"node{i}") for i in range(args.nodes)]
    oids = []
    t0 = time.monotonic()
    for chunk in range(0, len(nodes), 100):
        batch = nodes[chunk:chunk + 100]
        paired = await asyncio.gather(*[settled(su.call, "crossbarfabriccenter.mrealm.pair_node", n.pubkey, realm,
                                                n.authid) for n in batch])
        oids += [p["oid"] for p in paired]
    stop = asyncio.Event()
    node_tasks = []
    for i, n in enumerate(nodes):
        node_tasks.append(asyncio.ensure_future(n.run(stop)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    while sum(1 for n in nodes if n.session) < len(nodes) and time.monotonic() - t0 < 300:
        await asyncio.sleep(0.5)
    online = sum(1 for n in nodes if n.session)
    print(f"{online} of {len(nodes)} nodes paired and joined in {time.monotonic() - t0:.1f} s", flush=True)
    if online < len(nodes):
        raise SystemExit("not every node joined within 300 s")
    # Through the load balancer a replica may not have applied the new realm yet.
    owner = await joined(url, realm, sign, pub)

    lat = {k: [] for k in ("get_status", "create", "delete", "list", "list_mrealms")}
    errors = []
    created = []
    serial = itertools.count()

    async def one(kind):
        t = time.perf_counter()
        try:
            if kind == "get_status":
                await owner.call("crossbarfabriccenter.remote.node.get_status", random.choice(oids))
            elif kind == "create":
                a = await owner.call("crossbarfabriccenter.mrealm.arealm.create_arealm",
                                     {"name": f"soak-{next(serial)}"})
                created.append(a["oid"])
            elif kind == "delete":
                if len(created) <= args.keep:
                    return  # nothing to delete yet: not an operation
                await owner.call("crossbarfabriccenter.mrealm.arealm.delete_arealm", created.pop(0))
            elif kind == "list":
                await owner.call("crossbarfabriccenter.mrealm.arealm.list_arealms")
            else:
                await su.call("crossbarfabriccenter.mrealm.list_mrealms")
            lat[kind].append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - counted and reported
            errors.append(f"{kind}: {e}")

    # A node is callable from every replica once its presence is committed: wait, as a user
    # would for on_node_ready, until the master lists every node online.
    deadline = time.monotonic() + 120
    while True:
        listed = await settled(owner.call, "crossbarfabriccenter.mrealm.get_nodes", "online")
        if len(listed) >= len(nodes):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(listed)} of {len(nodes)} nodes online after 120 s")
        await asyncio.sleep(0.5)
    print(f"all {len(nodes)} nodes online after {time.monotonic() - t0:.1f} s", flush=True)

    kinds = ["get_status", "create", "delete", "list", "list_mrealms"]
    replicas = int(env["REPLICAS"])
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "soak.csv")
    fields = ["t"] + [f"r{i}_{m}" for i in range(1, replicas + 1) for m in ("rss_mib", "fds", "file_mib")] + \
             [f"{k}_{q}_ms" for k in kinds for q in ("p50", "p99")] + ["ops", "errors", "nodes_online"]
    rows = []
    start = time.monotonic()
    next_sample = start + args.sample
    interval = 1.0 / args.rate
    in_flight = set()
    with open(csv_path, "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=fields)
        out.writeheader()
        for k in itertools.count():
            now = time.monotonic()
            if now - start >= args.seconds:
                break
            task = asyncio.ensure_future(one(kinds[k % len(kinds)]))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            if now >= next_sample:
                row = {"t": round(now - start, 1)}
                for i in range(1, replicas + 1):
                    for m, v in sample_replica(env, i).items():
                        row[f"r{i}_{m}"] = round(v, 2)
                ops = 0
                for kind, xs in lat.items():
                    row[f"{kind}_p50_ms"] = round(percentile(xs, 0.5) * 1000, 2)
                    row[f"{kind}_p99_ms"] = round(percentile(xs, 0.99) * 1000, 2)
                    ops += len(xs)
                    xs.clear()
                row["ops"] = ops
                row["errors"] = len(errors)
                row["nodes_online"] = sum(1 for n in nodes if n.session and not n.session.closed.done())
                out.writerow(row)
                fh.flush()
                rows.append(row)
                print(json.dumps(row), flush=True)
                next_sample += args.sample
            await asyncio.sleep(max(0.0, start + (k + 1) * interval - time.monotonic()))
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)
    stop.set()
    for n in nodes:
        if n.session:
            await n.session.ws.close()
    for t in node_tasks:
        t.cancel()
    return rows, errors, replicas, kinds


def verdict(rows, errors, replicas, args):
    problems = []
    if errors:
        problems.append(f"{len(errors)} operations failed, e.g. {errors[:3]}")
    q = max(1, len(rows) // 4)
    second, last = rows[q:2 * q], rows[-q:]
    if not second or not last:
        problems.append("too few samples to judge")
        return problems
    for i in range(1, replicas + 1):
        med = lambda rs, m: statistics.median(float(r[f"r{i}_{m}"]) for r in rs)  # noqa: E731
        if med(last, "rss_mib") > args.rss_growth * med(second, "rss_mib"):
            problems.append(f"replica {i}: RSS grew {med(second, 'rss_mib'):.1f} -> {med(last, 'rss_mib'):.1f} MiB")
        if med(last, "fds") > med(second, "fds") + 10:
            problems.append(f"replica {i}: open files grew {med(second, 'fds')} -> {med(last, 'fds')}")
        # The state legitimately grows for one exactly-once window (the answers of the last
        # 10 minutes of proposals): the file is judged on runs long enough to see it full.
        if args.seconds >= FILE_JUDGED_AFTER_S and max(float(r[f"r{i}_file_mib"]) for r in last) > \
                args.file_growth * max(float(r[f"r{i}_file_mib"]) for r in second):
            problems.append(f"replica {i}: the redb file grew past {args.file_growth}x")
    if min(int(r["nodes_online"]) for r in rows) < args.nodes:
        problems.append("nodes went offline during the run")
    return problems


def svg_chart(title, unit, series, width=900, height=220):
    """A line chart as inline SVG: series = {name: [(t, v), ...]}."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    t_max = max(t for t, _ in pts) or 1
    v_max = max(v for _, v in pts) * 1.1 or 1
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    left, bottom = 60, 30
    w, h = width - left - 10, height - bottom - 25
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="14" font-size="13">{title}</text>',
             f'<line x1="{left}" y1="{25 + h}" x2="{left + w}" y2="{25 + h}" stroke="#999"/>',
             f'<line x1="{left}" y1="25" x2="{left}" y2="{25 + h}" stroke="#999"/>']
    for frac in (0, 0.5, 1):
        y = 25 + h - frac * h
        parts.append(f'<text x="{left - 5}" y="{y + 4}" text-anchor="end">{v_max * frac:.3g}</text>')
        parts.append(f'<text x="{left + frac * w}" y="{25 + h + 15}" text-anchor="middle">{t_max * frac:.0f} s</text>')
    parts.append(f'<text x="10" y="{25 + h / 2}" transform="rotate(-90 10 {25 + h / 2})">{unit}</text>')
    for n, (name, s) in enumerate(series.items()):
        c = colors[n % len(colors)]
        path = " ".join(f"{left + t / t_max * w:.1f},{25 + h - v / v_max * h:.1f}" for t, v in s)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{left + w - 150}" y="{40 + 14 * n}" fill="{c}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def report(rows, replicas, kinds, problems, args, out_dir):
    t = [float(r["t"]) for r in rows]
    charts = []
    for metric, title, unit in (("rss_mib", "RSS per replica", "MiB"), ("fds", "Open files per replica", "fds"),
                                ("file_mib", "redb file per replica", "MiB")):
        charts.append(svg_chart(title, unit, {f"replica {i}": list(zip(t, [float(r[f"r{i}_{metric}"]) for r in rows]))
                                              for i in range(1, replicas + 1)}))
    charts.append(svg_chart("Latency p99 by operation", "ms",
                            {k: list(zip(t, [float(r[f"{k}_p99_ms"]) for r in rows])) for k in kinds}))
    charts.append(svg_chart("Latency p50 by operation", "ms",
                            {k: list(zip(t, [float(r[f"{k}_p50_ms"]) for r in rows])) for k in kinds}))
    charts.append(svg_chart("Operations per sample and nodes online", "count",
                            {"operations": list(zip(t, [float(r["ops"]) for r in rows])),
                             "nodes online": list(zip(t, [float(r["nodes_online"]) for r in rows]))}))
    state = "FLAT" if not problems else "GROWING / FAILED: " + "; ".join(problems)
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>fabric-master soak</title></head>
<body style="font-family:sans-serif">
<h1>fabric-master soak</h1>
<p>{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: 3 replicas behind haproxy, {args.nodes} simulated edge nodes,
{args.rate} management operations/s, {args.seconds} s, sampled every {args.sample} s.
Verdict: <b>{state}</b></p>
{''.join(f'<div>{c}</div>' for c in charts)}
<p>Data: soak.csv beside this page. Command: <code>scripts/soak.py --seconds {args.seconds} --nodes {args.nodes}
--rate {args.rate} --sample {args.sample}</code></p>
</body></html>"""
    with open(os.path.join(out_dir, "soak.html"), "w") as fh:
        fh.write(html)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                                  "release", "fabric-master"))
    ap.add_argument("--seconds", type=int, default=3600)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--sample", type=float, default=5.0)
    ap.add_argument("--keep", type=int, default=50, help="arealms alive at once")
    ap.add_argument("--rss-growth", type=float, default=1.15)
    ap.add_argument("--file-growth", type=float, default=1.5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--replot", metavar="CSV",
                    help="judge and plot the samples of an earlier run (its soak.csv) instead of running")
    args = ap.parse_args()
    if args.replot:
        rows = list(csv.DictReader(open(args.replot)))
        replicas = len([f for f in rows[0] if f.endswith("_rss_mib")])
        kinds = [f.removesuffix("_p50_ms") for f in rows[0] if f.endswith("_p50_ms")]
        args.seconds = int(float(rows[-1]["t"]))
        errors = ["(see the run)"] * int(rows[-1]["errors"])
        problems = verdict(rows, errors, replicas, args)
        os.makedirs(args.out, exist_ok=True)
        report(rows, replicas, kinds, problems, args, args.out)
        print("GROWING / FAILED:\n  " + "\n  ".join(problems) if problems else "FLAT")
        sys.exit(1 if problems else 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 65536)), hard))
    work = tempfile.mkdtemp(prefix="fabric-soak-")
    up = subprocess.run(["bash", os.path.join(ROOT, "cluster/up.sh"), "--dir", work, "--replicas", "3",
                         "--bin", args.bin], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        raise SystemExit(f"cluster/up.sh failed: {up.stdout}{up.stderr}")
    env = cluster_env(work)
    env["DIR"] = work
    try:
        rows, errors, replicas, kinds = asyncio.run(soak(args, env))
    finally:
        subprocess.run(["bash", os.path.join(ROOT, "cluster/down.sh"), "--dir", work, "--fast"],
                       capture_output=True, timeout=120)
    problems = verdict(rows, errors, replicas, args)
    report(rows, replicas, kinds, problems, args, args.out)
    print(f"report: {os.path.join(args.out, 'soak.html')}")
    if problems:
        print("GROWING / FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("FLAT: no growth in RSS, open files or the redb file; every operation answered")


if __name__ == "__main__":
    main()
