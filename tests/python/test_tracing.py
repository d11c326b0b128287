"""The tracing API of a management realm (spec §6.2, crossbarfabriccenter.mrealm.*trace*)
against the real binary, with a node simulated by an autobahn session joined with the
node's key whose router worker keeps trace state as the edge's does (simnode.py). The real
edge node is covered in test_crossbar_edge.py."""

import asyncio
import os

import pytest
from autobahn.wamp.exception import ApplicationError

from conftest import Master, aio, join, w
from mgmt import call_error, expect_error, join_when_realm_exists, new_mrealm
from simnode import NO_SUCH_OBJECT, SimRouterWorker, TracingEvents
from waiting import wait_until

P = "crossbarfabriccenter.mrealm."
INVALID_ARGUMENT = "wamp.error.invalid_argument"
NOT_AUTHORIZED = "wamp.error.not_authorized"


async def realm_with_node(master, keys, tmp_path, authid="node1", workers=("rtr1",)):
    """A fresh mrealm with an online simulated node; returns (mrealm, node record, workers)."""
    m = await new_mrealm(master, keys)
    node, kp = await m.pair_node(tmp_path, authid)
    n = await m.join_as_node(kp)
    sims = [await SimRouterWorker(n, authid, wid).serve() for wid in workers]

    async def online():
        return await m.s.call(P + "get_nodes", "online") == [node["oid"]]

    await wait_until(online, what="the simulated node online")
    m.node_session = n
    return m, node, sims


@aio
async def test_trace_lifecycle_and_events(master, keys, tmp_path):
    m, node, (rtr1,) = await realm_with_node(master, keys, tmp_path)
    oid = node["oid"]
    ev = await TracingEvents().watch(m.s)

    assert await w(m.s.call(P + "get_traces")) == []
    created = await w(m.s.call(P + "create_trace", "t1", [[oid, "rtr1"]], {"batching_period": 100}))
    assert created == {}
    assert await w(m.s.call(P + "get_traces")) == ["t1"]
    t = await w(m.s.call(P + "get_trace", "t1"))
    assert t == {"trace_id": "t1", "traced_workers": [[oid, "rtr1"]], "trace_options": {"batching_period": 100},
                 "eligible_reader_roles": None, "exclude_reader_roles": None, "status": "stopped"}, t

    started = await w(m.s.call(P + "start_trace", "t1"))
    assert started["failed"] == [] and len(started["started"]) == 1, started
    assert started["started"][0]["id"] == "t1" and started["started"][0]["status"] == "running", started
    assert ("start_trace", "t1", {"batching_period": 100}) in rtr1.calls, rtr1.calls
    assert (await w(m.s.call(P + "get_trace", "t1")))["status"] == "running"
    await expect_error(m.s, "crossbar.error.cannot_start", P + "start_trace", "t1")
    await expect_error(m.s, "crossbar.error.not_stopped", P + "delete_trace", "t1")

    # Trace data, as the node holds it.
    assert await w(m.s.call(P + "get_trace_data", "t1")) == {oid: {"rtr1": {"success": True, "data": []}}}
    records = [{"seq": i, "direction": "rx"} for i in range(3)]
    await rtr1.emit("t1", {"period": 0}, records)
    data = await w(m.s.call(P + "get_trace_data", "t1"))
    assert data == {oid: {"rtr1": {"success": True, "data": records}}}, data
    data = await w(m.s.call(P + "get_trace_data", "t1", 2))
    assert data[oid]["rtr1"]["data"] == records[:2], data
    assert ("get_trace_data", "t1", 0, 2) in rtr1.calls, rtr1.calls
    data = await w(m.s.call(P + "get_trace_data", "t1", limit=1))
    assert data[oid]["rtr1"]["data"] == records[:1], data

    stopped = await w(m.s.call(P + "stop_trace", "t1"))
    assert stopped["failed"] == [] and [s["status"] for s in stopped["stopped"]] == ["stopped"], stopped
    assert rtr1.traces == {}
    assert (await w(m.s.call(P + "get_trace", "t1")))["status"] == "stopped"
    await expect_error(m.s, "crossbar.error.cannot_stop", P + "stop_trace", "t1")
    # The node deletes a stopped trace: its data is gone there.
    data = await w(m.s.call(P + "get_trace_data", "t1"))
    assert data[oid]["rtr1"]["success"] is False and NO_SUCH_OBJECT in data[oid]["rtr1"]["data"], data

    # A stopped trace starts again.
    again = await w(m.s.call(P + "start_trace", "t1"))
    assert len(again["started"]) == 1, again
    await w(m.s.call(P + "stop_trace", "t1"))

    assert await w(m.s.call(P + "delete_trace", "t1")) == {}
    assert await w(m.s.call(P + "get_traces")) == []
    assert await w(m.s.call(P + "get_trace", "t1")) is None
    await expect_error(m.s, NO_SUCH_OBJECT, P + "delete_trace", "t1")

    await ev.wait(lambda: ev.of("on_trace_deleted"), "on_trace_deleted")
    names = [t for t, _ in ev.got if t != "on_trace_data"]
    assert names == ["on_trace_created", "on_trace_starting", "on_trace_started", "on_trace_stopping",
                     "on_trace_stopped", "on_trace_starting", "on_trace_started", "on_trace_stopping",
                     "on_trace_stopped", "on_trace_deleted"], names
    assert ev.of("on_trace_created")[0] == ["t1", {}]
    assert ev.of("on_trace_starting")[0] == ["t1"]
    assert ev.of("on_trace_started")[0] == ["t1", started]
    assert ev.of("on_trace_stopping")[0] == ["t1"]
    assert ev.of("on_trace_stopped")[0] == ["t1", stopped]
    assert ev.of("on_trace_deleted")[0] == ["t1", {}]


