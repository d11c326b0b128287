"""Broker: exact/prefix/wildcard subscriptions, acknowledge, exclude_me, black/white
listing by session/authid/authrole, publisher disclosure, ordering, unsubscribe.

What must NOT be delivered is checked after an END marker: the router handles a publisher's
messages in order and sends each subscriber its events in order, so whatever it delivers for a
publication reaches the subscriber before the END marker published after it."""

import itertools

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.request import Publication
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from conftest import (
    MAIN_SERIALIZERS,
    PUBLIC_PREFIX,
    RawWamp,
    aio,
    join,
    other_serializer,
    w,
)
from waiting import wait_until

ARGS = [1, -2, 2**53 - 1, 3.5, "h\u00e9llo \u2713", None, True, [1, [2, 3]], {"k": {"n": [1, 2]}}]
KWARGS = {"a": 1, "b": "x", "c": [None, 1.25]}

ACK = PublishOptions(acknowledge=True)
END = "__end__"  # the payload of every END marker starts with this
_MARKER_IDS = itertools.count(1)


def is_marker(args) -> bool:
    return len(args) == 1 and isinstance(args[0], str) and args[0].startswith(END)


class Sink:
    """Collects events (args, kwargs, details) delivered to one handler."""

    def __init__(self, name=""):
        self.name = name
        self.events = []

    def __call__(self, *args, details=None, **kwargs):
        self.events.append((list(args), kwargs, details))

    @property
    def payloads(self):
        return payloads(self.events)

    def has(self, value):
        return value in self.payloads

    def before(self, marker):
        """The events (markers left out) that arrived before the END marker ``marker``."""
        out = []
        for e in self.events:
            if e[0] == [marker]:
                return out
            if not is_marker(e[0]):
                out.append(e)
        raise AssertionError(f"{self.name}: END marker {marker!r} not received; got {self.events!r}")


def payloads(events):
    return [a[0] if len(a) == 1 else a for a, _, _ in events]


async def subscribe(session, topic, match=None, name=""):
    sink = Sink(name or session.label)
    sub = await w(session.subscribe(sink, topic, options=SubscribeOptions(match=match, details=True)))
    return sink, sub


async def end_marker(publisher, topic, sinks):
    """Publish a fresh END marker on ``topic`` (acknowledged, unfiltered, to the publisher's
    own subscriptions too) and wait until every sink got it; returns the marker."""
    marker = f"{END}{next(_MARKER_IDS)}"
    await w(publisher.publish(topic, marker, options=PublishOptions(acknowledge=True, exclude_me=False)))
    await wait_until(lambda: all(s.has(marker) for s in sinks),
                     what=lambda: f"END marker {marker} at {', '.join(s.name for s in sinks)}")
    return marker


async def publish_then_end(publisher, topic, sinks, value, options):
    """Publish ``value`` with ``options``, then an END marker; wait until every sink got the
    marker. Per-publisher ordering then tells whether ``value`` was delivered."""
    await w(publisher.publish(topic, value, options=options))
    await end_marker(publisher, topic, sinks)
    got = {s.name: s.has(value) for s in sinks}
    for s in sinks:
        s.events.clear()
    return got


def ack(**kw):
    return PublishOptions(acknowledge=True, **kw)


# --------------------------------------------------------------------------------------
# matching
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ser", MAIN_SERIALIZERS)
@aio
async def test_publish_subscribe_exact(master, keys, ser):
    sub_s = await join(master, keys, serializer=ser, label="sub")
    pub_s = await join(master, keys, serializer=other_serializer(ser), label="pub")
    sink, sub = await subscribe(sub_s, "com.example.ps.exact")
    assert isinstance(sub.id, int) and sub.id > 0

    publication = await w(pub_s.publish("com.example.ps.exact", *ARGS, options=ACK, **KWARGS))
    assert isinstance(publication, Publication)
    assert isinstance(publication.id, int) and 0 < publication.id < 2**53

    marker = await end_marker(pub_s, "com.example.ps.exact", [sink])
    events = sink.before(marker)
    assert len(events) == 1, sink.events
    args, kwargs, details = events[0]
    assert args == ARGS
    assert kwargs == KWARGS
    assert details.publication == publication.id
    assert details.topic in (None, "com.example.ps.exact")

    # an event on another topic is not delivered
    await w(pub_s.publish("com.example.ps.exact.other", 1, options=ACK))
    await w(pub_s.publish("com.example.ps.exactly", 1, options=ACK))
    marker = await end_marker(pub_s, "com.example.ps.exact", [sink])
    assert len(sink.before(marker)) == 1


