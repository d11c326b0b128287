"""Management across replicas: two real replica processes on loopback. A node joins one
replica; a user on the other manages it through remote.* (the call is routed to the replica
holding the node's session), and both replicas agree on who is online."""

import asyncio
import itertools

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from conftest import aio, join, start_two_replicas, stop_all, w
from mgmt import call_error, closed, join_node, join_when_realm_exists, node_key, unique
from simnode import SimRouterWorker, TracingEvents, serve_node_api
from waiting import wait_until

ACK = PublishOptions(acknowledge=True)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, keys):
    a, b = start_two_replicas(tmp_path_factory.mktemp("replicas"), keys)
    yield a, b
    stop_all(a, b)


def _not_routed_yet(e: ApplicationError) -> bool:
    """While the replicas catch up with a node that moved, a call finds no node to route to."""
    return e.error == "wamp.error.no_such_procedure"


@aio(timeout=60)
async def test_remote_calls_reach_a_node_on_another_replica(replicas, keys, tmp_path):
    a, b = replicas
    su = await join(a, keys)
    name = unique("rep-")
    await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}), 10)
    kp = node_key(tmp_path, unique("edge"))
    node = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node1"), 10)

    # The realm exists on replica b once b applied the change.
    owner = await join_when_realm_exists(b, keys, name)
    ready = []
    await w(owner.subscribe(lambda *args: ready.append(args), "crossbarfabriccenter.mrealm.on_node_ready"))

    n = await join_node(a, kp)
    await serve_node_api(n, "node1")
    # b learns of the node's presence from the replicated state and announces it.
    await wait_until(lambda: ready, 10, what="on_node_ready on replica b")
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

    st = await wait_until(
        lambda: owner_a.call("crossbarfabriccenter.remote.node.get_status", node["oid"]),
        10, interval=0.05, what="remote.node.get_status from a to the node on b",
        retry_on=(ApplicationError,), retry_if=_not_routed_yet,
    )
    assert st["management_node_id"] == "node1", st

    # Gone everywhere once it leaves.
    n2.leave()

    async def offline_on_a():
        return await owner_a.call("crossbarfabriccenter.mrealm.get_nodes", "offline") == [node["oid"]]

    await wait_until(offline_on_a, 10, interval=0.05, what="the node offline on replica a")
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

    owner_b = await join_when_realm_exists(b, keys, name)
    owner_a = await join(a, keys, realm=name)
    events_b = await TracingEvents().watch(owner_b)
    events_a = await TracingEvents().watch(owner_a)
    n = await join_node(a, kp)
    rtr1 = await SimRouterWorker(n, "node1", "rtr1").serve()

    async def online_on_b():
        return await owner_b.call(p + "get_nodes", "online") == [oid]

    await wait_until(online_on_b, 10, interval=0.05, what="the node online on replica b")

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


def _collect(session, topic):
    got = []
    return got, session.subscribe(lambda *args, **kw: got.append(args), topic)


def _before(got, marker):
    """The events in ``got`` up to (without) the first one equal to ``marker``."""
    return list(itertools.takewhile(lambda g: g != marker, got))


