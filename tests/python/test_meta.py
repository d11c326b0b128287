"""WAMP meta API: wamp.session.*, wamp.registration.*, wamp.subscription.* procedures and events.

A meta event that must NOT come is checked after a marker: a later meta event of the same realm
to the same watcher. The router publishes meta events as it handles the actions, in order, and
sends the watcher its events in order, so an unwanted event would arrive before the marker."""

import asyncio

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions, SubscribeOptions

from conftest import FABRIC_REALM, aio, join, w
from waiting import wait_until


class Recorder:
    """Records meta events per topic: topic -> list of (args, kwargs)."""

    def __init__(self):
        self.events = {}

    def __repr__(self):
        return f"Recorder({self.events!r})"

    def handler(self, topic):
        def fn(*args, **kwargs):
            self.events.setdefault(topic, []).append((list(args), kwargs))

        return fn

    def get(self, topic):
        return self.events.get(topic, [])

    async def watch(self, session, topics):
        for t in topics:
            await w(session.subscribe(self.handler(t), t))


async def count(session):
    return await w(session.call("wamp.session.count"))


# --------------------------------------------------------------------------------------
# sessions
# --------------------------------------------------------------------------------------


@aio
async def test_session_count_list_get(master, keys):
    me = await join(master, keys, label="me")
    other = await join(master, keys, label="other")
    anon = await join(master, keys, auth="anonymous", label="anon")

    n0 = await count(me)
    assert isinstance(n0, int) and n0 >= 2, n0

    ids = await w(me.call("wamp.session.list"))
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids), ids
    assert me.id in ids and other.id in ids and anon.id in ids, (ids, me.id, other.id, anon.id)
    assert len(ids) == len(set(ids))

    g = await w(me.call("wamp.session.get", other.id))
    assert isinstance(g, dict), g
    assert g["session"] == other.id
    assert (g["authid"], g["authrole"], g["authmethod"], g["authprovider"]) == ("superuser", "user", "cryptosign", "static")

    g = await w(me.call("wamp.session.get", anon.id))
    assert g["session"] == anon.id
    assert (g["authrole"], g["authmethod"]) == ("public", "anonymous")
    for k in ("authid", "authprovider"):
        assert k in g, g

    # count follows joins and leaves
    extra = await join(master, keys, label="extra")
    await wait_until(lambda: _eq(count(me), n0 + 1), what=f"session count {n0 + 1} after a join")
    assert extra.id in await w(me.call("wamp.session.list"))
    await extra.close()
    await wait_until(lambda: _eq(count(me), n0), what=f"session count back to {n0}")
    assert extra.id not in await w(me.call("wamp.session.list"))

    with pytest.raises(ApplicationError) as ei:
        await w(me.call("wamp.session.get", extra.id))
    assert ei.value.error == "wamp.error.no_such_session"


async def _eq(aw, value):
    return (await aw) == value


@aio
async def test_sessions_are_per_realm(master, keys):
    fab = await join(master, keys, label="fabric")
    r1 = await join(master, keys, realm="realm1", label="realm1-owner")
    fab_ids = await w(fab.call("wamp.session.list"))
    r1_ids = await w(r1.call("wamp.session.list"))
    assert r1.id not in fab_ids and fab.id not in r1_ids
    assert r1.id in r1_ids and fab.id in fab_ids, (r1_ids, fab_ids)
    g = await w(r1.call("wamp.session.get", r1.id))
    assert g["session"] == r1.id and g["authrole"] == "owner"
    with pytest.raises(ApplicationError) as ei:
        await w(r1.call("wamp.session.get", fab.id))
    assert ei.value.error == "wamp.error.no_such_session"


@aio
async def test_session_kill(master, keys):
    killer = await join(master, keys, label="killer")
    victim = await join(master, keys, label="victim")
    bystander = await join(master, keys, label="bystander")
    await w(killer.call("wamp.session.kill", victim.id))
    details = await w(asyncio.shield(victim.left_f))
    assert isinstance(details.reason, str) and details.reason, details
    await w(asyncio.shield(victim.disconnected_f))
    ids = await w(killer.call("wamp.session.list"))
    assert victim.id not in ids and bystander.id in ids and bystander.is_attached()

    with pytest.raises(ApplicationError) as ei:
        await w(killer.call("wamp.session.kill", victim.id))
    assert ei.value.error == "wamp.error.no_such_session"


