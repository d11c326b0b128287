"""Management across replicas: two real replica processes on loopback. A node joins one
replica; a user on the other manages it through remote.* (the call is routed to the replica
holding the node's session), and both replicas agree on who is online."""

import asyncio

import pytest

from conftest import Master, aio, free_port, join, w
from test_mrealm_api import call_error, closed, join_node, node_key, unique
from test_node_controller import eventually, serve_node_api


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
