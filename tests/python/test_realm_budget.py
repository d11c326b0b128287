"""The outbound byte budget of a realm (--max-outbound-bytes-realm): when a realm's slow
readers hold more than it, the largest queues are dropped, although each stays within its
own session budget; the realm's other sessions go on."""

import asyncio

from autobahn.wamp.types import PublishOptions

from conftest import RawWamp, aio, join
from mgmt import session_gone as gone
from waiting import wait_until

MIB = 1024 * 1024
BLOB = "x" * (512 * 1024)
# Each session may queue 64 MiB, the realm 8 MiB: 40 MiB sent to a reader that stalls is
# within its own budget and only the realm's makes it go.
MASTER_EXTRA_ARGS = ["--max-outbound-bytes", str(64 * MIB), "--max-outbound-bytes-realm", str(8 * MIB)]
SENT = 80  # x 512 KiB = 40 MiB


@aio(timeout=120)
async def test_a_realm_over_its_budget_drops_its_largest_queue(master, keys):
    slow = await RawWamp.connect(master)
    await slow.join_superuser(keys.superuser)
    await slow.send([RawWamp.SUBSCRIBE, slow.next_id(), {}, "com.example.realmflood"])
    assert (await slow.recv())[0] == RawWamp.SUBSCRIBED
    # From here on `slow` never reads; `fast` reads everything.
    fast = await join(master, keys, label="fast")
    received = []
    await fast.subscribe(lambda *a: received.append(len(a[0]) if a else 0), "com.example.realmflood")
    pub = await join(master, keys, label="publisher")
    for i in range(SENT):
        pub.publish("com.example.realmflood", BLOB)
        if i % 10 == 0:
            await asyncio.sleep(0.01)
    await pub.publish("com.example.realmflood", "end", options=PublishOptions(acknowledge=True))
    await wait_until(lambda: gone(pub, slow.session_id), 10, what="the slow subscriber dropped")
    log = master.log_path.read_text(errors="replace")
    assert "over its budget of" in log, log[-3000:]
    # The realm's reader that keeps up stays and gets every event.
    await wait_until(lambda: len(received) == SENT + 1, 20, what=lambda: f"all events for the fast reader ({len(received)})")
    assert fast.is_attached()
