"""Management across replicas: two real replica processes on loopback. A node joins one
replica; a user on the other manages it through remote.* (the call is routed to the replica
holding the node's session), and both replicas agree on who is online."""

import asyncio

import pytest
from autobahn.wamp.exception import ApplicationError

from conftest import Master, aio, free_port, join, w
from test_mrealm_api import call_error, closed, join_node, node_key, unique
from test_node_controller import eventually, serve_node_api
from test_tracing import Events, SimRouterWorker


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, keys):
    base = tmp_path_factory.mktemp("replicas")
    p1, p2 = free_port(), free_port()
    a = Master(base / "a", keys.superuser.pub_path, config_text=None,
               extra_args=["--node-id", "1", "--bootstrap"])
    # Master passes --peer-listen 127.0.0.1:0; a fixed address is needed to join.
    a.command = _with_peer(a.command, p1)
    a.start(ready_timeout=20)
    b = Master(base / "b", keys.superuser.pub_path, config_text=None,
               extra_args=["--node-id", "2", "--join", f"127.0.0.1:{p1}"])
    b.command = _with_peer(b.command, p2)
    b.start(ready_timeout=30)
    yield a, b
    for m in (b, a):
        m.stop()


def _with_peer(command, port):
    def cmd():
        c = command()
        i = c.index("--peer-listen")
        c[i + 1] = f"127.0.0.1:{port}"
        return c
    return cmd


@aio(timeout=60)
async def test_remote_calls_reach_a_node_on_another_replica(replicas, keys, tmp_path):
    a, b = replicas
    su = await join(a, keys)
    name = unique("rep-")
    await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}), 10)
    kp = node_key(tmp_path, unique("edge"))
    node = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node1"), 10)

    # The realm exists on replica b once b applied the change.
    async def owner_on_b():
        try:
            return await join(b, keys, realm=name)
        except Exception:
            return None

    owner = await eventually(owner_on_b, "the management realm on replica b", 10)
    ready = []
    await w(owner.subscribe(lambda *args: ready.append(args), "crossbarfabriccenter.mrealm.on_node_ready"))

    n = await join_node(a, kp)
    await serve_node_api(n, "node1")
    # b learns of the node's presence from the replicated state and announces it.
    await eventually(lambda: asyncio.sleep(0, ready), "on_node_ready on replica b", 10)
    assert ready[0][0] == node["oid"]
    assert await w(owner.call("crossbarfabriccenter.mrealm.get_nodes", "online")) == [node["oid"]]

    st = await w(owner.call("crossbarfabriccenter.remote.node.get_status", node["oid"]), 10)
    assert st["management_node_id"] == "node1", st
    e = await call_error(owner, "crossbarfabriccenter.remote.node.get_worker", node["oid"], "nope")
    assert e.error == "crossbar.error.no_such_worker", e

    # The node reconnects to b: its session on a is replaced, and calls on a now route to b.
    n2 = await join_node(b, kp)
    details = await closed(n)
    assert details.reason == "wamp.close.replaced", details
    await serve_node_api(n2, "node1")
    owner_a = await join(a, keys, realm=name)

    async def routed_to_b():
        try:
            return await owner_a.call("crossbarfabriccenter.remote.node.get_status", node["oid"])
        except Exception:
            return None

    st = await eventually(routed_to_b, "remote.node.get_status from a to the node on b", 10)
    assert st["management_node_id"] == "node1", st

    # Gone everywhere once it leaves.
    n2.leave()

    async def offline_on_a():
        return await owner_a.call("crossbarfabriccenter.mrealm.get_nodes", "offline") == [node["oid"]]

    await eventually(offline_on_a, "the node offline on replica a", 10)
    e = await call_error(owner_a, "crossbarfabriccenter.remote.node.get_status", node["oid"])
    assert e.error == "wamp.error.no_such_procedure" and "node1" in e.args[0], e


