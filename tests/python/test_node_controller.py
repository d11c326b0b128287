"""The management realm controller and remote.* forwarding (spec §5, §6.2) with a node
simulated by an autobahn session that authenticates with its paired key, as the edge node's
management uplink does (simnode.py). The real edge node is covered in test_crossbar_edge.py."""

import time

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, PublishOptions, RegisterOptions, SubscribeOptions

from conftest import aio, join, join_expect_abort, w
from mgmt import call_error, closed, join_node, node_key, unique
from simnode import serve_node_api
from users import join_as, user
from waiting import wait_until

ACK = PublishOptions(acknowledge=True)


async def paired_realm(master, keys, tmp_path, authid="node1"):
    """A fresh mrealm with one paired node key; returns (su, owner, mrealm, node record, key)."""
    su = await join(master, keys)
    name = unique("ctl-")
    m = await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}))
    kp = node_key(tmp_path, unique("edge"))
    node = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, authid))
    owner = await join(master, keys, realm=name)
    return su, owner, m, node, kp


@aio
async def test_node_online_offline_and_events(master, keys, tmp_path):
    su, owner, m, node, kp = await paired_realm(master, keys, tmp_path)
    ready, shutdown = [], []
    await w(owner.subscribe(lambda *a: ready.append(a), "crossbarfabriccenter.mrealm.on_node_ready"))
    await w(owner.subscribe(lambda *a: shutdown.append(a), "crossbarfabriccenter.mrealm.on_node_shutdown"))
    assert await w(owner.call("crossbarfabriccenter.mrealm.get_nodes")) == [node["oid"]]
    assert await w(owner.call("crossbarfabriccenter.mrealm.get_nodes", "offline")) == [node["oid"]]

    n = await join_node(master, kp)
    st = await w(n.call("crossbarfabriccenter.mrealm.get_status"))
    assert st["type"] == "management" and st["realm"] == m["name"], st
    await wait_until(lambda: ready, what="on_node_ready")
    oid, info = ready[0]
    assert oid == node["oid"] and info["status"] == "online" and info["authid"] == "node1", info
    assert await w(owner.call("crossbarfabriccenter.mrealm.get_nodes", "online")) == [node["oid"]]
    assert await w(owner.call("crossbarfabriccenter.mrealm.get_nodes", "online", True)) == ["node1"]
    got = await w(owner.call("crossbarfabriccenter.mrealm.get_node", node["oid"]))
    assert got["status"] == "online" and got["pubkey"] == kp.pubkey_hex and got["heartbeat"] is None, got

    hb = {"timestamp": time.time_ns(), "period": 10, "mrealm_id": m["name"], "seq": 3,
          "workers": {"controller": 1, "router": 1}}
    await w(n.publish("crossbarfabriccenter.node.on_heartbeat", "node1", hb, options=ACK))

    async def beat_seen():
        g = await owner.call("crossbarfabriccenter.mrealm.get_node_by_authid", "node1")
        return g["heartbeat"] == 3 and g["timestamp"] == hb["timestamp"]

    await wait_until(beat_seen, what="the heartbeat in get_node")

    n.leave()
    await wait_until(lambda: shutdown, what="on_node_shutdown")
    assert shutdown[0][0] == node["oid"] and shutdown[0][1]["status"] == "offline", shutdown
    assert await w(owner.call("crossbarfabriccenter.mrealm.get_nodes", "offline")) == [node["oid"]]
    got = await w(owner.call("crossbarfabriccenter.mrealm.get_node", node["oid"]))
    assert got["status"] == "offline", got


@aio
async def test_get_node_errors(master, keys, tmp_path):
    su, owner, m, node, kp = await paired_realm(master, keys, tmp_path)
    e = await call_error(owner, "crossbarfabriccenter.mrealm.get_node", "not-a-uuid")
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(owner, "crossbarfabriccenter.mrealm.get_node", "00000000-0000-4000-8000-000000000000")
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(owner, "crossbarfabriccenter.mrealm.get_node_by_authid", "nobody")
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(owner, "crossbarfabriccenter.mrealm.get_nodes", "sleeping")
    assert e.error == "wamp.error.invalid_argument", e