@pytest.mark.parametrize("ser", MAIN_SERIALIZERS)
@aio
async def test_prefix_and_wildcard_subscriptions(master, keys, ser):
    sub_s = await join(master, keys, serializer=ser, label="sub")
    pub_s = await join(master, keys, serializer=other_serializer(ser), label="pub")
    prefix, _ = await subscribe(sub_s, "com.example.ps.pre.", match="prefix", name="prefix")
    wild, _ = await subscribe(sub_s, "com.example.ps..wild", match="wildcard", name="wild")

    for topic in ("com.example.ps.pre.a", "com.example.ps.pre.a.b.c", "com.example.ps.x.wild",
                  "com.example.ps.x.y.wild", "com.example.ps.prefix"):
        await w(pub_s.publish(topic, topic, options=ACK))
    # One marker topic both patterns match.
    marker = await end_marker(pub_s, "com.example.ps.pre.wild", [prefix, wild])

    assert [(a[0], d.topic) for a, _, d in prefix.before(marker)] == [
        ("com.example.ps.pre.a", "com.example.ps.pre.a"),
        ("com.example.ps.pre.a.b.c", "com.example.ps.pre.a.b.c"),
    ]
    assert [(a[0], d.topic) for a, _, d in wild.before(marker)] == [("com.example.ps.x.wild", "com.example.ps.x.wild")]


@aio
async def test_overlapping_subscriptions_deliver_per_subscription(master, keys):
    sub_s = await join(master, keys, label="sub")
    pub_s = await join(master, keys, label="pub")
    exact, s1 = await subscribe(sub_s, "com.example.ps.ov.a.b", name="exact")
    prefix, s2 = await subscribe(sub_s, "com.example.ps.ov.", match="prefix", name="prefix")
    wild, s3 = await subscribe(sub_s, "com.example.ps.ov..b", match="wildcard", name="wild")
    assert len({s1.id, s2.id, s3.id}) == 3
    await w(pub_s.publish("com.example.ps.ov.a.b", "x", options=ACK))
    marker = await end_marker(pub_s, "com.example.ps.ov.a.b", [exact, prefix, wild])
    got = [s.before(marker) for s in (exact, prefix, wild)]
    assert tuple(len(events) for events in got) == (1, 1, 1)
    pubids = {d.publication for events in got for _, _, d in events}
    assert len(pubids) == 1, "same publication id for all deliveries of one publication"


@aio
async def test_acknowledge(master, keys):
    pub_s = await join(master, keys, label="pub")
    p1 = await w(pub_s.publish("com.example.ps.nobody.listens", 1, options=ACK))
    p2 = await w(pub_s.publish("com.example.ps.nobody.listens", 2, options=ACK))
    assert isinstance(p1, Publication) and isinstance(p2, Publication)
    assert p1.id != p2.id
    assert pub_s.publish("com.example.ps.nobody.listens", 3) is None


@aio
async def test_unsubscribe(master, keys):
    a = await join(master, keys, label="a")
    b = await join(master, keys, label="b")
    pub_s = await join(master, keys, label="pub")
    sa, sub_a = await subscribe(a, "com.example.ps.unsub", name="a")
    sb, _ = await subscribe(b, "com.example.ps.unsub", name="b")
    assert await publish_then_end(pub_s, "com.example.ps.unsub", [sa, sb], "v1", ack()) == {"a": True, "b": True}
    await w(sub_a.unsubscribe())
    # a's marker travels on another topic (a no longer subscribes this one): the router handles
    # the publisher's messages in order and sends a its events in order, so v2 would reach a
    # before it.
    a_marker, _ = await subscribe(a, "com.example.ps.unsub.marker", name="a-marker")
    await w(pub_s.publish("com.example.ps.unsub", "v2", options=ack()))
    await end_marker(pub_s, "com.example.ps.unsub", [sb])
    await end_marker(pub_s, "com.example.ps.unsub.marker", [a_marker])
    assert sb.has("v2")
    assert sa.events == []