@aio(timeout=60)
async def test_traces_are_shared_by_the_replicas(replicas, keys, tmp_path):
    a, b = replicas
    p = "crossbarfabriccenter.mrealm."
    su = await join(a, keys)
    name = unique("trc-")
    await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}), 10)
    kp = node_key(tmp_path, unique("edge"))
    node = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node1"), 10)
    oid = node["oid"]

    async def owner_on_b():
        try:
            return await join(b, keys, realm=name)
        except Exception:
            return None

    owner_b = await eventually(owner_on_b, "the management realm on replica b", 10)
    owner_a = await join(a, keys, realm=name)
    events_b = await Events().watch(owner_b)
    events_a = await Events().watch(owner_a)
    n = await join_node(a, kp)
    rtr1 = await SimRouterWorker(n, "node1", "rtr1").serve()

    async def online_on_b():
        return await owner_b.call(p + "get_nodes", "online") == [oid]

    await eventually(online_on_b, "the node online on replica b", 10)

    # Created through a, seen through b at once (reads are linearizable).
    await w(owner_a.call(p + "create_trace", "t1", [[oid, "rtr1"]], {"batching_period": 100}), 10)
    assert await w(owner_b.call(p + "get_traces"), 10) == ["t1"]
    # Started through both at the same time: one wins, and the node is asked once.
    results = await w(asyncio.gather(owner_a.call(p + "start_trace", "t1"), owner_b.call(p + "start_trace", "t1"),
                                     return_exceptions=True), 20)
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, ApplicationError)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert wins[0]["failed"] == [] and len(wins[0]["started"]) == 1, wins
    assert losses[0].error == "crossbar.error.cannot_start", losses
    assert [c[0] for c in rtr1.calls].count("start_trace") == 1, rtr1.calls
    assert (await w(owner_b.call(p + "get_trace", "t1"), 10))["status"] == "running"

    # b reaches the node on a for its data; a republishes what the node sends.
    await rtr1.emit("t1", {"period": 0}, [{"seq": 0}])
    data = await w(owner_b.call(p + "get_trace_data", "t1"), 10)
    assert data == {oid: {"rtr1": {"success": True, "data": [{"seq": 0}]}}}, data
    await events_a.wait(lambda: events_a.of("on_trace_data"), "on_trace_data on replica a")
    assert events_a.of("on_trace_data")[0] == [oid, "rtr1", "t1", {"period": 0}, [{"seq": 0}]]

    stopped = await w(owner_b.call(p + "stop_trace", "t1"), 20)
    assert len(stopped["stopped"]) == 1 and stopped["failed"] == [], stopped
    assert rtr1.traces == {}
    assert await w(owner_a.call(p + "delete_trace", "t1"), 10) == {}
    assert await w(owner_b.call(p + "get_traces"), 10) == []
    # Lifecycle events are published by the replica that served the call.
    await events_b.wait(lambda: events_b.of("on_trace_stopped"), "on_trace_stopped on replica b")
    await events_a.wait(lambda: events_a.of("on_trace_deleted"), "on_trace_deleted on replica a")


async def _owner_on(m, keys, name):
    async def attempt():
        try:
            return await join(m, keys, realm=name)
        except Exception:
            return None

    return await eventually(attempt, f"management realm {name} on {m.url}", 10)


def _collect(session, topic):
    got = []
    return got, session.subscribe(lambda *args, **kw: got.append(args), topic)


@aio(timeout=60)
async def test_publications_reach_subscribers_on_every_replica(replicas, keys, tmp_path):
    from autobahn.wamp.types import PublishOptions

    a, b = replicas
    # An ordinary publication on the global realm: once on each replica, never echoed back.
    pub_a, sub_a, sub_b = await join(a, keys), await join(a, keys), await join(b, keys)
    topic = f"com.example.{unique('relay')}"
    got_a, f = _collect(sub_a, topic)
    await w(f)
    got_b, f = _collect(sub_b, topic)
    await w(f)
    for i in range(20):
        await w(pub_a.publish(topic, i, options=PublishOptions(acknowledge=True)))
    await eventually(lambda: asyncio.sleep(0, len(got_b) >= 20), "20 events on replica b", 10)
    await asyncio.sleep(0.3)
    # In order, once each, on both replicas.
    assert [g[0] for g in got_a] == list(range(20)), got_a
    assert [g[0] for g in got_b] == list(range(20)), got_b

    # A node on a: its events, republished under remote.*, and its heartbeats reach b.
    name = unique("rel-")
    await w(pub_a.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}), 10)
    kp = node_key(tmp_path, unique("edge"))
    node = await w(pub_a.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node1"), 10)
    owner_b = await _owner_on(b, keys, name)
    owner_a = await _owner_on(a, keys, name)
    started_b, f = _collect(owner_b, "crossbarfabriccenter.remote.router.on_router_transport_started")
    await w(f)
    created_b, f = _collect(owner_b, "crossbarfabriccenter.mrealm.arealm.on_arealm_created")
    await w(f)
    n = await join_node(a, kp)
    await serve_node_api(n, "node1")
    await eventually(
        lambda: owner_b.call("crossbarfabriccenter.mrealm.get_nodes", "online"), "node1 online on b", 10
    )
    await w(n.publish("crossbarfabriccenter.node.node1.worker.rtr1.on_router_transport_started",
                      {"id": "tp1"}, options=PublishOptions(acknowledge=True)))
    await eventually(lambda: asyncio.sleep(0, started_b), "the republished node event on b", 10)
    assert started_b == [("node1", "rtr1", {"id": "tp1"})], started_b

    await w(n.publish("crossbarfabriccenter.node.on_heartbeat", "node1",
                      {"seq": 41, "timestamp": 1_700_000_000_000_000_000, "workers": {"router": 1}},
                      options=PublishOptions(acknowledge=True)))

    async def beat_on_b():
        got = await owner_b.call("crossbarfabriccenter.mrealm.get_node", node["oid"])
        return got if got.get("heartbeat") == 41 else None

    info = await eventually(beat_on_b, "the heartbeat in get_node on replica b", 10)
    assert info["status"] == "online", info

    # A management event of a call served by a reaches b's subscribers once.
    arealm = await w(owner_a.call("crossbarfabriccenter.mrealm.arealm.create_arealm", {"name": unique("ar")}), 10)
    await eventually(lambda: asyncio.sleep(0, created_b), "on_arealm_created on replica b", 10)
    await asyncio.sleep(0.3)
    assert len(created_b) == 1 and created_b[0][0]["oid"] == arealm["oid"], created_b
    for s in (pub_a, sub_a, sub_b, owner_a, owner_b, n):
        s.leave()
