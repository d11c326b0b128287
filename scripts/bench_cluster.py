#!/usr/bin/env python3
"""Benchmarks of the replicated state (issue 3), on loopback with fsync on.

Runs the release binary as real replica processes:
  1. fsync floor of the disk under the data dirs;
  2. 3 replicas, 100 concurrent proposers: committed writes/s and commit latency; then
     linearizable reads on the leader and on a follower;
  3. leader killed with SIGKILL: time until the first write commits on the new leader;
  4. a state of 100,000 objects: time for a fresh replica to install the snapshot, and RSS.

Usage: python3 scripts/bench_cluster.py [--bin PATH] [--writes N]
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    def __init__(self, bin_path, work, node_id, formation):
        self.bin = bin_path
        self.id = node_id
        self.ws = free_port()
        self.peer_port = free_port()
        self.dir = os.path.join(work, f"replica{node_id}")
        self.formation = formation
        self.proc = None

    @property
    def peer(self):
        return f"127.0.0.1:{self.peer_port}"

    def start(self):
        log = open(self.dir + ".log", "ab")
        self.proc = subprocess.Popen(
            [self.bin, "start", "--listen", f"127.0.0.1:{self.ws}", "--peer-listen", self.peer,
             "--node-id", str(self.id), "--data-dir", self.dir] + self.formation,
            stdout=subprocess.DEVNULL, stderr=log)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


def status(bin_path, peer):
    try:
        out = subprocess.run([bin_path, "cluster", "--peer", peer, "status"],
                             capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def wait_for(bin_path, peer, what, ok, timeout=60.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = status(bin_path, peer)
        if s is not None and ok(s):
            return s
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what} on {peer}")


def bench(bin_path, *args):
    out = subprocess.run([bin_path, "bench"] + list(args), capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    line = out.stdout.strip().splitlines()[-1]
    print(line, flush=True)
    return line


def field(line, name):
    for part in line.replace("->", " ").split():
        if part.startswith(name + "="):
            return part.split("=", 1)[1].rstrip("us")
    raise KeyError(name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "fabric-master"))
    ap.add_argument("--writes", type=int, default=50_000)
    ap.add_argument("--objects", type=int, default=100_000)
    args = ap.parse_args()
    b = args.bin
    work = tempfile.mkdtemp(prefix="fabric-bench-cluster-")
    replicas = []
    try:
        print("== fsync floor", flush=True)
        bench(b, "--mode", "fsync", "--dir", work, "--count", "2000", "--label", "fsync-4KiB")

        print("== 3 replicas, 100 concurrent proposers", flush=True)
        r1 = Replica(b, work, 1, ["--bootstrap"])
        r1.start()
        replicas.append(r1)
        wait_for(b, r1.peer, "a leader", lambda s: s["leader"] == 1)
        for i in (2, 3):
            r = Replica(b, work, i, ["--join", r1.peer])
            r.start()
            replicas.append(r)
        wait_for(b, r1.peer, "3 voters", lambda s: s["voters"] == [1, 2, 3])
        line = bench(b, "--mode", "raft", "--peer", r1.peer, "--inflight", "100", "--count",
                     str(args.writes), "--label", "raft-3-replicas-via-leader")
        bench(b, "--mode", "raft", "--peer", replicas[1].peer, "--inflight", "100", "--count",
              str(args.writes // 5), "--label", "raft-3-replicas-via-follower")
        written = args.writes + args.writes // 5
        print("== linearizable reads, 100 in flight", flush=True)
        bench(b, "--mode", "raft-read", "--peer", r1.peer, "--inflight", "100", "--count", "50000",
              "--label", "read-on-leader")
        bench(b, "--mode", "raft-read", "--peer", replicas[1].peer, "--inflight", "100", "--count",
              "50000", "--label", "read-on-follower")

        print("== leader loss to first committed write", flush=True)
        leader = status(b, r1.peer)["leader"]
        old = next(r for r in replicas if r.id == leader)
        survivor = next(r for r in replicas if r.id != leader)
        old.kill()
        t0 = time.monotonic()
        bench(b, "--mode", "raft", "--peer", survivor.peer, "--inflight", "1", "--count", "1",
              "--label", "first-write-after-leader-loss")
        failover_ms = (time.monotonic() - t0) * 1000
        print(f"leader {leader} killed -> first write committed after {failover_ms:.0f} ms",
              flush=True)
        written += 1
        old.start()
        wait_for(b, old.peer, "old leader back", lambda s: s["leader"] is not None)

        print(f"== snapshot install of {args.objects} objects", flush=True)
        if written < args.objects:
            bench(b, "--mode", "raft", "--peer", survivor.peer, "--inflight", "100", "--count",
                  str(args.objects - written), "--label", "fill")
        s = wait_for(b, survivor.peer, "leader known", lambda s: s["leader"] is not None)
        leader_peer = s["leader_addr"]
        target = status(b, leader_peer)["last_applied"]
        count = subprocess.run([b, "state", "--peer", leader_peer, "count", "organization"],
                               capture_output=True, text=True).stdout.strip()
        r4 = Replica(b, work, 4, ["--join", leader_peer])
        t0 = time.monotonic()
        r4.start()
        replicas.append(r4)
        s4 = wait_for(b, r4.peer, "snapshot installed and caught up",
                      lambda s: (s["last_applied"] or 0) >= target, timeout=120, interval=0.02)
        install_s = time.monotonic() - t0
        print(f"fresh replica: {count} objects, snapshot at index {s4['snapshot']}, caught up "
              f"to index {target} in {install_s:.2f} s (process start included)", flush=True)
        for r in replicas:
            if r.proc and r.proc.poll() is None:
                print(f"replica {r.id} RSS {r.rss_mib():.1f} MiB", flush=True)
    finally:
        for r in replicas:
            r.kill()


if __name__ == "__main__":
    sys.exit(main())