@aio
async def test_remote_calls_are_forwarded_to_the_node(master, keys, tmp_path):
    su, owner, m, node, kp = await paired_realm(master, keys, tmp_path)
    oid = node["oid"]
    # Paired but not connected: the error names the node.
    e = await call_error(owner, "crossbarfabriccenter.remote.node.get_status", oid)
    assert e.error == "wamp.error.no_such_procedure" and "node1" in e.args[0], e

    n = await join_node(master, kp)
    calls = await serve_node_api(n, "node1")
    st = await w(owner.call("crossbarfabriccenter.remote.node.get_status", oid))
    assert st["management_node_id"] == "node1", st
    started = await w(owner.call("crossbarfabriccenter.remote.node.start_worker", oid, "rtr1", "router",
                                 {"title": "r"}, extra=1))
    assert started == {"id": "rtr1", "type": "router"}, started
    assert calls[-1] == ("start_worker", "rtr1", "router", {"title": "r"}, {"extra": 1}), calls
    # Node errors pass through with their URI and arguments.
    e = await call_error(owner, "crossbarfabriccenter.remote.node.get_worker", oid, "nope")
    assert e.error == "crossbar.error.no_such_worker" and e.args == ("no worker nope",), e
    # Worker level and realm meta.
    assert await w(owner.call("crossbarfabriccenter.remote.router.get_router_realms", oid, "rtr1")) == ["realm001"]
    count = await w(owner.call("crossbarfabriccenter.remote.realm.meta.wamp.session.count", "node1", "rtr1", "realm001"))
    assert count == 7
    # The realm-meta API also takes the node's oid (the reference only takes its authid).
    count = await w(owner.call("crossbarfabriccenter.remote.realm.meta.wamp.session.count", oid, "rtr1", "realm001"))
    assert count == 7

    # Addressing errors.
    e = await call_error(owner, "crossbarfabriccenter.remote.node.get_status", "garbage")
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(owner, "crossbarfabriccenter.remote.node.get_status", "00000000-0000-4000-8000-000000000000")
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(owner, "crossbarfabriccenter.remote.node.get_status")
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(owner, "crossbarfabriccenter.remote.router.get_router_realms", oid)
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(owner, "crossbarfabriccenter.remote.router.get_router_realms", oid, "a.b")
    assert e.error == "wamp.error.invalid_argument", e
    # A procedure the node does not offer.
    e = await call_error(owner, "crossbarfabriccenter.remote.node.get_cpu_count", oid)
    assert e.error == "wamp.error.no_such_procedure", e


@aio
async def test_remote_calls_to_a_local_node_stream_progress_and_keep_permissions(master, keys, tmp_path):
    """A node on this replica is called by the dealer directly: progressive results reach the
    caller, and the remote.* permissions still hold."""
    su, owner, m, node, kp = await paired_realm(master, keys, tmp_path)
    oid = node["oid"]
    n = await join_node(master, kp)
    calls = await serve_node_api(n, "node1")

    def process_stats(details=None):
        for i in range(3):
            if details and details.progress:
                details.progress({"sample": i})
        return {"samples": 3}

    await w(n.register(process_stats, "crossbarfabriccenter.node.node1.get_process_stats",
                       options=RegisterOptions(details_arg="details")))
    progress = []
    out = await w(owner.call("crossbarfabriccenter.remote.node.get_process_stats", oid,
                             options=CallOptions(on_progress=lambda *a, **kw: progress.append(a[0]))))
    assert out == {"samples": 3}
    assert progress == [{"sample": 0}, {"sample": 1}, {"sample": 2}], progress

    # A guest reads, and may not change the node, however the call is routed.
    _, g_kp, g_email, g_oid = await user(master, tmp_path, "gina")
    await w(su.call("crossbarfabriccenter.mrealm.set_roles_on_mrealm_for_user", m["oid"], g_oid, ["guest"]))
    guest = await join_as(master, g_kp, g_email, m["name"], "guest")
    st = await w(guest.call("crossbarfabriccenter.remote.node.get_status", oid))
    assert st["management_node_id"] == "node1", st
    e = await call_error(guest, "crossbarfabriccenter.remote.node.start_worker", oid, "rtr9", "router")
    assert e.error == "wamp.error.not_authorized", e
    # Marker: a call the master does forward to the node, after the refused one; had that one
    # been forwarded, the node would have got it first (one ordered connection to the node).
    await w(guest.call("crossbarfabriccenter.remote.node.get_status", oid))
    assert not [c for c in calls if c[0] == "start_worker"], calls


