"""Orchestration survives a leader change: three replicas, two real edge nodes on a follower,
an application realm started on a worker group of scale 2, and the leader (where the
reconcilers run) killed -9 while the realm is STARTING. The new leader's reconciler takes over:
the realm reaches RUNNING, and no worker was started twice on any node."""

from __future__ import annotations

import asyncio
import re

import pytest

from conftest import Master, aio, free_port, http_get, join, stop_all, w
from crossbar_pypi import require_crossbar
from edges import Edge
from mgmt import AREALM, RCLUSTER, status_becomes, unique
from waiting import wait_for, wait_until

NODE = "crossbarfabriccenter.mrealm."


def metric(m: Master, name: str) -> float | None:
    try:
        status, body = http_get(f"{m.http}/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    text = body.decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


@pytest.fixture
def three(tmp_path, keys):
    require_crossbar()
    p = [free_port() for _ in range(3)]
    ms = [Master(tmp_path / "r1", keys.superuser.pub_path, config_text=None,
                 extra_args=["--node-id", "1", "--bootstrap"], peer_port=p[0])]
    ms[0].start(ready_timeout=20)
    for i in (2, 3):
        m = Master(tmp_path / f"r{i}", keys.superuser.pub_path, config_text=None,
                   extra_args=["--node-id", str(i), "--join", f"127.0.0.1:{p[0]}"], peer_port=p[i - 1])
        m.start(ready_timeout=30)
        ms.append(m)
    wait_for(lambda: any(metric(m, "fabric_raft_voters") == 3 for m in ms), 60, 0.2, what="three voters")
    edges: list[Edge] = []
    yield ms, edges
    for e in edges:
        e.kill()
    stop_all(*[m for m in ms if m.alive()])


def leader_of(ms):
    return next((m for m in ms if m.alive() and metric(m, "fabric_raft_is_leader") == 1), None)


@pytest.mark.timeout(400)
@aio(timeout=360)
async def test_a_new_leader_finishes_a_start_without_starting_a_worker_twice(three, keys, tmp_path):
    ms, edges = three
    leader = await asyncio.to_thread(wait_for, lambda: leader_of(ms), 30, 0.2, what="a leader")
    follower = next(m for m in ms if m is not leader)
    su = await join(follower, keys)
    mr = await w(su.call(NODE + "create_mrealm", {"name": unique("orch-")}))
    edges.extend(Edge(tmp_path / "edges", f"node{i}", follower.url) for i in (1, 2))
    oids = []
    for e in edges:
        n = await w(su.call(NODE + "pair_node", e.pubkey, mr["name"], e.name, {"cluster_ip": "127.0.0.1"}))
        oids.append(n["oid"])
        e.start()
    for e in edges:
        await asyncio.to_thread(e.wait_connected)
    s = await wait_until(lambda: join(follower, keys, realm=mr["name"]), 20, 0.2, what="the mrealm", retry_on=(Exception,))
    for oid in oids:
        async def online(oid=oid):
            return (await w(s.call(NODE + "get_node", oid)))["status"] == "online"
        await wait_until(online, 30, 0.2, what="node online")

    rc = await w(s.call(RCLUSTER + "create_routercluster", {"name": "rc1"}))
    for oid in oids:
        await w(s.call(RCLUSTER + "add_routercluster_node", rc["oid"], oid))
    wg = await w(s.call(RCLUSTER + "add_routercluster_workergroup", rc["oid"], {"name": "g1", "scale": 2}))
    role = await w(s.call(AREALM + "create_role", {"name": "app"}))
    await w(s.call(AREALM + "add_role_permission", role["oid"], "", {"match": "prefix", "allow_call": True}))
    a = await w(s.call(AREALM + "create_arealm", {"name": "app1"}))
    await w(s.call(AREALM + "add_arealm_role", a["oid"], role["oid"]))
    await w(s.call(RCLUSTER + "start_routercluster", rc["oid"]))
    await w(s.call(AREALM + "start_arealm", a["oid"], wg["oid"], None))
    # The leader's reconciler is at work on the nodes: kill it there.
    await asyncio.to_thread(wait_for, lambda: any('Starting router-worker "g1_' in e.log() for e in edges),
                            60, 0.05, what="a router worker starting")
    leader.proc.kill()
    leader.proc.wait(timeout=10)
    assert (await w(s.call(AREALM + "get_arealm", a["oid"])))["status"] in ("STARTING", "DEGRADED")

    got = await status_becomes(s, AREALM + "get_arealm", a["oid"], "RUNNING", timeout=120)
    assert got["orchestration"]["reason"] is None, got
    new_leader = leader_of(ms)
    assert new_leader is not None and new_leader is not leader
    # Every worker was started once, on its node.
    for e in edges:
        starts = re.findall(r'Starting router-worker "(g1_\d)" \.\. <crossbar.node.controller', e.log())
        assert len(starts) == 1 and len(set(starts)) == 1, (e.name, starts)
    for oid in oids:
        on_node = await w(s.call("crossbarfabriccenter.remote.node.get_workers", oid), 30)
        assert len([x for x in on_node if x.startswith("g1_")]) == 1, on_node