@aio
async def test_a_trace_left_running_on_the_worker_is_replaced(master, keys, tmp_path):
    m, node, (rtr1,) = await realm_with_node(master, keys, tmp_path)
    await w(m.s.call(P + "create_trace", "t1", [[node["oid"], "rtr1"]]))
    rtr1.start_trace("t1", {"batching_period": 500})  # an orphan from an earlier run
    rtr1.calls.clear()
    started = await w(m.s.call(P + "start_trace", "t1"))
    assert started["failed"] == [] and len(started["started"]) == 1, started
    assert [c[0] for c in rtr1.calls] == ["get_traces", "get_trace", "stop_trace", "start_trace"], rtr1.calls
    # No trace options: the node gets null and uses its defaults.
    assert rtr1.calls[-1] == ("start_trace", "t1", None), rtr1.calls
    assert rtr1.traces["t1"]["info"]["options"] == {"batching_period": 200}


@aio
async def test_workers_by_node_authid_and_trace_data_republished(master, keys, tmp_path):
    m, node, (rtr1, rtr2) = await realm_with_node(master, keys, tmp_path, workers=("rtr1", "rtr2"))
    oid = node["oid"]
    guest = await join(master, keys, realm=m.name, authrole="guest")
    owner_ev = await TracingEvents().watch(m.s)
    guest_ev = await TracingEvents().watch(guest)

    # The reference names nodes by oid in calls and by authid in events; both work here.
    await w(m.s.call(P + "create_trace", "by-oid", [[oid, "rtr1"]]))
    await w(m.s.call(P + "create_trace", "by-authid", [["node1", "rtr1"]], None, ["owner"]))
    for t in ("by-oid", "by-authid"):
        started = await w(m.s.call(P + "start_trace", t))
        assert len(started["started"]) == 1 and started["failed"] == [], started
    assert set(rtr1.traces) == {"by-oid", "by-authid"}

    # Not republished: an unknown trace, and a worker the trace does not name.
    await rtr1.emit("nope", {"period": 0}, [{"seq": 0}])
    await rtr2.emit("by-oid", {"period": 0}, [{"seq": 0}])
    await rtr1.emit("by-authid", {"period": 1}, [{"seq": 1}])
    await rtr1.emit("by-oid", {"period": 2}, [{"seq": 2}])
    await owner_ev.wait(lambda: len(owner_ev.of("on_trace_data")) >= 2, "two on_trace_data at the owner")
    assert owner_ev.of("on_trace_data") == [
        ["node1", "rtr1", "by-authid", {"period": 1}, [{"seq": 1}]],
        [oid, "rtr1", "by-oid", {"period": 2}, [{"seq": 2}]],
    ], owner_ev.got
    # The guest is not among the readers of "by-authid".
    await guest_ev.wait(lambda: guest_ev.of("on_trace_data"), "on_trace_data at the guest")
    assert guest_ev.of("on_trace_data") == [[oid, "rtr1", "by-oid", {"period": 2}, [{"seq": 2}]]], guest_ev.got

    # get_trace_data keys the answer by the node id as the trace names it.
    data = await w(m.s.call(P + "get_trace_data", "by-authid"))
    assert data == {"node1": {"rtr1": {"success": True, "data": [{"seq": 1}]}}}, data
    for t in ("by-oid", "by-authid"):
        stopped = await w(m.s.call(P + "stop_trace", t))
        assert len(stopped["stopped"]) == 1 and stopped["failed"] == [], stopped
    assert rtr1.traces == {}