@aio
async def test_node_events_are_republished(master, keys, tmp_path):
    su, owner, m, node, kp = await paired_realm(master, keys, tmp_path)
    got = []
    await w(owner.subscribe(lambda *a, **kw: got.append((a, kw)), "crossbarfabriccenter.remote.",
                            options=SubscribeOptions(match="prefix", details_arg="details")))
    n = await join_node(master, kp)
    await w(n.publish("crossbarfabriccenter.node.node1.on_router_started", {"id": "rtr1"}, options=ACK))
    await w(n.publish("crossbarfabriccenter.node.node1.worker.rtr1.on_router_transport_started",
                      {"id": "tp1"}, options=ACK))
    await w(n.publish("crossbarfabriccenter.node.node1.worker.rtr1.realm.rlm2.root.wamp-session-on_leave",
                      123, options=ACK))
    await wait_until(lambda: len(got) >= 3, what=lambda: f"three republished events; got {got!r}")
    by_topic = {kw["details"].topic: a for a, kw in got}
    assert by_topic["crossbarfabriccenter.remote.node.on_router_started"] == ("node1", {"id": "rtr1"}), got
    assert by_topic["crossbarfabriccenter.remote.router.on_router_transport_started"] == (
        "node1", "rtr1", {"id": "tp1"}), got
    assert by_topic["crossbarfabriccenter.remote.realm.meta.wamp.session.on_leave"] == (
        "node1", "rtr1", "rlm2", 123), got


@aio
async def test_nodes_act_only_below_their_own_prefix(master, keys, tmp_path):
    su, owner, m, node, kp = await paired_realm(master, keys, tmp_path)
    n = await join_node(master, kp)
    with pytest.raises(ApplicationError) as e:
        await w(n.register(lambda: 1, "crossbarfabriccenter.node.node2.get_status"))
    assert e.value.error == "wamp.error.not_authorized", e.value
    with pytest.raises(ApplicationError) as e:
        await w(n.publish("crossbarfabriccenter.node.node2.on_router_started", {}, options=ACK))
    assert e.value.error == "wamp.error.not_authorized", e.value
    with pytest.raises(ApplicationError) as e:
        await w(n.call("crossbarfabriccenter.remote.node.get_status", node["oid"]))
    assert e.value.error == "wamp.error.not_authorized", e.value
    await w(n.register(lambda: 1, "crossbarfabriccenter.node.node1.get_status"))


@aio
async def test_a_reconnecting_node_replaces_its_older_session(master, keys, tmp_path):
    su, owner, m, node, kp = await paired_realm(master, keys, tmp_path)
    first = await join_node(master, kp)
    second = await join_node(master, kp)
    details = await closed(first)
    assert details.reason == "wamp.close.replaced", details
    await serve_node_api(second, "node1")
    st = await w(owner.call("crossbarfabriccenter.remote.node.get_status", node["oid"]))
    assert st["management_node_id"] == "node1"
    assert await w(owner.call("crossbarfabriccenter.mrealm.get_nodes", "online")) == [node["oid"]]


@aio
async def test_unpaired_node_session_is_closed_and_offline(master, keys, tmp_path):
    su, owner, m, node, kp = await paired_realm(master, keys, tmp_path)
    n = await join_node(master, kp)
    await wait_until(lambda: owner.call("crossbarfabriccenter.mrealm.get_nodes", "online"), what="the node online")
    out = await w(su.call("crossbarfabriccenter.mrealm.unpair_node", node["oid"]))
    assert len(out["killed"]) == 1, out
    details = await closed(n)
    assert details.reason == "wamp.close.auth-changed", details
    d = await join_expect_abort(master, key=kp, realm=None, authrole="node", authextra={"pubkey": kp.pubkey_hex})
    assert d.reason == "fabric.auth-failed.node-unpaired", d
    assert await w(owner.call("crossbarfabriccenter.mrealm.get_nodes")) == []