# --------------------------------------------------------------------------------------
# exclude_me and black/white listing
# --------------------------------------------------------------------------------------


@aio
async def test_exclude_me(master, keys):
    pub_s = await join(master, keys, label="pub")
    other = await join(master, keys, label="other")
    me, _ = await subscribe(pub_s, "com.example.ps.me", name="me")
    them, _ = await subscribe(other, "com.example.ps.me", name="them")
    # default: exclude_me = true
    assert await publish_then_end(pub_s, "com.example.ps.me", [me, them], "default", ack()) == {
        "me": False,
        "them": True,
    }
    assert await publish_then_end(pub_s, "com.example.ps.me", [me, them], "incl", ack(exclude_me=False)) == {
        "me": True,
        "them": True,
    }
    assert await publish_then_end(pub_s, "com.example.ps.me", [me, them], "excl", ack(exclude_me=True)) == {
        "me": False,
        "them": True,
    }


@aio
async def test_eligible_and_exclude_by_session(master, keys):
    pub_s = await join(master, keys, label="pub")
    subs = [await join(master, keys, label=f"s{i}") for i in range(3)]
    sinks = [(await subscribe(s, "com.example.ps.filter", name=s.label))[0] for s in subs]
    ids = [s.id for s in subs]
    T = "com.example.ps.filter"

    assert await publish_then_end(pub_s, T, sinks, "e1", ack(eligible=[ids[1]])) == {"s0": False, "s1": True, "s2": False}
    assert await publish_then_end(pub_s, T, sinks, "e02", ack(eligible=[ids[0], ids[2]])) == {
        "s0": True, "s1": False, "s2": True}
    assert await publish_then_end(pub_s, T, sinks, "x1", ack(exclude=[ids[1]])) == {"s0": True, "s1": False, "s2": True}
    # exclude wins over eligible
    assert await publish_then_end(pub_s, T, sinks, "ex", ack(eligible=[ids[0], ids[1]], exclude=[ids[1]])) == {
        "s0": True, "s1": False, "s2": False}


@aio
async def test_eligible_and_exclude_by_authid_and_authrole(master, keys):
    pub_s = await join(master, keys, label="pub")
    user = await join(master, keys, label="user")  # authid superuser, role user
    anon = await join(master, keys, auth="anonymous", label="anon")  # role public
    assert anon.details.authrole == "public"
    T = PUBLIC_PREFIX + "filter"
    sinks = [(await subscribe(user, T, name="user"))[0], (await subscribe(anon, T, name="anon"))[0]]

    assert await publish_then_end(pub_s, T, sinks, "ea", ack(eligible_authid=["superuser"])) == {
        "user": True, "anon": False}
    assert await publish_then_end(pub_s, T, sinks, "xa", ack(exclude_authid=["superuser"])) == {
        "user": False, "anon": True}
    assert await publish_then_end(pub_s, T, sinks, "er", ack(eligible_authrole=["public"])) == {
        "user": False, "anon": True}
    assert await publish_then_end(pub_s, T, sinks, "xr", ack(exclude_authrole=["public"])) == {
        "user": True, "anon": False}
    assert await publish_then_end(pub_s, T, sinks, "er2", ack(eligible_authrole=["user", "public"])) == {
        "user": True, "anon": True}
    assert await publish_then_end(pub_s, T, sinks, "none", ack(eligible_authrole=["nobody"])) == {
        "user": False, "anon": False}
    if anon.details.authid is not None:
        assert await publish_then_end(pub_s, T, sinks, "ea2", ack(eligible_authid=[anon.details.authid])) == {
            "user": False, "anon": True}


# --------------------------------------------------------------------------------------
# publisher disclosure
# --------------------------------------------------------------------------------------