@aio
async def test_reader_roles_and_writer_roles(master, keys, tmp_path):
    m, node, _ = await realm_with_node(master, keys, tmp_path)
    oid = node["oid"]
    guest = await join(master, keys, realm=m.name, authrole="guest")
    user = await join(master, keys, realm=m.name, authrole="user")
    assert guest.details.authrole == "guest" and user.details.authrole == "user"
    owner_ev = await TracingEvents().watch(m.s)
    guest_ev = await TracingEvents().watch(guest)

    await w(m.s.call(P + "create_trace", "owners-only", [[oid, "rtr1"]], None, ["owner"]))
    await w(m.s.call(P + "create_trace", "no-guests", [[oid, "rtr1"]], exclude_reader_roles=["guest"]))
    await w(m.s.call(P + "create_trace", "guests-only", [[oid, "rtr1"]], eligible_reader_roles=["guest"]))
    await w(m.s.call(P + "create_trace", "open", [[oid, "rtr1"]], None, [], []))

    assert await w(m.s.call(P + "get_traces")) == ["no-guests", "open", "owners-only"]
    assert await w(guest.call(P + "get_traces")) == ["guests-only", "open"]
    assert await w(user.call(P + "get_traces")) == ["no-guests", "open"]
    assert await w(guest.call(P + "get_trace", "owners-only")) is None
    assert await w(m.s.call(P + "get_trace", "guests-only")) is None
    got = await w(guest.call(P + "get_trace", "guests-only"))
    assert got["eligible_reader_roles"] == ["guest"] and got["exclude_reader_roles"] is None, got
    # An empty role list restricts nothing.
    got = await w(m.s.call(P + "get_trace", "open"))
    assert got["eligible_reader_roles"] is None and got["exclude_reader_roles"] is None, got
    await expect_error(guest, NO_SUCH_OBJECT, P + "get_trace_data", "no-guests")
    await expect_error(m.s, NO_SUCH_OBJECT, P + "get_trace_data", "guests-only")

    # Events reach the readers only ("open" was created last: once it is in, all are).
    await guest_ev.wait(lambda: ["open", {}] in guest_ev.of("on_trace_created"), "the guest's events")
    assert [a[0] for a in guest_ev.of("on_trace_created")] == ["guests-only", "open"], guest_ev.got
    await owner_ev.wait(lambda: ["open", {}] in owner_ev.of("on_trace_created"), "the owner's events")
    assert [a[0] for a in owner_ev.of("on_trace_created")] == ["owners-only", "no-guests", "open"], owner_ev.got

    # Reading is for everyone; changing is for owners and admins.
    for s in (guest, user):
        await expect_error(s, NOT_AUTHORIZED, P + "create_trace", "t9", [[oid, "rtr1"]])
        for proc in ("start_trace", "stop_trace", "delete_trace"):
            await expect_error(s, NOT_AUTHORIZED, P + proc, "open")
    assert "t9" not in await w(m.s.call(P + "get_traces"))
    # Writers manage traces they may not read (the reference does not check readers there).
    await w(m.s.call(P + "delete_trace", "guests-only"))
    await guest_ev.wait(lambda: guest_ev.of("on_trace_deleted"), "on_trace_deleted at the guest")
    assert guest_ev.of("on_trace_deleted") == [["guests-only", {}]]


