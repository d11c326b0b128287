"""Holes an attacker would try, each pinned by a test that failed before its fix.

- A foreign key joining the global realm as authid ``superuser`` used to get a LOGIN code
  (logged and mailed) that activated it as the superuser.
- Anonymous sessions chose their own authid (``superuser`` included).
- One call poisoned the state for everyone: a value nested 200 deep (accepted by CBOR) was
  stored, then could not be read back, so ``list_nodes`` failed for every user, for good.
"""

import asyncio

from conftest import FABRIC_REALM, aio, join, join_expect_abort, w
from mgmt import closed, new_mrealm, node_key, unique
from users import codes_for, new_key

MRLM = "crossbarfabriccenter.mrealm."


def nested(depth: int):
    v = "bottom"
    for _ in range(depth):
        v = [v]
    return v


@aio
async def test_a_foreign_key_cannot_claim_the_superuser_authid(master, keys, tmp_path):
    stranger = new_key(tmp_path, "mallory")
    for authid in ("superuser", "SuperUser", "fabric-master", "anonymous-00000001"):
        details = await join_expect_abort(
            master, keys, realm=FABRIC_REALM, authid=authid, key=stranger
        )
        assert details.reason == "fabric.auth-failed.invalid-parameters", (authid, details)
        assert "reserved" in (details.message or ""), details
    # No activation code was issued for the reserved authid: the ABORT above is final.
    assert codes_for(master, "superuser") == []
    # The real superuser still joins with its configured key.
    su = await join(master, keys)
    assert su.details.authid == "superuser"
    su.leave()


@aio
async def test_anonymous_sessions_get_an_authid_chosen_by_the_master(master, keys):
    for requested in ("superuser", "node1", None):
        s = await join(master, keys, realm="realm1", auth="anonymous", authid=requested)
        assert s.details.authrole == "guest"
        assert s.details.authid.startswith("anonymous-"), s.details.authid
        assert s.details.authid != requested
        s.leave()


@aio
async def test_a_deeply_nested_value_is_refused_for_every_serializer_and_poisons_nothing(
    master, keys, tmp_path
):
    m = await new_mrealm(master, keys)
    for serializer in ("cbor", "msgpack", "json"):
        attacker = await join(master, keys, serializer=serializer)
        kp = node_key(tmp_path, unique("deep"))
        call = attacker.call(MRLM + "pair_node", kp.pubkey_hex, m.name, "x", {"x": nested(200)})
        # The message is refused as a protocol violation before anything is stored: the
        # master ABORTs the session (autobahn then reports the transport as lost).
        await closed(attacker)
        log = master.log_path.read_text(errors="replace")
        # CBOR and msgpack decoders go deeper than the store can read back: our limit
        # refuses; JSON's decoder stops first, at 128 levels.
        why = "recursion limit exceeded" if serializer == "json" else "values nest deeper than 100"
        assert f"malformed {serializer} payload: {why}" in log, log[-2000:]
        try:
            await asyncio.wait_for(call, 5)
        except Exception:
            pass
        else:
            raise AssertionError("the nested call got an answer")
        # Everyone can still list nodes, and the key was not paired.
        su = await join(master, keys)
        assert kp.pubkey_hex not in [n for n in await w(su.call(MRLM + "list_nodes"))]
        lookup = await su.call(MRLM + "list_nodes_by_mrealm_name", m.name)
        assert lookup == []
        su.leave()
    # Nesting within the limit is stored and read back (the limit is not a blanket refusal).
    kp = node_key(tmp_path, unique("ok"))
    node = await w(m.su.call(MRLM + "pair_node", kp.pubkey_hex, m.name, "y", {"x": nested(90)}))
    assert (await w(m.su.call(MRLM + "get_node", node["oid"])))["authextra"] == {"x": nested(90)}
    assert node["oid"] in await w(m.su.call(MRLM + "list_nodes"))
    await w(m.su.call(MRLM + "unpair_node", node["oid"]))