@aio
async def test_publisher_disclosure_role_user(master, keys):
    sub_s = await join(master, keys, label="sub")
    pub_s = await join(master, keys, label="pub")
    sink, _ = await subscribe(sub_s, "com.example.ps.disclose")
    await w(pub_s.publish("com.example.ps.disclose", 1, options=ACK))
    await wait_until(lambda: sink.events, what="event")
    d = sink.events[0][2]
    assert (d.publisher, d.publisher_authid, d.publisher_authrole) == (pub_s.id, "superuser", "user")


@aio
async def test_publisher_disclosure_disclose_me_raw(master, keys):
    sub_s = await join(master, keys, label="sub")
    sink, _ = await subscribe(sub_s, "com.example.ps.disclose_me")
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    rid = raw.next_id()
    await raw.send([RawWamp.PUBLISH, rid, {"acknowledge": True, "disclose_me": True}, "com.example.ps.disclose_me", ["hi"], {"k": 1}])
    msg = await raw.recv()
    assert msg[0] == RawWamp.PUBLISHED and msg[1] == rid and isinstance(msg[2], int), msg
    await wait_until(lambda: sink.events, what="event")
    args, kwargs, d = sink.events[0]
    assert args == ["hi"] and kwargs == {"k": 1}
    assert d.publication == msg[2]
    assert (d.publisher, d.publisher_authid, d.publisher_authrole) == (raw.session_id, "superuser", "user")


# --------------------------------------------------------------------------------------
# ordering
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ser", MAIN_SERIALIZERS)
@aio
async def test_in_order_delivery(master, keys, ser):
    sub_s = await join(master, keys, serializer=ser, label="sub")
    pub_s = await join(master, keys, serializer=other_serializer(ser), label="pub")
    sink, _ = await subscribe(sub_s, "com.example.ps.order")
    n = 500
    for i in range(n):
        pub_s.publish("com.example.ps.order", i)  # acknowledge off
    await wait_until(lambda: len(sink.events) >= n, timeout=15, what=f"{n} events")
    marker = await end_marker(pub_s, "com.example.ps.order", [sink])
    assert payloads(sink.before(marker)) == list(range(n))


# --------------------------------------------------------------------------------------
# invalid URIs and authorization on the wire
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,uri",
    [("subscribe", "com.example. bad"), ("subscribe", "com..bad"), ("publish", "com.example. bad"), ("publish", "#bad")],
)
@aio
async def test_invalid_uri(master, keys, kind, uri):
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    rid = raw.next_id()
    if kind == "subscribe":
        await raw.send([RawWamp.SUBSCRIBE, rid, {}, uri])
        req_type = RawWamp.SUBSCRIBE
    else:
        await raw.send([RawWamp.PUBLISH, rid, {"acknowledge": True}, uri, [1]])
        req_type = RawWamp.PUBLISH
    msg = await raw.recv()
    assert msg[:3] == [RawWamp.ERROR, req_type, rid], msg
    assert msg[4] == "wamp.error.invalid_uri", msg
    rid = raw.next_id()
    await raw.send([RawWamp.PUBLISH, rid, {"acknowledge": True}, "com.example.ok", []])
    msg = await raw.recv()
    assert msg[:2] == [RawWamp.PUBLISHED, rid], msg


@aio
async def test_guest_cannot_publish_but_receives(master, keys):
    owner = await join(master, keys, realm="realm1", label="owner")
    guest = await join(master, keys, realm="realm1", authrole="guest", label="guest")
    sink, _ = await subscribe(guest, "com.example.public.news")
    with pytest.raises(ApplicationError) as ei:
        await w(guest.publish("com.example.public.news", 1, options=ACK))
    assert ei.value.error == "wamp.error.not_authorized"
    with pytest.raises(ApplicationError) as ei:
        await w(guest.subscribe(lambda *a: None, "com.example.private.news"))
    assert ei.value.error == "wamp.error.not_authorized"
    await w(owner.publish("com.example.public.news", "hello", options=ACK))
    await wait_until(lambda: sink.events, what="event at guest")
    args, _, d = sink.events[0]
    assert args == ["hello"]
    # owner has disclose_publisher = true
    assert (d.publisher, d.publisher_authid, d.publisher_authrole) == (owner.id, "superuser", "owner")