@aio
async def test_offline_unknown_and_failing_workers_are_reported_in_failed(master, keys, tmp_path):
    m, node, (rtr1,) = await realm_with_node(master, keys, tmp_path)
    oid = node["oid"]
    offline, _ = await m.pair_node(tmp_path, "node2")
    workers = [[oid, "rtr1"], [oid, "nope"], [offline["oid"], "rtr1"], ["ghost", "rtr1"]]
    await w(m.s.call(P + "create_trace", "t1", workers))

    started = await w(m.s.call(P + "start_trace", "t1"), 20)
    assert [s["worker_id"] for s in started["started"]] == ["rtr1"], started
    failed = {(f["node_id"], f["worker_id"]): f for f in started["failed"]}
    assert set(failed) == {(oid, "nope"), (offline["oid"], "rtr1"), ("ghost", "rtr1")}, started
    nope = failed[(oid, "nope")]
    assert nope["node_status"] == "online" and "wamp.error.no_such_procedure" in nope["error"], nope
    assert failed[(offline["oid"], "rtr1")] == {"node_id": offline["oid"], "node_status": "offline",
                                                "worker_id": "rtr1"}, failed
    ghost = failed[("ghost", "rtr1")]
    assert ghost["node_status"] == "offline" and NO_SUCH_OBJECT in ghost["error"], ghost
    # The trace runs where it could start.
    assert (await w(m.s.call(P + "get_trace", "t1")))["status"] == "running"

    data = await w(m.s.call(P + "get_trace_data", "t1"), 20)
    assert data[oid]["rtr1"] == {"success": True, "data": []}, data
    assert data[oid]["nope"]["success"] is False and "no_such_procedure" in data[oid]["nope"]["data"], data
    assert data[offline["oid"]]["rtr1"]["success"] is False, data
    assert isinstance(data[offline["oid"]]["rtr1"]["data"], str), data
    assert data["ghost"]["rtr1"]["success"] is False, data

    # A stop that cannot reach every worker leaves the trace stoppable and deletable.
    stopped = await w(m.s.call(P + "stop_trace", "t1"), 20)
    assert len(stopped["stopped"]) == 1 and len(stopped["failed"]) == 3, stopped
    assert (await w(m.s.call(P + "get_trace", "t1")))["status"] == "stopping_failed"
    await expect_error(m.s, "crossbar.error.cannot_start", P + "start_trace", "t1")
    stopped = await w(m.s.call(P + "stop_trace", "t1"), 20)
    assert stopped["stopped"] == [] and len(stopped["failed"]) == 3, stopped
    assert await w(m.s.call(P + "delete_trace", "t1")) == {}

    # A node's refusal (the edge validates the options) is reported with its URI.
    await w(m.s.call(P + "create_trace", "bad", [[oid, "rtr1"]], {"batching_period": 5}))
    started = await w(m.s.call(P + "start_trace", "bad"))
    assert started["started"] == [] and len(started["failed"]) == 1, started
    f = started["failed"][0]
    assert f["node_status"] == "online" and "crossbar.error.invalid_configuration" in f["error"], f
    assert rtr1.traces == {}


