"""Dealer: RPC routing, pattern registrations, shared registrations, disclosure,
progressive results, cancel, timeouts, errors."""

import asyncio
import random

import pytest
from autobahn.wamp import message
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, CallResult, RegisterOptions

from conftest import (
    MAIN_SERIALIZERS,
    RawWamp,
    aio,
    assert_router_alive,
    join,
    other_serializer,
    w,
)
from waiting import wait_until

ARGS = [1, -2, 2**53 - 1, 3.5, "h\u00e9llo \u2713", None, True, False, [1, [2, 3]], {"k": {"n": [1, 2]}}]
KWARGS = {"a": 1, "b": "x", "c": [None, 1.25], "d": {"e": "f"}}


async def pair(master, keys, ser="cbor", caller_ser=None):
    """(callee, caller) on the fabric realm, both superuser (role user)."""
    callee = await join(master, keys, serializer=ser, label="callee")
    caller = await join(master, keys, serializer=caller_ser or ser, label="caller")
    return callee, caller


# --------------------------------------------------------------------------------------
# basic routing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ser", MAIN_SERIALIZERS)
@aio
async def test_call_roundtrip(master, keys, ser):
    # the callee speaks a different serializer than the caller: the router translates
    callee = await join(master, keys, serializer=other_serializer(ser), label="callee")
    caller = await join(master, keys, serializer=ser, label="caller")
    seen = []

    def echo(*args, **kwargs):
        seen.append((list(args), dict(kwargs)))
        return CallResult(*args, **kwargs)

    def one(x):
        return x * 2

    await w(callee.register(echo, "com.example.rpc.echo"))
    await w(callee.register(one, "com.example.rpc.double"))

    res = await w(caller.call("com.example.rpc.echo", *ARGS, **KWARGS))
    assert isinstance(res, CallResult), res
    assert list(res.results) == ARGS
    assert res.kwresults == KWARGS
    assert seen == [(ARGS, KWARGS)]

    assert await w(caller.call("com.example.rpc.double", 21)) == 42
    assert await w(caller.call("com.example.rpc.double", "ab")) == "abab"


@pytest.mark.parametrize("ser", MAIN_SERIALIZERS)
@aio
async def test_pattern_registrations(master, keys, ser):
    callee, caller = await pair(master, keys, ser)
    opts = lambda match: RegisterOptions(match=match, details=True)  # noqa: E731

    def handler(tag):
        def fn(*args, details=None):
            return [tag, details.procedure]

        return fn

    await w(callee.register(handler("exact"), "com.example.pat.exact.proc", options=opts("exact")))
    await w(callee.register(handler("prefix"), "com.example.pat.prefix.", options=opts("prefix")))
    await w(callee.register(handler("wild"), "com.example.pat..wild", options=opts("wildcard")))

    tag, _ = await w(caller.call("com.example.pat.exact.proc"))
    assert tag == "exact"
    assert await w(caller.call("com.example.pat.prefix.a.b")) == ["prefix", "com.example.pat.prefix.a.b"]
    assert await w(caller.call("com.example.pat.prefix.x")) == ["prefix", "com.example.pat.prefix.x"]
    assert await w(caller.call("com.example.pat.anything.wild")) == ["wild", "com.example.pat.anything.wild"]

    # wildcard matches exactly one component
    with pytest.raises(ApplicationError) as ei:
        await w(caller.call("com.example.pat.a.b.wild"))
    assert ei.value.error == "wamp.error.no_such_procedure"
    with pytest.raises(ApplicationError) as ei:
        await w(caller.call("com.example.pat.exact.proc.more"))
    assert ei.value.error == "wamp.error.no_such_procedure"


