"""A replica holding a node's session dies and never comes back: three real replica processes
on loopback, the node on the third, which is killed with SIGKILL. The leader's presence lease
(here 1.5 s) drops the dead replica's presence records, so the survivors announce the node's
shutdown and list it offline, and the node can come back through a surviving replica."""

import asyncio

import pytest

from conftest import Master, aio, free_port, join, w
from mgmt import call_error, join_node, join_when_realm_exists, node_key, unique
from simnode import serve_node_api
from waiting import wait_until

LEASE_MS = "1500"


@pytest.fixture(scope="module")
def trio(tmp_path_factory, keys):
    base = tmp_path_factory.mktemp("trio")
    ports = [free_port() for _ in range(3)]
    started = []
    for i, port in enumerate(ports):
        seed = ["--bootstrap"] if i == 0 else ["--join", f"127.0.0.1:{ports[0]}"]
        m = Master(base / f"r{i}", keys.superuser.pub_path, config_text=None,
                   extra_args=["--node-id", str(i + 1), "--presence-lease-ms", LEASE_MS, *seed],
                   peer_port=port)
        m.start(ready_timeout=30)
        started.append(m)
    yield started
    for m in reversed(started):
        m.stop()


@aio(timeout=90)
async def test_the_nodes_of_a_dead_replica_go_offline(trio, keys, tmp_path):
    a, b, c = trio
    su = await join(a, keys)
    name = unique("lease-")
    await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}), 10)
    kp = node_key(tmp_path, unique("edge"))
    node = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node1"), 10)
    owner_a = await join_when_realm_exists(a, keys, name)
    await join_when_realm_exists(c, keys, name)
    shutdown = []
    await w(owner_a.subscribe(lambda *args: shutdown.append(args), "crossbarfabriccenter.mrealm.on_node_shutdown"))

    n = await join_node(c, kp)
    await serve_node_api(n, "node1")

    async def online_on_a():
        return await owner_a.call("crossbarfabriccenter.mrealm.get_nodes", "online") == [node["oid"]]

    await wait_until(online_on_a, 10, interval=0.05, what="node1 online on replica a")
    # The lease holds while c answers: several lease periods later the node is still online.
    # A deliberate pause, not a poll: what is checked is that the lease does NOT run out while
    # time passes, and no marker can stand in for the time itself. The get_nodes round trip
    # after it is the marker for `shutdown`: a's answer follows any on_node_shutdown a
    # published to owner_a before it.
    await asyncio.sleep(4)
    assert await online_on_a(), "a live replica's nodes must stay online"
    assert not shutdown, shutdown

    c.proc.kill()
    c.proc.wait(timeout=10)

    async def offline_on_a():
        offline = await owner_a.call("crossbarfabriccenter.mrealm.get_nodes", "offline")
        return node["oid"] in offline and shutdown

    await wait_until(offline_on_a, 30, interval=0.1, what="node1 offline on replica a after c died")
    assert shutdown[0][0] == node["oid"], shutdown
    e = await call_error(owner_a, "crossbarfabriccenter.remote.node.get_status", node["oid"])
    assert e.error == "wamp.error.no_such_procedure", e

    # The node comes back through a surviving replica.
    n2 = await join_node(b, kp)
    await serve_node_api(n2, "node1")
    await wait_until(online_on_a, 10, interval=0.05, what="node1 online again, through replica b")
    st = await w(owner_a.call("crossbarfabriccenter.remote.node.get_status", node["oid"]), 10)
    assert st["management_node_id"] == "node1", st
    for s in (su, owner_a, n2):
        s.leave()