@aio
async def test_argument_and_state_errors(master, keys, tmp_path):
    m, node, _ = await realm_with_node(master, keys, tmp_path)
    oid = node["oid"]
    good = [[oid, "rtr1"]]
    for args, kwargs in [
        (("t1",), {}),
        (("t1", "rtr1"), {}),
        (("t1", [oid]), {}),
        (("t1", [[oid, "rtr1", "x"]]), {}),
        (("t1", [[oid, 1]]), {}),
        (("t1", [[oid, "a.b"]]), {}),
        (("t1", good, "opts"), {}),
        (("t1", good, ["x"]), {}),
        (("t1", good, None, "owner"), {}),
        (("t1", good, None, [1]), {}),
        (("t1", good), {"exclude_reader_roles": [""]}),
        (("", good), {}),
        (("a/b", good), {}),
        ((5, good), {}),
        ((), {}),
    ]:
        e = await call_error(m.s, P + "create_trace", *args, **kwargs)
        assert e.error == INVALID_ARGUMENT, (args, kwargs, e)
    assert await w(m.s.call(P + "get_traces")) == []

    await w(m.s.call(P + "create_trace", "t1", good))
    await expect_error(m.s, "crossbar.error.already_exists", P + "create_trace", "t1", good)
    for proc in ("start_trace", "stop_trace", "delete_trace", "get_trace_data"):
        await expect_error(m.s, NO_SUCH_OBJECT, P + proc, "t2")
        await expect_error(m.s, INVALID_ARGUMENT, P + proc)
    assert await w(m.s.call(P + "get_trace", "t2")) is None
    await expect_error(m.s, "crossbar.error.cannot_stop", P + "stop_trace", "t1")
    for limit in ("x", 0, 10001):
        await expect_error(m.s, INVALID_ARGUMENT, P + "get_trace_data", "t1", limit)


@aio
async def test_concurrent_starts_have_one_winner(master, keys, tmp_path):
    m, node, (rtr1,) = await realm_with_node(master, keys, tmp_path)
    await w(m.s.call(P + "create_trace", "t1", [[node["oid"], "rtr1"]]))
    other = await join(master, keys, realm=m.name)
    results = await w(asyncio.gather(m.s.call(P + "start_trace", "t1"), other.call(P + "start_trace", "t1"),
                                     return_exceptions=True))
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, ApplicationError)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert losses[0].error == "crossbar.error.cannot_start", losses
    assert [c for c in rtr1.calls if c[0] == "start_trace"] == [("start_trace", "t1", None)], rtr1.calls
    results = await w(asyncio.gather(m.s.call(P + "stop_trace", "t1"), other.call(P + "stop_trace", "t1"),
                                     return_exceptions=True))
    assert sorted(type(r).__name__ for r in results) == ["ApplicationError", "dict"], results
    assert [r.error for r in results if isinstance(r, ApplicationError)] == ["crossbar.error.cannot_stop"]