@aio
async def test_pattern_registration_precedence(master, keys):
    callee, caller = await pair(master, keys)
    opts = lambda match: RegisterOptions(match=match, details=True)  # noqa: E731

    def handler(tag):
        return lambda *a, details=None: [tag, details.procedure]

    await w(callee.register(handler("prefix-short"), "com.example.prec.", options=opts("prefix")))
    await w(callee.register(handler("prefix-long"), "com.example.prec.a.", options=opts("prefix")))
    await w(callee.register(handler("exact"), "com.example.prec.a.b", options=opts("exact")))
    await w(callee.register(handler("wild"), "com.example.prec.a..c", options=opts("wildcard")))
    await w(callee.register(handler("wild-only"), "com.example.wonly..c", options=opts("wildcard")))

    # exact beats prefix, longest prefix wins, prefix beats wildcard
    assert (await w(caller.call("com.example.prec.a.b")))[0] == "exact"
    assert await w(caller.call("com.example.prec.a.x")) == ["prefix-long", "com.example.prec.a.x"]
    assert await w(caller.call("com.example.prec.z")) == ["prefix-short", "com.example.prec.z"]
    assert await w(caller.call("com.example.prec.a.q.c")) == ["prefix-long", "com.example.prec.a.q.c"]
    assert await w(caller.call("com.example.wonly.q.c")) == ["wild-only", "com.example.wonly.q.c"]


@aio
async def test_concurrent_calls_are_matched_to_their_requests(master, keys):
    callee, caller = await pair(master, keys)

    async def slow_echo(i):
        await asyncio.sleep(random.uniform(0, 0.05))
        return i

    await w(callee.register(slow_echo, "com.example.rpc.slow_echo"))
    results = await w(asyncio.gather(*[caller.call("com.example.rpc.slow_echo", i) for i in range(100)]), 15)
    assert results == list(range(100))


@aio
async def test_unregister_and_no_such_procedure(master, keys):
    callee, caller = await pair(master, keys)
    with pytest.raises(ApplicationError) as ei:
        await w(caller.call("com.example.rpc.never_registered"))
    assert ei.value.error == "wamp.error.no_such_procedure"

    reg = await w(callee.register(lambda: "here", "com.example.rpc.transient"))
    assert await w(caller.call("com.example.rpc.transient")) == "here"
    await w(reg.unregister())
    with pytest.raises(ApplicationError) as ei:
        await w(caller.call("com.example.rpc.transient"))
    assert ei.value.error == "wamp.error.no_such_procedure"


@pytest.mark.parametrize("ser", MAIN_SERIALIZERS)
@aio
async def test_application_error_is_forwarded(master, keys, ser):
    callee = await join(master, keys, serializer=other_serializer(ser), label="callee")
    caller = await join(master, keys, serializer=ser, label="caller")

    def fail():
        raise ApplicationError("com.example.error.custom", 1, 2, a=3)

    await w(callee.register(fail, "com.example.rpc.fail"))
    with pytest.raises(ApplicationError) as ei:
        await w(caller.call("com.example.rpc.fail"))
    assert ei.value.error == "com.example.error.custom"
    assert list(ei.value.args) == [1, 2]
    assert ei.value.kwargs == {"a": 3}


# --------------------------------------------------------------------------------------
# shared registrations
# --------------------------------------------------------------------------------------


async def two_callees(master, keys, uri, invoke):
    a = await join(master, keys, label="A")
    b = await join(master, keys, label="B")
    caller = await join(master, keys, label="caller")
    ra = await w(a.register(lambda: "A", uri, options=RegisterOptions(invoke=invoke)))
    rb = await w(b.register(lambda: "B", uri, options=RegisterOptions(invoke=invoke)))
    assert ra.id == rb.id, "shared registration must have one registration id"
    return a, b, caller, ra, rb


@aio
async def test_shared_single(master, keys):
    a = await join(master, keys, label="A")
    b = await join(master, keys, label="B")
    caller = await join(master, keys, label="caller")
    await w(a.register(lambda: "A", "com.example.shared.single"))  # default invoke = single
    with pytest.raises(ApplicationError) as ei:
        await w(b.register(lambda: "B", "com.example.shared.single"))
    assert ei.value.error == "wamp.error.procedure_already_exists"
    with pytest.raises(ApplicationError) as ei:
        await w(b.register(lambda: "B", "com.example.shared.single", options=RegisterOptions(invoke="single")))
    assert ei.value.error == "wamp.error.procedure_already_exists"
    for _ in range(3):
        assert await w(caller.call("com.example.shared.single")) == "A"