@aio
async def test_session_meta_events(master, keys):
    watcher = await join(master, keys, label="watcher")
    rec = Recorder()
    await rec.watch(watcher, ["wamp.session.on_join", "wamp.session.on_leave"])

    newcomer = await join(master, keys, label="newcomer")
    await wait_until(
        lambda: any(a and isinstance(a[0], dict) and a[0].get("session") == newcomer.id
                    for a, _ in rec.get("wamp.session.on_join")),
        what="wamp.session.on_join for the newcomer",
    )
    info = next(a[0] for a, _ in rec.get("wamp.session.on_join") if isinstance(a[0], dict) and a[0].get("session") == newcomer.id)
    assert info.get("authid") == "superuser" and info.get("authrole") == "user", info

    nid = newcomer.id
    await newcomer.close()
    await wait_until(
        lambda: any(a and a[0] == nid for a, _ in rec.get("wamp.session.on_leave")),
        what="wamp.session.on_leave for the newcomer",
    )

    # a killed session also produces on_leave
    victim = await join(master, keys, label="victim")
    vid = victim.id
    await w(watcher.call("wamp.session.kill", vid))
    await wait_until(lambda: any(a and a[0] == vid for a, _ in rec.get("wamp.session.on_leave")),
                     what=lambda: f"on_leave after kill; got {rec!r}")


@aio
async def test_public_role_cannot_use_meta_api(master, keys):
    anon = await join(master, keys, auth="anonymous")
    for proc in ("wamp.session.count", "wamp.session.list", "wamp.registration.list"):
        with pytest.raises(ApplicationError) as ei:
            await w(anon.call(proc))
        assert ei.value.error == "wamp.error.not_authorized", proc


# --------------------------------------------------------------------------------------
# registrations
# --------------------------------------------------------------------------------------


@aio
async def test_registration_meta_procedures(master, keys):
    me = await join(master, keys, label="me")
    callee = await join(master, keys, label="callee")
    a = await join(master, keys, label="A")
    b = await join(master, keys, label="B")

    r_exact = await w(callee.register(lambda: 1, "com.example.meta.reg.exact"))
    r_prefix = await w(callee.register(lambda *a, **k: 2, "com.example.meta.reg.prefix.", options=RegisterOptions(match="prefix")))
    r_wild = await w(callee.register(lambda *a, **k: 3, "com.example.meta.reg..wild", options=RegisterOptions(match="wildcard")))
    r_rr = await w(a.register(lambda: "A", "com.example.meta.reg.shared", options=RegisterOptions(invoke="roundrobin")))
    await w(b.register(lambda: "B", "com.example.meta.reg.shared", options=RegisterOptions(invoke="roundrobin")))

    lst = await w(me.call("wamp.registration.list"))
    assert isinstance(lst, dict) and {"exact", "prefix", "wildcard"} <= set(lst), lst
    assert r_exact.id in lst["exact"] and r_rr.id in lst["exact"]
    assert r_prefix.id in lst["prefix"] and r_wild.id in lst["wildcard"]
    assert r_prefix.id not in lst["exact"] and r_wild.id not in lst["exact"] and r_exact.id not in lst["prefix"]

    L = "wamp.registration.lookup"
    assert await w(me.call(L, "com.example.meta.reg.exact")) == r_exact.id
    assert await w(me.call(L, "com.example.meta.reg.prefix.", {"match": "prefix"})) == r_prefix.id
    assert await w(me.call(L, "com.example.meta.reg..wild", {"match": "wildcard"})) == r_wild.id
    assert await w(me.call(L, "com.example.meta.reg.prefix.")) is None  # no exact registration on that URI
    assert await w(me.call(L, "com.example.meta.reg.nothing")) is None

    M = "wamp.registration.match"
    assert await w(me.call(M, "com.example.meta.reg.exact")) == r_exact.id
    assert await w(me.call(M, "com.example.meta.reg.prefix.x.y")) == r_prefix.id
    assert await w(me.call(M, "com.example.meta.reg.q.wild")) == r_wild.id
    assert await w(me.call(M, "com.example.meta.nothing")) is None

    g = await w(me.call("wamp.registration.get", r_exact.id))
    assert g["id"] == r_exact.id and g["uri"] == "com.example.meta.reg.exact"
    assert g["match"] == "exact" and g["invoke"] == "single" and g.get("created"), g
    g = await w(me.call("wamp.registration.get", r_prefix.id))
    assert (g["id"], g["uri"], g["match"]) == (r_prefix.id, "com.example.meta.reg.prefix.", "prefix"), g
    g = await w(me.call("wamp.registration.get", r_rr.id))
    assert (g["uri"], g["match"], g["invoke"]) == ("com.example.meta.reg.shared", "exact", "roundrobin"), g

    assert await w(me.call("wamp.registration.list_callees", r_exact.id)) == [callee.id]
    assert await w(me.call("wamp.registration.count_callees", r_exact.id)) == 1
    assert sorted(await w(me.call("wamp.registration.list_callees", r_rr.id))) == sorted([a.id, b.id])
    assert await w(me.call("wamp.registration.count_callees", r_rr.id)) == 2

    with pytest.raises(ApplicationError) as ei:
        await w(me.call("wamp.registration.get", 987654321))
    assert ei.value.error == "wamp.error.no_such_registration"

    # gone after unregister
    await w(r_exact.unregister())
    assert await w(me.call(L, "com.example.meta.reg.exact")) is None
    assert r_exact.id not in (await w(me.call("wamp.registration.list")))["exact"]


