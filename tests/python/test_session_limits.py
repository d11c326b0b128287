"""Per-session limits (--max-pending-calls, --max-registrations, --max-subscriptions): past its
limit a request is refused with fabric.error.limit-exceeded, what the session holds is
untouched, giving one back makes room again, and other sessions are not affected."""

import asyncio

from autobahn.wamp.exception import ApplicationError

from conftest import aio, join, w

MASTER_EXTRA_ARGS = ["--max-pending-calls", "3", "--max-registrations", "2", "--max-subscriptions", "2"]
LIMIT = "fabric.error.limit-exceeded"


async def refused(aw):
    try:
        await w(aw)
    except ApplicationError as e:
        return e.error
    raise AssertionError("expected a refusal")


@aio
async def test_pending_calls_are_limited_per_session(master, keys):
    callee = await join(master, keys, label="callee")
    caller = await join(master, keys, label="caller")
    other = await join(master, keys, label="other")
    release = asyncio.Event()

    async def slow(x):
        await release.wait()
        return x

    await w(callee.register(slow, "com.example.limits.slow"))
    held = [asyncio.ensure_future(caller.call("com.example.limits.slow", i)) for i in range(3)]
    # The fourth waits for nothing: it is refused at once; another session still calls.
    assert await refused(caller.call("com.example.limits.slow", 3)) == LIMIT
    extra = asyncio.ensure_future(other.call("com.example.limits.slow", 99))
    release.set()
    assert sorted(await w(asyncio.gather(*held))) == [0, 1, 2]
    assert await w(extra) == 99
    # Answered calls give their places back.
    assert await w(caller.call("com.example.limits.slow", 4)) == 4


@aio
async def test_registrations_are_limited_per_session(master, keys):
    s = await join(master, keys, label="registrar")
    regs = [await w(s.register(lambda: i, f"com.example.limits.reg{i}")) for i in range(2)]
    assert await refused(s.register(lambda: 0, "com.example.limits.reg2")) == LIMIT
    # The refused registration does not exist; the held ones still answer.
    other = await join(master, keys, label="other")
    assert await refused(other.call("com.example.limits.reg2")) == "wamp.error.no_such_procedure"
    await w(other.call("com.example.limits.reg0"))
    await w(regs[0].unregister())
    await w(s.register(lambda: 2, "com.example.limits.reg2"))


@aio
async def test_subscriptions_are_limited_per_session(master, keys):
    s = await join(master, keys, label="subscriber")
    subs = [await w(s.subscribe(lambda *a: None, f"com.example.limits.topic{i}")) for i in range(2)]
    assert await refused(s.subscribe(lambda *a: None, "com.example.limits.topic2")) == LIMIT
    await w(subs[1].unsubscribe())
    await w(s.subscribe(lambda *a: None, "com.example.limits.topic2"))
    other = await join(master, keys, label="other")
    for i in range(2):
        await w(other.subscribe(lambda *a: None, f"com.example.limits.topic{i}"))