@aio(timeout=60)
async def test_publications_reach_subscribers_on_every_replica(replicas, keys, tmp_path):
    a, b = replicas
    # An ordinary publication on the global realm: once on each replica, never echoed back.
    pub_a, sub_a, sub_b = await join(a, keys), await join(a, keys), await join(b, keys)
    pub_b = await join(b, keys)
    topic = f"com.example.{unique('relay')}"
    got_a, f = _collect(sub_a, topic)
    await w(f)
    got_b, f = _collect(sub_b, topic)
    await w(f)
    for i in range(20):
        await w(pub_a.publish(topic, i, options=ACK))
    # Markers instead of a pause. END_A, from the same publisher, follows the 20 on each path
    # they take: to sub_a on a, and relayed from a to sub_b on b; a duplicate on either comes
    # before it. An echo of them from b back to a would travel b -> a: END_B, published on b
    # once b has delivered END_A, follows that path and would come after such an echo.
    end_a, end_b = ("end-a",), ("end-b",)
    await w(pub_a.publish(topic, *end_a, options=ACK))
    await wait_until(lambda: end_a in got_a and end_a in got_b, 10, what=lambda: f"end-a on both replicas: {got_a!r} {got_b!r}")
    await w(pub_b.publish(topic, *end_b, options=ACK))
    await wait_until(lambda: end_b in got_a, 10, what=lambda: f"end-b on replica a: {got_a!r}")
    on_a = [g for g in _before(got_a, end_b) if g != end_a]
    on_b = _before(got_b, end_a)
    # In order, once each, on both replicas.
    assert [g[0] for g in on_a] == list(range(20)), got_a
    assert [g[0] for g in on_b] == list(range(20)), got_b

    # A node on a: its events, republished under remote.*, and its heartbeats reach b.
    name = unique("rel-")
    await w(pub_a.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}), 10)
    kp = node_key(tmp_path, unique("edge"))
    node = await w(pub_a.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node1"), 10)
    owner_b = await join_when_realm_exists(b, keys, name)
    owner_a = await join_when_realm_exists(a, keys, name)
    started_b, f = _collect(owner_b, "crossbarfabriccenter.remote.router.on_router_transport_started")
    await w(f)
    created_b, f = _collect(owner_b, "crossbarfabriccenter.mrealm.arealm.on_arealm_created")
    await w(f)
    n = await join_node(a, kp)
    await serve_node_api(n, "node1")
    await wait_until(
        lambda: owner_b.call("crossbarfabriccenter.mrealm.get_nodes", "online"), 10, interval=0.05,
        what="node1 online on b",
    )
    await w(n.publish("crossbarfabriccenter.node.node1.worker.rtr1.on_router_transport_started",
                      {"id": "tp1"}, options=ACK))
    await wait_until(lambda: started_b, 10, what="the republished node event on b")
    assert started_b == [("node1", "rtr1", {"id": "tp1"})], started_b

    await w(n.publish("crossbarfabriccenter.node.on_heartbeat", "node1",
                      {"seq": 41, "timestamp": 1_700_000_000_000_000_000, "workers": {"router": 1}},
                      options=ACK))

    async def beat_on_b():
        got = await owner_b.call("crossbarfabriccenter.mrealm.get_node", node["oid"])
        return got if got.get("heartbeat") == 41 else None

    info = await wait_until(beat_on_b, 10, interval=0.05, what="the heartbeat in get_node on replica b")
    assert info["status"] == "online", info

    # A management event of a call served by a reaches b's subscribers once.
    arealm = await w(owner_a.call("crossbarfabriccenter.mrealm.arealm.create_arealm", {"name": unique("ar")}), 10)
    # Marker: the event of a second call served by a, after the first; it reaches b the same
    # way (relayed from a, or published by b as it applies the change in log order), so a
    # second copy of the first event would come before it.
    marker = await w(owner_a.call("crossbarfabriccenter.mrealm.arealm.create_arealm", {"name": unique("ar")}), 10)
    await wait_until(lambda: any(c[0]["oid"] == marker["oid"] for c in created_b), 10,
                     what=lambda: f"the marker's on_arealm_created on replica b: {created_b!r}")
    before = list(itertools.takewhile(lambda c: c[0]["oid"] != marker["oid"], created_b))
    assert len(before) == 1 and before[0][0]["oid"] == arealm["oid"], created_b
    for s in (pub_a, pub_b, sub_a, sub_b, owner_a, owner_b, n):
        s.leave()


@aio
async def test_pending_activation_codes_per_email_are_limited_across_replicas(replicas, tmp_path):
    """Each replica rate-limits the codes it issues itself; the pending codes of one e-mail
    are also limited in the replicated state, so a second replica does not double them."""
    from conftest import FABRIC_REALM, join_expect_abort
    from users import new_key

    a, b = replicas
    email = "zoe@example.com"
    reasons = []
    # 5 codes per e-mail by default: through a then b, the sixth is refused on b although b
    # issued only one itself.
    for i, m in enumerate([a, a, a, a, b, b]):
        kp = new_key(tmp_path, f"zoe{i}")
        details = await join_expect_abort(
            m, key=kp, realm=FABRIC_REALM, authid=email, authextra={"pubkey": kp.pubkey_hex}
        )
        reasons.append(details.reason)
    assert reasons == ["fabric.auth-failed.new-user-auth-code-sent"] * 5 + ["fabric.auth-failed.rate-limited"], reasons
