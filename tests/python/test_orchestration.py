"""Orchestration with real, unmodified Crossbar.io edge nodes (PyPI): two `crossbar edge start`
nodes paired with a management realm, a web cluster, a router cluster with a worker group of
scale 2, and an application realm started on them. Application clients (autobahn) join through
the web cluster's proxy port and call and publish across the two router workers (through the
router links). Then stop/delete/start again, and kill -9 of an edge node (DEGRADED) and its
restart (RUNNING).

The tests build on each other (one master, two edge nodes) and run in order."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions

from conftest import aio, free_port, join, w
from crossbar_pypi import require_crossbar
from edges import Aborted, Edge, app_client, leave
from mgmt import AREALM, RCLUSTER, WCLUSTER, expect_error, status_becomes, unique
from waiting import wait_until

RUNNING_TIMEOUT = 120
NODE = "crossbarfabriccenter.mrealm."
REMOTE = "crossbarfabriccenter.remote."

ST = SimpleNamespace()


@pytest.fixture(scope="module")
def edges(master, keys, tmp_path_factory):
    require_crossbar()
    base = tmp_path_factory.mktemp("edges")
    nodes = [Edge(base, f"node{i}", master.url) for i in (1, 2)]
    yield nodes
    for n in nodes:
        n.kill()


async def owner(master, keys):
    return await join(master, keys, realm=ST.mrealm)


async def wait_status(s, get_uri, oid, status, timeout=RUNNING_TIMEOUT):
    return await status_becomes(s, get_uri, oid, status, timeout=timeout)


@pytest.mark.timeout(230)
@aio(timeout=200)
async def test_nodes_pair_with_their_cluster_ip_and_come_online(master, keys, edges):
    su = await join(master, keys)
    m = await w(su.call(NODE + "create_mrealm", {"name": unique("orch-")}))
    ST.mrealm = m["name"]
    n1, n2 = edges
    # The cluster IP comes at pairing (authextra), or later with modify_node.
    a = await w(su.call(NODE + "pair_node", n1.pubkey, ST.mrealm, "node1", {"cluster_ip": "127.0.0.1"}))
    assert a["cluster_ip"] == "127.0.0.1", a
    b = await w(su.call(NODE + "pair_node", n2.pubkey, ST.mrealm, "node2"))
    assert b["cluster_ip"] is None, b
    await expect_error(su, "wamp.error.invalid_argument", NODE + "modify_node", b["oid"], {"cluster_ip": "not-an-ip"})
    b = await w(su.call(NODE + "modify_node", b["oid"], {"cluster_ip": "127.0.0.1"}))
    assert b["cluster_ip"] == "127.0.0.1", b
    ST.nodes = {"node1": a["oid"], "node2": b["oid"]}
    for e in edges:
        e.start()
    for e in edges:
        await asyncio.to_thread(e.wait_connected)
    s = await owner(master, keys)
    for name, oid in ST.nodes.items():
        await wait_until(lambda oid=oid: _online(s, oid), 30, 0.2, what=f"{name} online")


async def _online(s, oid):
    return (await w(s.call(NODE + "get_node", oid)))["status"] == "online"


@pytest.mark.timeout(330)
@aio(timeout=300)
async def test_an_application_realm_runs_across_two_nodes_behind_a_web_cluster(master, keys, edges):
    s = await owner(master, keys)
    ST.port = free_port()
    wc = await w(s.call(WCLUSTER + "create_webcluster", {
        "name": "wc1", "tcp_port": ST.port, "tcp_interface": "127.0.0.1"}))
    await w(s.call(WCLUSTER + "add_webcluster_node", wc["oid"], ST.nodes["node1"], {"parallel": 1}))
    await w(s.call(WCLUSTER + "add_webcluster_service", wc["oid"], "ws", {
        "type": "websocket", "serializers": ["cbor", "json"],
        "auth": {"anonymous": {"type": "static", "role": "app"}}}))
    rc = await w(s.call(RCLUSTER + "create_routercluster", {"name": "rc1"}))
    for oid in ST.nodes.values():
        await w(s.call(RCLUSTER + "add_routercluster_node", rc["oid"], oid, {"softlimit": 4, "hardlimit": 8}))
    # `g1`: a name the reference accepts (its workers are g1_1 and g1_2).
    wg = await w(s.call(RCLUSTER + "add_routercluster_workergroup", rc["oid"], {"name": "g1", "scale": 2}))
    st = await w(s.call(RCLUSTER + "stat_routercluster_workergroup", rc["oid"], wg["oid"]))
    placed = {p["worker_name"]: p["node_oid"] for p in st["placements"]}
    assert sorted(placed) == ["g1_1", "g1_2"], st
    assert set(placed.values()) == set(ST.nodes.values()), f"placements not spread over both nodes: {st}"

    role = await w(s.call(AREALM + "create_role", {"name": "app"}))
    # Caller and publisher are not disclosed by the role: across router workers the master
    # discloses them anyway (the edge's links forward nothing they cannot attribute).
    await w(s.call(AREALM + "add_role_permission", role["oid"], "", {
        "match": "prefix", "allow_call": True, "allow_register": True, "allow_publish": True,
        "allow_subscribe": True}))
    a = await w(s.call(AREALM + "create_arealm", {"name": "app1"}))
    await w(s.call(AREALM + "add_arealm_role", a["oid"], role["oid"]))
    alice = await w(s.call(AREALM + "add_principal", a["oid"], {"authid": "alice", "role_oid": role["oid"]}))
    await w(s.call(AREALM + "add_principal_credential", a["oid"], alice["oid"], {
        "authmethod": "ticket", "realm": "app1", "authid": "alice", "authconfig": {"ticket": "alice-secret"}}))
    ST.wc, ST.rc, ST.wg, ST.arealm, ST.role = wc["oid"], rc["oid"], wg["oid"], a["oid"], role["oid"]

    await w(s.call(WCLUSTER + "start_webcluster", wc["oid"]))
    await w(s.call(RCLUSTER + "start_routercluster", rc["oid"]))
    await w(s.call(AREALM + "start_arealm", a["oid"], wg["oid"], wc["oid"]))
    await wait_status(s, WCLUSTER + "get_webcluster", wc["oid"], "RUNNING")
    await wait_status(s, RCLUSTER + "get_routercluster", rc["oid"], "RUNNING")
    got = await wait_status(s, AREALM + "get_arealm", a["oid"], "RUNNING")
    assert got["orchestration"]["reason"] is None, got

    # What runs where, from the master and from the nodes themselves.
    workers = await w(s.call(AREALM + "list_router_workers", a["oid"]))
    assert sorted(x["worker_name"] for x in workers) == ["g1_1", "g1_2"], workers
    assert all(isinstance(x["port"], int) and x["state"] == "running" for x in workers), workers
    for name, oid in ST.nodes.items():
        on_node = await w(s.call(REMOTE + "node.get_workers", oid), 30)
        worker = next(x["worker_name"] for x in workers if x["node_oid"] == oid)
        assert worker in on_node, (name, on_node)
    # The edge's worker stats are a map with integer keys; the node's session survives them.
    stats = await w(s.call(REMOTE + "node.get_worker", ST.nodes["node1"], "g1_1" if placed["g1_1"] == ST.nodes["node1"] else "g1_2", True), 30)
    assert stats["status"] == "started", stats
    assert await _online(s, ST.nodes["node1"])
    stat = await w(s.call(AREALM + "stat_arealm", a["oid"]))
    assert stat["stats"]["router_workers"] == 2 and stat["status"] == "RUNNING", stat
    assert stat["stats"]["router_workers_running"] == 2, stat
    wst = await w(s.call(WCLUSTER + "stat_webcluster", wc["oid"]))
    assert wst["stats"]["proxy_workers_running"] == 1 and wst["stats"]["nodes_online"] == 1, wst
    assert wst["proxy_workers"][0]["port"] == ST.port and wst["proxy_workers"][0]["state"] == "running", wst
    gst = await w(s.call(RCLUSTER + "stat_routercluster_workergroup", rc["oid"], wg["oid"]))
    assert all(p["arealms"]["app1"]["state"] == "running" for p in gst["placements"]), gst
    await _traffic_across_workers(ST.port)


async def _clients_on_two_workers(port, realm):
    """Joins clients through the proxy until two sit on different router workers (the
    proxy picks a connection round-robin); bounded. On app1 the first is alice (ticket)."""
    if realm == "app1":
        first = await app_client(port, realm, ["ticket"], authid="alice", secret="alice-secret")
        assert first.joined.result().authid == "alice"
    else:
        first = await app_client(port, realm, ["anonymous"])
    assert first.joined.result().authrole == "app"
    spare = []
    for _ in range(6):
        c = await app_client(port, realm, ["anonymous"])
        if c.worker != first.worker:
            for x in spare:
                await leave(x)
            return first, c
        spare.append(c)
    raise AssertionError(f"every client landed on {first.worker}")


async def _traffic_across_workers(port, realm="app1"):
    # A worker the reconciler has just started again may not listen yet: the proxy then
    # refuses the client (authentication_failed); a client tries again, as a user's would.
    a, b = await wait_until(lambda: _clients_on_two_workers(port, realm), 30, 0.5,
                            what="two clients on different router workers", retry_on=(Aborted,))
    assert {a.worker, b.worker} == {"g1_1", "g1_2"}, (a.worker, b.worker)
    await w(a.register(lambda x, y, details=None: [x + y, details.caller], "com.example.add2",
                       options=RegisterOptions(details_arg="details")))
    # The registration reaches the other worker over the router link.
    async def call():
        try:
            return await b.call("com.example.add2", 2, 3)
        except ApplicationError as e:
            if e.error == "wamp.error.no_such_procedure":
                return None
            raise
    total, caller = await wait_until(call, 20, 0.2, what="a call across router workers")
    assert total == 5 and caller is not None, (total, caller)
    got = asyncio.get_running_loop().create_future()
    await w(b.subscribe(lambda msg: got.done() or got.set_result(msg), "com.example.topic"))

    async def published():
        a.publish("com.example.topic", "hello")
        try:
            return await asyncio.wait_for(asyncio.shield(got), 0.5)
        except asyncio.TimeoutError:
            return None
    assert await wait_until(published, 20, 0.1, what="an event across router workers") == "hello"
    await leave(a)
    await leave(b)


@pytest.mark.timeout(330)
@aio(timeout=300)
async def test_stop_removes_the_workers_then_delete_and_start_again(master, keys, edges):
    s = await owner(master, keys)
    stopping = await w(s.call(AREALM + "stop_arealm", ST.arealm))
    assert stopping["status"] == "STOPPING", stopping
    await wait_status(s, AREALM + "get_arealm", ST.arealm, "STOPPED")
    for oid in ST.nodes.values():
        left = await w(s.call(REMOTE + "node.get_workers", oid), 30)
        assert not [x for x in left if x.startswith("g1_")], left
    with pytest.raises(Aborted):
        await app_client(ST.port, "app1", ["anonymous"], timeout=10)
    # Started again: everything comes back.
    await w(s.call(AREALM + "start_arealm", ST.arealm, ST.wg, ST.wc))
    await wait_status(s, AREALM + "get_arealm", ST.arealm, "RUNNING")
    await _traffic_across_workers(ST.port)


@pytest.mark.timeout(430)
@aio(timeout=400)
async def test_a_killed_edge_node_degrades_the_realm_until_it_is_back(master, keys, edges):
    s = await owner(master, keys)
    n2 = edges[1]
    n2.kill()
    got = await wait_status(s, AREALM + "get_arealm", ST.arealm, "DEGRADED", timeout=60)
    assert "node2" in got["orchestration"]["reason"], got
    await wait_status(s, RCLUSTER + "get_routercluster", ST.rc, "DEGRADED", timeout=30)
    mark = n2.log_size()
    n2.start()
    await asyncio.to_thread(n2.wait_connected, mark)
    await wait_status(s, AREALM + "get_arealm", ST.arealm, "RUNNING")
    await wait_status(s, RCLUSTER + "get_routercluster", ST.rc, "RUNNING", timeout=30)
    await _traffic_across_workers(ST.port)


@pytest.mark.timeout(330)
@aio(timeout=300)
async def test_a_second_realm_on_the_same_workers_behind_its_own_web_cluster(master, keys, edges):
    """A web cluster on node2 (its own port: both nodes share 127.0.0.1) and a second
    application realm on the same worker group: each realm has its own transport on the
    workers, both run, and a proxy routes only the realms started behind it."""
    s = await owner(master, keys)
    ST.port2 = free_port()
    wc2 = await w(s.call(WCLUSTER + "create_webcluster", {
        "name": "wc2", "tcp_port": ST.port2, "tcp_interface": "127.0.0.1"}))
    await w(s.call(WCLUSTER + "add_webcluster_node", wc2["oid"], ST.nodes["node2"]))
    await w(s.call(WCLUSTER + "add_webcluster_service", wc2["oid"], "ws", {
        "type": "websocket", "serializers": ["cbor"], "auth": {"anonymous": {"type": "static", "role": "app"}}}))
    a2 = await w(s.call(AREALM + "create_arealm", {"name": "app2"}))
    await w(s.call(AREALM + "add_arealm_role", a2["oid"], ST.role))
    await w(s.call(WCLUSTER + "start_webcluster", wc2["oid"]))
    await w(s.call(AREALM + "start_arealm", a2["oid"], ST.wg, wc2["oid"]))
    await wait_status(s, WCLUSTER + "get_webcluster", wc2["oid"], "RUNNING")
    await wait_status(s, AREALM + "get_arealm", a2["oid"], "RUNNING")
    ports = {x["port"] for x in await w(s.call(AREALM + "list_router_workers", a2["oid"]))}
    ports1 = {x["port"] for x in await w(s.call(AREALM + "list_router_workers", ST.arealm))}
    assert not ports & ports1, (ports, ports1)
    await _traffic_across_workers(ST.port2, "app2")
    await _traffic_across_workers(ST.port, "app1")
    # wc2's proxy has no route into app1.
    with pytest.raises(Aborted):
        await app_client(ST.port2, "app1", ["anonymous"], timeout=10)
    # Stopping app2 stops the shared workers (the edge cannot stop one realm); app1's
    # reconciler starts them again.
    await w(s.call(AREALM + "stop_arealm", a2["oid"]))
    await wait_status(s, AREALM + "get_arealm", a2["oid"], "STOPPED")
    await w(s.call(WCLUSTER + "stop_webcluster", wc2["oid"]))
    await wait_status(s, WCLUSTER + "get_webcluster", wc2["oid"], "STOPPED")
    await wait_status(s, AREALM + "get_arealm", ST.arealm, "RUNNING")
    await _traffic_across_workers(ST.port, "app1")
    await w(s.call(AREALM + "delete_arealm", a2["oid"]))
    await w(s.call(WCLUSTER + "delete_webcluster", wc2["oid"]))


@pytest.mark.timeout(330)
@aio(timeout=300)
async def test_workers_changed_by_hand_and_changed_roles_are_reconciled(master, keys, edges):
    s = await owner(master, keys)
    workers = {x["worker_name"]: x for x in await w(s.call(AREALM + "list_router_workers", ST.arealm))}
    victim = workers["g1_1"]
    # Someone stops a managed router worker on its node: it is started again, on its port.
    await w(s.call(REMOTE + "node.stop_worker", victim["node_oid"], "g1_1"), 30)

    async def back():
        try:
            return "g1_1" in await w(s.call(REMOTE + "node.get_workers", victim["node_oid"]), 30)
        except ApplicationError:
            return False
    await wait_until(back, 60, 0.5, what="g1_1 started again on its node")
    await wait_status(s, AREALM + "get_arealm", ST.arealm, "RUNNING")
    again = {x["worker_name"]: x for x in await w(s.call(AREALM + "list_router_workers", ST.arealm))}
    assert again["g1_1"]["port"] == victim["port"], (victim, again["g1_1"])
    await _traffic_across_workers(ST.port)

    # A permission added to a running realm's role reaches the workers without a restart.
    await w(s.call(AREALM + "add_role_permission", ST.role, "com.example.extra", {
        "match": "exact", "allow_call": True}))

    async def applied():
        for name, x in again.items():
            role = await w(s.call(REMOTE + "router.get_router_realm_role", x["node_oid"], name,
                                  x["transport"].replace("tnp_", "rlm_"), "rle_" + ST.role.replace("-", "")[:8]), 30)
            if not any(p["uri"] == "com.example.extra" for p in role["config"]["permissions"]):
                return False
        return True
    await wait_until(applied, 60, 0.5, what="the new permission on both router workers")
    await wait_status(s, AREALM + "get_arealm", ST.arealm, "RUNNING")

    # A principal added to a running realm can join through the proxy (its service is
    # replaced with the new principals).
    bob = await w(s.call(AREALM + "add_principal", ST.arealm, {"authid": "bob", "role_oid": ST.role}))
    await w(s.call(AREALM + "add_principal_credential", ST.arealm, bob["oid"], {
        "authmethod": "wampcra", "realm": "app1", "authid": "bob", "authconfig": {"secret": "bob-secret"}}))
    c = await wait_until(lambda: app_client(ST.port, "app1", ["wampcra"], authid="bob", secret="bob-secret"),
                         60, 0.5, what="bob joining with WAMP-CRA", retry_on=(Aborted, OSError))
    assert c.joined.result().authid == "bob" and c.joined.result().authrole == "app"
    await leave(c)
    with pytest.raises(Aborted):
        await app_client(ST.port, "app1", ["wampcra"], authid="bob", secret="wrong", timeout=10)


@pytest.mark.timeout(330)
@aio(timeout=300)
async def test_everything_stops_and_is_deleted(master, keys, edges):
    s = await owner(master, keys)
    await w(s.call(AREALM + "stop_arealm", ST.arealm))
    await w(s.call(WCLUSTER + "stop_webcluster", ST.wc))
    await w(s.call(RCLUSTER + "stop_routercluster", ST.rc))
    await wait_status(s, AREALM + "get_arealm", ST.arealm, "STOPPED")
    await wait_status(s, WCLUSTER + "get_webcluster", ST.wc, "STOPPED")
    await wait_status(s, RCLUSTER + "get_routercluster", ST.rc, "STOPPED")
    for oid in ST.nodes.values():
        on_node = await w(s.call(REMOTE + "node.get_workers", oid), 30)
        assert not [x for x in on_node if x.startswith("cpw-") or x.startswith("g1_")], on_node
    # A worker under a managed name that nothing wants (as a node cut off during a stop
    # would still run) is stopped by the sweep; a worker of the operator's own is left.
    placed = {x["worker_name"]: x["node_oid"] for x in await w(s.call(AREALM + "list_router_workers", ST.arealm))}
    n1 = placed["g1_1"]
    await w(s.call(REMOTE + "node.start_worker", n1, "g1_1", "router", {}), 60)
    await w(s.call(REMOTE + "node.start_worker", n1, "mine1", "router", {}), 60)

    async def swept():
        running = await w(s.call(REMOTE + "node.get_workers", n1), 30)
        return "g1_1" not in running and running
    running = await wait_until(swept, 40, 0.5, what="the sweep to stop g1_1")
    assert "mine1" in running, running
    await w(s.call(REMOTE + "node.stop_worker", n1, "mine1"), 30)
    await w(s.call(AREALM + "delete_arealm", ST.arealm))
    await w(s.call(WCLUSTER + "delete_webcluster", ST.wc))
    await expect_error(s, "crossbar.error.no_such_object", AREALM + "get_arealm", ST.arealm)