@aio
async def test_shared_roundrobin(master, keys):
    _, _, caller, _, _ = await two_callees(master, keys, "com.example.shared.rr", "roundrobin")
    got = [await w(caller.call("com.example.shared.rr")) for _ in range(8)]
    assert set(got) == {"A", "B"}, got
    assert all(got[i] != got[i + 1] for i in range(len(got) - 1)), f"not alternating: {got}"


@aio
async def test_shared_random(master, keys):
    _, _, caller, _, _ = await two_callees(master, keys, "com.example.shared.random", "random")
    got = [await w(caller.call("com.example.shared.random")) for _ in range(40)]
    assert set(got) == {"A", "B"}, f"40 random invocations never reached both callees: {got}"


@aio
async def test_shared_first(master, keys):
    a, _, caller, ra, _ = await two_callees(master, keys, "com.example.shared.first", "first")
    got = [await w(caller.call("com.example.shared.first")) for _ in range(5)]
    assert got == ["A"] * 5
    await w(ra.unregister())
    got = [await w(caller.call("com.example.shared.first")) for _ in range(3)]
    assert got == ["B"] * 3


@aio
async def test_shared_last(master, keys):
    _, b, caller, _, rb = await two_callees(master, keys, "com.example.shared.last", "last")
    got = [await w(caller.call("com.example.shared.last")) for _ in range(5)]
    assert got == ["B"] * 5
    await w(rb.unregister())
    got = [await w(caller.call("com.example.shared.last")) for _ in range(3)]
    assert got == ["A"] * 3


@pytest.mark.parametrize(
    "first,second",
    [("roundrobin", "random"), ("single", "roundrobin"), ("first", "last"), ("random", "single")],
)
@aio
async def test_shared_mismatched_invoke_policy(master, keys, first, second):
    a = await join(master, keys, label="A")
    b = await join(master, keys, label="B")
    uri = f"com.example.shared.mismatch.{first}.{second}"
    await w(a.register(lambda: "A", uri, options=RegisterOptions(invoke=first)))
    with pytest.raises(ApplicationError) as ei:
        await w(b.register(lambda: "B", uri, options=RegisterOptions(invoke=second)))
    assert ei.value.error == "wamp.error.procedure_already_exists"


# --------------------------------------------------------------------------------------
# caller disclosure
# --------------------------------------------------------------------------------------


@aio
async def test_caller_disclosure_role_user(master, keys):
    callee, caller = await pair(master, keys)

    def who(details=None):
        return [details.caller, details.caller_authid, details.caller_authrole]

    await w(callee.register(who, "com.example.rpc.who", options=RegisterOptions(details=True)))
    assert await w(caller.call("com.example.rpc.who")) == [caller.id, "superuser", "user"]


@aio
async def test_caller_not_disclosed_for_role_without_disclose_caller(master, keys):
    owner = await join(master, keys, realm="realm1", label="owner")
    guest = await join(master, keys, realm="realm1", authrole="guest", label="guest")
    owner2 = await join(master, keys, realm="realm1", label="owner2")

    def who(details=None):
        return [details.caller, details.caller_authid, details.caller_authrole]

    await w(owner.register(who, "com.example.public.who", options=RegisterOptions(details=True)))
    assert await w(guest.call("com.example.public.who")) == [None, None, None]
    # the owner role has disclose_caller = true
    assert await w(owner2.call("com.example.public.who")) == [owner2.id, "superuser", "owner"]