@aio
async def test_registration_meta_events(master, keys):
    watcher = await join(master, keys, label="watcher")
    rec = Recorder()
    topics = ["wamp.registration.on_create", "wamp.registration.on_register",
              "wamp.registration.on_unregister", "wamp.registration.on_delete"]
    await rec.watch(watcher, topics)
    a = await join(master, keys, label="A")
    b = await join(master, keys, label="B")
    uri = "com.example.meta.regev.shared"
    opts = RegisterOptions(invoke="roundrobin")

    ra = await w(a.register(lambda: "A", uri, options=opts))
    rid = ra.id
    await wait_until(lambda: rec.get(topics[0]) and rec.get(topics[1]), what=lambda: f"on_create + on_register; got {rec!r}")
    created = [x for x, _ in rec.get(topics[0]) if x[1].get("id") == rid]
    assert len(created) == 1, rec.get(topics[0])
    assert created[0][0] == a.id
    reg = created[0][1]
    assert (reg["uri"], reg["match"], reg["invoke"]) == (uri, "exact", "roundrobin") and reg.get("created"), reg
    assert [a.id, rid] in [x for x, _ in rec.get(topics[1])]

    rb = await w(b.register(lambda: "B", uri, options=opts))
    assert rb.id == rid
    await wait_until(lambda: [b.id, rid] in [x for x, _ in rec.get(topics[1])], what=lambda: f"on_register for B; got {rec!r}")
    assert len([x for x, _ in rec.get(topics[0]) if x[1].get("id") == rid]) == 1, "second callee must not create"

    # B leaves the shared registration: unregister only
    await w(rb.unregister())
    await wait_until(lambda: [b.id, rid] in [x for x, _ in rec.get(topics[2])], what=lambda: f"on_unregister for B; got {rec!r}")
    # Marker: B registers another procedure; its on_register comes after any on_delete of rid.
    mark = await w(b.register(lambda: "M", "com.example.meta.regev.marker"))
    await wait_until(lambda: [b.id, mark.id] in [x for x, _ in rec.get(topics[1])], what=lambda: f"the marker's on_register; got {rec!r}")
    assert [x for x, _ in rec.get(topics[3]) if x[1] == rid] == []

    # last callee goes: unregister + delete
    await w(ra.unregister())
    await wait_until(lambda: [a.id, rid] in [x for x, _ in rec.get(topics[2])], what=lambda: f"on_unregister for A; got {rec!r}")
    await wait_until(lambda: [a.id, rid] in [x for x, _ in rec.get(topics[3])], what=lambda: f"on_delete; got {rec!r}")

    # a callee that disconnects also unregisters and deletes
    c = await join(master, keys, label="C")
    rc = await w(c.register(lambda: "C", "com.example.meta.regev.gone"))
    cid, rcid = c.id, rc.id
    await wait_until(lambda: [cid, rcid] in [x for x, _ in rec.get(topics[1])], what=lambda: f"on_register for C; got {rec!r}")
    c.drop()
    await wait_until(lambda: [cid, rcid] in [x for x, _ in rec.get(topics[3])], what=lambda: f"on_delete after callee dropped; got {rec!r}")