@aio
async def test_a_tenant_neither_reads_nor_hears_of_another_tenants_realm(master, keys, tmp_path):
    from users import activated_user

    alice = await activated_user(master, tmp_path, unique("alice"))
    bob = await activated_user(master, tmp_path, unique("bob"))
    su = await join(master, keys, label="superuser")
    heard = {"bob": [], "su": []}
    topics = ["on_node_paired", "on_node_unpaired", "on_mrealm_created", "on_mrealm_modified"]
    for who, s in (("bob", bob), ("su", su)):
        for t in topics:
            await s.subscribe(lambda *a, _t=t, _w=who, **k: heard[_w].append(_t), MRLM + t)

    a_realm = await w(alice.call(MRLM + "create_mrealm", {"name": unique("alice-")}))
    kp = node_key(tmp_path, unique("n"))
    node = await w(alice.call(MRLM + "pair_node", kp.pubkey_hex, a_realm["name"], "n1"))
    await w(alice.call(MRLM + "modify_mrealm", a_realm["oid"], {"label": "mine"}))
    await w(alice.call(MRLM + "unpair_node", node["oid"]))
    # Bob's own realm is the marker: its event comes after Alice's, on the same path.
    b_realm = await w(bob.call(MRLM + "create_mrealm", {"name": unique("bob-")}))
    from waiting import wait_until

    await wait_until(lambda: "on_mrealm_created" in heard["bob"], 5, what="bob's own event")
    assert heard["bob"] == ["on_mrealm_created"], heard["bob"]
    # The superuser hears everything.
    await wait_until(lambda: heard["su"].count("on_mrealm_created") == 2, 5, what="su's events")
    assert {"on_node_paired", "on_node_unpaired", "on_mrealm_modified"} <= set(heard["su"])

    # Bob cannot read Alice's realm by oid or by name: for him it does not exist.
    for call in (
        bob.call(MRLM + "get_mrealm", a_realm["oid"]),
        bob.call(MRLM + "get_mrealm_by_name", a_realm["name"]),
    ):
        try:
            await w(call)
        except Exception as e:
            assert getattr(e, "error", None) == "crossbar.error.no_such_object", e
        else:
            raise AssertionError("bob read alice's management realm")
    # Each reads their own; the superuser reads both.
    assert (await w(alice.call(MRLM + "get_mrealm", a_realm["oid"])))["name"] == a_realm["name"]
    assert (await w(bob.call(MRLM + "get_mrealm_by_name", b_realm["name"])))["oid"] == b_realm["oid"]
    assert (await w(su.call(MRLM + "get_mrealm", a_realm["oid"])))["oid"] == a_realm["oid"]


@aio
async def test_users_neither_register_master_procedures_nor_publish_master_events(
    master, keys, tmp_path
):
    from autobahn.wamp.exception import ApplicationError
    from autobahn.wamp.types import PublishOptions

    from users import activated_user

    mallory = await activated_user(master, tmp_path, unique("mallory"))
    su = await join(master, keys, label="superuser")
    for s in (mallory, su):
        try:
            await w(s.register(lambda: "owned", "crossbarfabriccenter.domain.get_status_fake"))
        except ApplicationError as e:
            assert e.error == "wamp.error.not_authorized", e
        else:
            raise AssertionError("a user registered a master procedure")
        try:
            await w(
                s.publish(
                    MRLM + "on_node_unpaired",
                    {"oid": "forged"},
                    options=PublishOptions(acknowledge=True),
                )
            )
        except ApplicationError as e:
            assert e.error == "wamp.error.not_authorized", e
        else:
            raise AssertionError("a user published a master event")
    # Calling the API and hearing its events are still theirs.
    assert isinstance(await w(mallory.call(MRLM + "list_mrealms")), list)
    # Outside the master's namespace the global realm stays open to users, as in the reference.
    await w(mallory.publish("com.example.chat", "hi", options=PublishOptions(acknowledge=True)))