# --------------------------------------------------------------------------------------
# progressive results
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ser", MAIN_SERIALIZERS)
@aio
async def test_progressive_call_results(master, keys, ser):
    callee = await join(master, keys, serializer=other_serializer(ser), label="callee")
    caller = await join(master, keys, serializer=ser, label="caller")

    async def countdown(n, details=None):
        if details.progress is None:
            return "no-progress-requested"
        for i in range(n):
            details.progress(i, idx=i)
            await asyncio.sleep(0.01)
        return "done"

    await w(callee.register(countdown, "com.example.rpc.progress", options=RegisterOptions(details=True)))
    progress = []
    res = await w(
        caller.call(
            "com.example.rpc.progress",
            5,
            options=CallOptions(on_progress=lambda *a, **kw: progress.append((list(a), kw))),
        )
    )
    assert res == "done"
    assert progress == [([i], {"idx": i}) for i in range(5)]

    # without receive_progress the callee must not be offered progress
    assert await w(caller.call("com.example.rpc.progress", 3)) == "no-progress-requested"


# --------------------------------------------------------------------------------------
# cancel, timeout, callee loss
# --------------------------------------------------------------------------------------


class SlowCallee:
    """A procedure that records start, interrupt and finish (loop timestamps)."""

    def __init__(self, work: float, after_interrupt: float = 0.0, interrupt_error: str = "wamp.error.canceled"):
        self.work = work
        self.after_interrupt = after_interrupt
        self.interrupt_error = interrupt_error
        self.started = asyncio.Event()
        self.interrupted = asyncio.Event()
        self.finished = asyncio.Event()
        self.replied_at = None

    async def __call__(self, *args):
        loop = asyncio.get_running_loop()
        self.started.set()
        try:
            await asyncio.sleep(self.work)
        except asyncio.CancelledError:
            self.interrupted.set()
            if self.after_interrupt:
                # asyncio allows continuing after a caught CancelledError
                await asyncio.sleep(self.after_interrupt)
            self.replied_at = loop.time()
            raise ApplicationError(self.interrupt_error, "interrupted")
        self.replied_at = loop.time()
        self.finished.set()
        return "finished"


def pending_request_id(session, procedure):
    ids = [rid for rid, req in session._call_reqs.items() if req.procedure == procedure]
    assert len(ids) == 1, ids
    return ids[0]


async def late_reply_sent(callee, timeout: float = 5.0):
    """Until the callee has answered every invocation: autobahn drops an invocation from
    ``_invocations`` right before it sends the YIELD or ERROR."""
    await wait_until(lambda: not callee._invocations, timeout, what=lambda: f"the callee's replies; pending {callee._invocations!r}")


async def marker_round_trip(callee, caller, uri):
    """A call of ``caller`` to ``callee`` after the callee's late reply: anything the router
    sends either session for that reply comes before this call's INVOCATION and RESULT (one
    ordered connection each), so it is the marker for "the late reply did no harm"."""
    await w(callee.register(lambda: "pong", uri))
    assert await w(caller.call(uri)) == "pong"


async def start_call_then_cancel(caller, uri, slow, mode):
    fut = asyncio.ensure_future(caller.call(uri))
    await w(slow.started.wait())
    rid = pending_request_id(caller, uri)
    caller._transport.send(message.Cancel(rid, mode=mode))
    return fut, asyncio.get_running_loop().time()


@aio
async def test_cancel_skip(master, keys):
    callee, caller = await pair(master, keys)
    slow = SlowCallee(work=1.5)
    await w(callee.register(slow, "com.example.rpc.cancel.skip"))
    fut, t_cancel = await start_call_then_cancel(caller, "com.example.rpc.cancel.skip", slow, "skip")
    with pytest.raises(ApplicationError) as ei:
        await w(fut, 1.0)
    assert ei.value.error == "wamp.error.canceled"
    # skip: the callee is not interrupted and completes; its late result is discarded by the router
    await w(slow.finished.wait(), 4)
    assert not slow.interrupted.is_set()
    await late_reply_sent(callee)
    await marker_round_trip(callee, caller, "com.example.rpc.cancel.skip.ping")
    assert caller.is_attached(), "caller lost its session after the callee's late result (router forwarded it?)"