# --------------------------------------------------------------------------------------
# subscriptions
# --------------------------------------------------------------------------------------


@aio
async def test_subscription_meta_procedures(master, keys):
    me = await join(master, keys, label="me")
    s1 = await join(master, keys, label="s1")
    s2 = await join(master, keys, label="s2")
    noop = lambda *a, **k: None  # noqa: E731

    e1 = await w(s1.subscribe(noop, "com.example.meta.sub.exact"))
    e2 = await w(s2.subscribe(noop, "com.example.meta.sub.exact"))
    assert e1.id == e2.id, "same topic+match must share one subscription id"
    p = await w(s1.subscribe(noop, "com.example.meta.sub.", options=SubscribeOptions(match="prefix")))
    wc = await w(s2.subscribe(noop, "com.example.meta..exact", options=SubscribeOptions(match="wildcard")))

    lst = await w(me.call("wamp.subscription.list"))
    assert isinstance(lst, dict) and {"exact", "prefix", "wildcard"} <= set(lst), lst
    assert e1.id in lst["exact"] and p.id in lst["prefix"] and wc.id in lst["wildcard"]
    assert p.id not in lst["exact"] and e1.id not in lst["prefix"]

    L = "wamp.subscription.lookup"
    assert await w(me.call(L, "com.example.meta.sub.exact")) == e1.id
    assert await w(me.call(L, "com.example.meta.sub.", {"match": "prefix"})) == p.id
    assert await w(me.call(L, "com.example.meta..exact", {"match": "wildcard"})) == wc.id
    assert await w(me.call(L, "com.example.meta.sub.none")) is None

    M = "wamp.subscription.match"
    m = await w(me.call(M, "com.example.meta.sub.exact"))
    assert isinstance(m, list) and sorted(m) == sorted([e1.id, p.id, wc.id]), m
    m = await w(me.call(M, "com.example.meta.sub.other"))
    assert m == [p.id], m
    assert await w(me.call(M, "com.example.nomatch.at.all")) is None

    g = await w(me.call("wamp.subscription.get", e1.id))
    assert (g["id"], g["uri"], g["match"]) == (e1.id, "com.example.meta.sub.exact", "exact") and g.get("created"), g
    g = await w(me.call("wamp.subscription.get", wc.id))
    assert (g["id"], g["uri"], g["match"]) == (wc.id, "com.example.meta..exact", "wildcard"), g

    assert sorted(await w(me.call("wamp.subscription.list_subscribers", e1.id))) == sorted([s1.id, s2.id])
    assert await w(me.call("wamp.subscription.count_subscribers", e1.id)) == 2
    assert await w(me.call("wamp.subscription.list_subscribers", p.id)) == [s1.id]
    assert await w(me.call("wamp.subscription.count_subscribers", p.id)) == 1

    with pytest.raises(ApplicationError) as ei:
        await w(me.call("wamp.subscription.get", 987654321))
    assert ei.value.error == "wamp.error.no_such_subscription"

    await w(e2.unsubscribe())
    assert await w(me.call("wamp.subscription.list_subscribers", e1.id)) == [s1.id]
    assert await w(me.call("wamp.subscription.count_subscribers", e1.id)) == 1


