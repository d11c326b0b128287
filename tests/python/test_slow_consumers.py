"""Sessions that stop reading must cost the master a bounded amount of memory.

Before byte budgets, a subscriber or callee that never read let any sender make the master
buffer every message for it (64k messages of any size each): hundreds of MiB in seconds.
Now each session may have at most ``--max-outbound-bytes`` (16 MiB by default) waiting; past
that it is dropped (WebSocket close 1008, "slow consumer") and senders never wait for it.

Bound stated here: while 300 MiB are sent towards a session that does not read, the master's
resident memory grows by less than 128 MiB.
"""

import asyncio
from pathlib import Path

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from conftest import RawWamp, aio, http_get, join
from mgmt import session_gone as gone
from waiting import wait_until

MIB = 1024 * 1024
BLOB = "x" * (512 * 1024)
SENT = 600  # x 512 KiB = 300 MiB
BOUND = 128 * MIB


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def queued_bytes(master) -> int:
    status, body = http_get(master.http + "/metrics")
    assert status == 200, status
    for line in body.decode().splitlines():
        if line.startswith("fabric_outbound_queued_bytes "):
            return int(line.split()[1])
    raise AssertionError("no fabric_outbound_queued_bytes in /metrics")


@aio(timeout=120)
async def test_a_subscriber_that_does_not_read_is_dropped_and_memory_stays_bounded(master, keys):
    slow = await RawWamp.connect(master)
    await slow.join_superuser(keys.superuser)
    await slow.send([RawWamp.SUBSCRIBE, slow.next_id(), {}, "com.example.flood"])
    assert (await slow.recv())[0] == RawWamp.SUBSCRIBED
    # From here on `slow` never reads.
    pub = await join(master, keys, label="publisher")
    pid = master.proc.pid
    base = peak = rss(pid)
    for i in range(SENT):
        pub.publish("com.example.flood", BLOB)
        if i % 25 == 0:
            await asyncio.sleep(0)
            peak = max(peak, rss(pid))
    # The last publication is acknowledged: every one before it was handled by then.
    await pub.publish("com.example.flood", "end", options=PublishOptions(acknowledge=True))
    peak = max(peak, rss(pid))
    assert peak - base < BOUND, f"RSS grew by {(peak - base) // MIB} MiB"
    await wait_until(lambda: gone(pub, slow.session_id), 10, what="the slow subscriber dropped")
    # Others are unaffected: the publisher still works.
    assert await pub.call("wamp.session.count") >= 1
    # Every queued byte is accounted back once written or dropped: the replica's total
    # returns to zero when nothing waits (a leak would count against the total budget).
    await wait_until(lambda: queued_bytes(master) == 0, 10, what="no bytes left queued")


@aio(timeout=120)
async def test_a_callee_that_does_not_read_is_dropped_and_its_callers_get_errors(master, keys):
    slow = await RawWamp.connect(master)
    await slow.join_superuser(keys.superuser)
    await slow.send([RawWamp.REGISTER, slow.next_id(), {}, "com.example.sink"])
    assert (await slow.recv())[0] == RawWamp.REGISTERED
    caller = await join(master, keys, label="caller")
    pid = master.proc.pid
    base = peak = rss(pid)
    calls = []
    for i in range(SENT):
        calls.append(asyncio.ensure_future(caller.call("com.example.sink", BLOB)))
        if i % 25 == 0:
            await asyncio.sleep(0)
            peak = max(peak, rss(pid))
    done, pending = await asyncio.wait(calls, timeout=60)
    peak = max(peak, rss(pid))
    assert not pending, f"{len(pending)} calls never answered"
    errors = {c.exception().error for c in done if isinstance(c.exception(), ApplicationError)}
    assert len([c for c in done if c.exception() is None]) == 0
    assert errors, "the calls to a dropped callee must fail"
    assert peak - base < BOUND, f"RSS grew by {(peak - base) // MIB} MiB"
    await wait_until(lambda: gone(caller, slow.session_id), 10, what="the slow callee dropped")