@aio
async def test_cancel_kill(master, keys):
    callee, caller = await pair(master, keys)
    slow = SlowCallee(work=10, after_interrupt=0.6)
    await w(callee.register(slow, "com.example.rpc.cancel.kill"))
    fut, t_cancel = await start_call_then_cancel(caller, "com.example.rpc.cancel.kill", slow, "kill")
    with pytest.raises(ApplicationError) as ei:
        await w(fut, 5)
    t_err = asyncio.get_running_loop().time()
    assert slow.interrupted.is_set(), "callee got no INTERRUPT"
    assert ei.value.error == "wamp.error.canceled"
    # kill: the router waits for the callee's response to the INTERRUPT before answering the caller
    assert slow.replied_at is not None and t_err >= slow.replied_at, (
        f"caller got ERROR {t_err - t_cancel:.3f}s after CANCEL, before the callee answered the INTERRUPT"
    )
    await assert_router_alive(master, keys)


@aio
async def test_cancel_killnowait(master, keys):
    callee, caller = await pair(master, keys)
    slow = SlowCallee(work=10, after_interrupt=1.5)
    await w(callee.register(slow, "com.example.rpc.cancel.killnowait"))
    fut, t_cancel = await start_call_then_cancel(caller, "com.example.rpc.cancel.killnowait", slow, "killnowait")
    with pytest.raises(ApplicationError) as ei:
        await w(fut, 1.2)
    t_err = asyncio.get_running_loop().time()
    assert ei.value.error == "wamp.error.canceled"
    assert t_err - t_cancel < 1.2
    # the callee is still interrupted
    await w(slow.interrupted.wait(), 3)
    # and its late ERROR reply does not disturb the caller
    await late_reply_sent(callee)
    await marker_round_trip(callee, caller, "com.example.rpc.cancel.killnowait.ping")
    assert caller.is_attached()
    await assert_router_alive(master, keys)


@aio
async def test_dealer_call_timeout(master, keys):
    callee, caller = await pair(master, keys)
    slow = SlowCallee(work=6)
    await w(callee.register(slow, "com.example.rpc.sleepy"))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(ApplicationError) as ei:
        # WAMP call timeout is in milliseconds
        await w(caller.call("com.example.rpc.sleepy", options=CallOptions(timeout=500)), 4)
    elapsed = loop.time() - t0
    assert ei.value.error in ("wamp.error.timeout", "wamp.error.canceled"), ei.value.error
    assert 0.3 <= elapsed < 3.0, f"timeout error after {elapsed:.2f}s (timeout was 500 ms, callee sleeps 6 s)"
    assert not slow.finished.is_set()


@pytest.mark.parametrize("how", ["leave", "websocket-close", "tcp-drop"])
@aio
async def test_callee_lost_during_call(master, keys, how):
    callee, caller = await pair(master, keys)
    slow = SlowCallee(work=10)
    uri = f"com.example.rpc.lost.{how}"
    await w(callee.register(slow, uri))
    fut = asyncio.ensure_future(caller.call(uri))
    await w(slow.started.wait())
    if how == "leave":
        callee.leave()
    elif how == "websocket-close":
        callee.disconnect()
    else:
        callee.drop()
    with pytest.raises(ApplicationError) as ei:
        await w(fut, 5)
    assert ei.value.error == "wamp.error.canceled"
    # the registration went away with the callee
    with pytest.raises(ApplicationError) as ei:
        await w(caller.call(uri))
    assert ei.value.error == "wamp.error.no_such_procedure"
    # and the URI can be registered again by another session
    callee2 = await join(master, keys, label="callee2")
    await w(callee2.register(lambda: "again", uri))
    assert await w(caller.call(uri)) == "again"