@aio
async def test_subscription_meta_events(master, keys):
    watcher = await join(master, keys, label="watcher")
    rec = Recorder()
    topics = ["wamp.subscription.on_create", "wamp.subscription.on_subscribe",
              "wamp.subscription.on_unsubscribe", "wamp.subscription.on_delete"]
    await rec.watch(watcher, topics)
    s1 = await join(master, keys, label="s1")
    s2 = await join(master, keys, label="s2")
    noop = lambda *a, **k: None  # noqa: E731
    topic = "com.example.meta.subev.t"

    sub1 = await w(s1.subscribe(noop, topic))
    sid = sub1.id
    await wait_until(lambda: [x for x, _ in rec.get(topics[0]) if x[1].get("id") == sid], what=lambda: f"on_create; got {rec!r}")
    created = [x for x, _ in rec.get(topics[0]) if x[1].get("id") == sid]
    assert len(created) == 1 and created[0][0] == s1.id
    sd = created[0][1]
    assert (sd["uri"], sd["match"]) == (topic, "exact") and sd.get("created"), sd
    await wait_until(lambda: [s1.id, sid] in [x for x, _ in rec.get(topics[1])], what=lambda: f"on_subscribe s1; got {rec!r}")

    sub2 = await w(s2.subscribe(noop, topic))
    assert sub2.id == sid
    await wait_until(lambda: [s2.id, sid] in [x for x, _ in rec.get(topics[1])], what=lambda: f"on_subscribe s2; got {rec!r}")
    assert len([x for x, _ in rec.get(topics[0]) if x[1].get("id") == sid]) == 1

    await w(sub2.unsubscribe())
    await wait_until(lambda: [s2.id, sid] in [x for x, _ in rec.get(topics[2])], what=lambda: f"on_unsubscribe s2; got {rec!r}")
    # Marker: s2 subscribes another topic; its on_subscribe comes after any on_delete of sid.
    mark = await w(s2.subscribe(noop, "com.example.meta.subev.marker"))
    await wait_until(lambda: [s2.id, mark.id] in [x for x, _ in rec.get(topics[1])], what=lambda: f"the marker's on_subscribe; got {rec!r}")
    assert [x for x, _ in rec.get(topics[3]) if x[1] == sid] == []

    s1_id = s1.id
    await s1.close()  # leaving removes the last subscriber
    await wait_until(lambda: [s1_id, sid] in [x for x, _ in rec.get(topics[3])], what=lambda: f"on_delete after last subscriber left; got {rec!r}")


@aio
async def test_meta_api_on_config_realm(master, keys):
    owner = await join(master, keys, realm="realm1", label="owner")
    other = await join(master, keys, realm="realm1", label="other")
    n = await count(owner)
    assert isinstance(n, int) and n >= 2
    assert other.id in await w(owner.call("wamp.session.list"))
    reg = await w(other.register(lambda: 1, "com.example.r1.proc"))
    assert await w(owner.call("wamp.registration.lookup", "com.example.r1.proc")) == reg.id
    # not visible from the fabric realm
    fab = await join(master, keys, realm=FABRIC_REALM, label="fab")
    assert await w(fab.call("wamp.registration.lookup", "com.example.r1.proc")) is None
    # meta events are published on the realm of the session
    rec = Recorder()
    await rec.watch(owner, ["wamp.session.on_join"])
    newbie = await join(master, keys, realm="realm1", label="newbie")
    await wait_until(lambda: any(isinstance(a[0], dict) and a[0].get("session") == newbie.id
                                 for a, _ in rec.get("wamp.session.on_join")), what=lambda: f"on_join in realm1; got {rec!r}")
    fab2 = await join(master, keys, realm=FABRIC_REALM, label="fab2")
    # Marker: a join on realm1 after fab2's; its on_join comes after any (wrong) one for fab2.
    mark = await join(master, keys, realm="realm1", label="marker")
    await wait_until(lambda: any(isinstance(a[0], dict) and a[0].get("session") == mark.id
                                 for a, _ in rec.get("wamp.session.on_join")), what=lambda: f"the marker's on_join; got {rec!r}")
    assert not any(isinstance(a[0], dict) and a[0].get("session") == fab2.id for a, _ in rec.get("wamp.session.on_join"))