@aio
async def test_traces_go_with_their_management_realm(master, keys, tmp_path):
    m, node, _ = await realm_with_node(master, keys, tmp_path)
    await w(m.s.call(P + "create_trace", "t1", [[node["oid"], "rtr1"]]))
    await w(m.su.call("crossbarfabriccenter.mrealm.delete_mrealm", m.mrealm["oid"], True))
    # A new realm of the same name starts without traces.
    await w(m.su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": m.name}))

    s = await join_when_realm_exists(master, keys, m.name, timeout=5)
    assert await w(s.call(P + "get_traces")) == []


# libfaketime for threaded programs (Debian package `faketime`, installed by .ci/run).
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


@aio(timeout=90)
@pytest.mark.parametrize("clock_of_the_first_run", [None, "+3600"])
async def test_a_start_cut_short_by_a_restart_ends_as_stopping_failed(keys, tmp_path, clock_of_the_first_run):
    """The replica carrying out a start goes down before it finishes: restarted, it marks
    the trace stopping_failed, from where a stop cleans up and a delete is allowed. Also
    when the wall clock was an hour ahead before the restart (stepped back by NTP meanwhile):
    the recovery once compared the start's wall-clock time with the restart's and left such
    a trace starting for good."""
    m = Master(tmp_path / "restart", keys.superuser.pub_path, config_text=None)
    if clock_of_the_first_run:
        assert os.path.exists(FAKETIME), f"{FAKETIME} is missing: apt-get install faketime"
        m.env = {"LD_PRELOAD": FAKETIME, "FAKETIME": clock_of_the_first_run, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    await m.start_async()
    try:
        mr = await new_mrealm(m, keys)
        node, kp = await mr.pair_node(tmp_path, "node1")
        n = await mr.join_as_node(kp)
        reached = asyncio.Event()

        async def start_trace(trace_id=None, trace_options=None):
            reached.set()
            await asyncio.sleep(60)  # a delay, not a poll: the node does not answer before the kill

        await w(n.register(lambda *a, **kw: [], "crossbarfabriccenter.node.node1.worker.rtr1.get_traces"))
        await w(n.register(start_trace, "crossbarfabriccenter.node.node1.worker.rtr1.start_trace"))

        async def online():
            return await mr.s.call(P + "get_nodes", "online") == [node["oid"]]

        await wait_until(online, what="the simulated node online")
        await w(mr.s.call(P + "create_trace", "t1", [[node["oid"], "rtr1"]]))
        pending = asyncio.ensure_future(mr.s.call(P + "start_trace", "t1"))
        await w(reached.wait(), 10)
        assert (await w(mr.s.call(P + "get_trace", "t1")))["status"] == "starting"
        # Killed: a graceful stop would cancel the node call and let the start finish.
        m.proc.kill()
        m.proc.wait(timeout=5)
        m.stop()
        await asyncio.gather(pending, return_exceptions=True)

        m.env = {}
        await m.start_async(ready_timeout=20)
        s = await join_when_realm_exists(m, keys, mr.name, timeout=20)

        async def stopping_failed():
            return (await s.call(P + "get_trace", "t1"))["status"] == "stopping_failed"

        await wait_until(stopping_failed, 20, interval=0.05,
                         what="the trace marked stopping_failed after the restart")
        stopped = await w(s.call(P + "stop_trace", "t1"))
        assert stopped["stopped"] == [] and stopped["failed"][0]["node_status"] == "offline", stopped
        assert await w(s.call(P + "delete_trace", "t1")) == {}
    finally:
        m.stop()


@aio
async def test_anonymous_sessions_join_as_public_and_only_read(master, keys, tmp_path):
    from conftest import join_expect_abort

    m, node, _ = await realm_with_node(master, keys, tmp_path)
    oid = node["oid"]
    public = await join(master, realm=m.name, auth="anonymous")
    assert public.details.authrole == "public" and public.details.authid.startswith("anonymous-")
    ev = await TracingEvents().watch(public)
    await w(m.s.call(P + "create_trace", "seen", [[oid, "rtr1"]]))
    await w(m.s.call(P + "create_trace", "hidden", [[oid, "rtr1"]], exclude_reader_roles=["public"]))

    assert (await w(public.call(P + "get_status")))["type"] == "management"
    assert await w(public.call(P + "get_traces")) == ["seen"]
    assert (await w(public.call(P + "get_trace", "seen")))["status"] == "stopped"
    await expect_error(public, NO_SUCH_OBJECT, P + "get_trace_data", "hidden")
    await ev.wait(lambda: ev.of("on_trace_created"), "on_trace_created at the public session")
    assert [a[0] for a in ev.of("on_trace_created")] == ["seen"], ev.got
    # Nothing else: no writes, no nodes, no remote calls.
    await expect_error(public, NOT_AUTHORIZED, P + "create_trace", "t9", [[oid, "rtr1"]])
    await expect_error(public, NOT_AUTHORIZED, P + "get_nodes")
    await expect_error(public, NOT_AUTHORIZED, "crossbarfabriccenter.remote.node.get_status", oid)

    # Only "public" is given away, and only on management realms that exist.
    d = await join_expect_abort(master, realm=m.name, auth="anonymous", authrole="owner")
    assert d.reason == "wamp.error.not_authorized", d
    d = await join_expect_abort(master, realm="no-such-mrealm", auth="anonymous")
    assert d.reason == "wamp.error.no_such_realm", d
    public.leave()