# --------------------------------------------------------------------------------------
# invalid URIs (raw wire: autobahn refuses to send them)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,uri",
    [
        ("call", "com.example. bad"),
        ("call", "#bad"),
        ("call", "com..bad"),
        ("register", "com.example. bad"),
        ("register", "com..bad"),
    ],
)
@aio
async def test_invalid_uri(master, keys, kind, uri):
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    rid = raw.next_id()
    if kind == "call":
        await raw.send([RawWamp.CALL, rid, {}, uri, [1]])
        req_type = RawWamp.CALL
    else:
        await raw.send([RawWamp.REGISTER, rid, {}, uri])
        req_type = RawWamp.REGISTER
    msg = await raw.recv()
    assert msg[:3] == [RawWamp.ERROR, req_type, rid], msg
    assert msg[4] == "wamp.error.invalid_uri", msg
    # the session is still usable
    rid = raw.next_id()
    await raw.send([RawWamp.CALL, rid, {}, "com.example.nothing.here", []])
    msg = await raw.recv()
    assert msg[:3] == [RawWamp.ERROR, RawWamp.CALL, rid] and msg[4] == "wamp.error.no_such_procedure", msg


# --------------------------------------------------------------------------------------
# beyond the brief's list
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("callee_ser,caller_ser", [("cbor", "msgpack"), ("msgpack", "cbor"), ("cbor", "cbor"),
                                                   ("json", "cbor"), ("cbor", "json")])
@aio
async def test_binary_payload_across_serializers(master, keys, callee_ser, caller_ser):
    """WAMP binary values: native in CBOR/MsgPack, '\\0'+base64 strings in JSON (autobahn converts)."""
    callee = await join(master, keys, serializer=callee_ser, label="callee")
    caller = await join(master, keys, serializer=caller_ser, label="caller")
    blob = bytes(range(256)) + b"\x00tail"
    seen = []

    def echo(b, details=None):
        seen.append(b)
        return b

    await w(callee.register(echo, "com.example.rpc.bin", options=RegisterOptions(details=True)))
    res = await w(caller.call("com.example.rpc.bin", blob))
    assert seen == [blob], f"callee got {seen!r}"
    assert res == blob


@aio
async def test_caller_lost_during_call(master, keys):
    """The caller disappears while the callee works; the callee's late result must not hurt anyone."""
    callee, caller = await pair(master, keys)
    slow = SlowCallee(work=1.0)
    await w(callee.register(slow, "com.example.rpc.orphan"))
    fut = asyncio.ensure_future(caller.call("com.example.rpc.orphan"))
    await w(slow.started.wait())
    caller.drop()
    # the callee either finishes (result dropped by the router) or gets an INTERRUPT
    await w(asyncio.wait([asyncio.ensure_future(slow.finished.wait()), asyncio.ensure_future(slow.interrupted.wait())],
                         return_when=asyncio.FIRST_COMPLETED), 4)
    await late_reply_sent(callee)
    fut.cancel()
    # Marker: a new caller's call to the callee, after its late reply; anything the router sent
    # the callee for that reply comes before this INVOCATION.
    caller2 = await join(master, keys, label="caller2")
    slow.work = 0
    assert await w(caller2.call("com.example.rpc.orphan")) == "finished"
    assert callee.is_attached()


@aio
async def test_many_sessions_concurrently(master, keys):
    callee = await join(master, keys, label="callee")
    await w(callee.register(lambda i: i * i, "com.example.rpc.square"))
    n = 40
    sessions = await w(asyncio.gather(*[join(master, keys, serializer=["cbor", "msgpack", "json"][i % 3],
                                             label=f"c{i}") for i in range(n)]), 20)
    assert len({s.id for s in sessions}) == n
    results = await w(asyncio.gather(*[s.call("com.example.rpc.square", i) for i, s in enumerate(sessions)]), 15)
    assert results == [i * i for i in range(n)]
    await w(asyncio.gather(*[s.close() for s in sessions]), 15)
