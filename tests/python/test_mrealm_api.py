"""The management-realm catalogue and domain procedures of the global realm (spec §6.1),
backed by the replicated state, against the real binary."""

import asyncio
import re
import time
import uuid

import pytest
from autobahn.wamp.exception import ApplicationError

from conftest import FABRIC_REALM, KeyPair, aio, join, join_expect_abort, run_keygen, w

CODE = re.compile(r"activation code for (\S+): (\w{4}-\w{4}-\w{4})")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def call_error(session, uri, *args):
    with pytest.raises(ApplicationError) as e:
        await w(session.call(uri, *args))
    return e.value


async def activated_user(master, tmp_path, name):
    r = run_keygen(tmp_path, name=name, user_id=f"{name}@example.com")
    assert r.returncode == 0, r.stderr
    kp = KeyPair(tmp_path / f"{name}.priv", tmp_path / f"{name}.pub")
    email = f"{name}@example.com"
    await join_expect_abort(master, key=kp, authid=email, authextra={"pubkey": kp.pubkey_hex})
    deadline = time.monotonic() + 5
    code = None
    while code is None and time.monotonic() < deadline:
        text = master.log_path.read_bytes().decode("utf-8", "replace")
        found = [c for who, c in CODE.findall(text) if who == email]
        code = found[-1] if found else None
        if code is None:
            await asyncio.sleep(0.05)
    assert code, master.log_tail()
    extra = {"pubkey": kp.pubkey_hex, "activation_code": code}
    s = await join(master, key=kp, authid=email, authextra=extra)
    s.leave()
    return await join(master, key=kp, authid=email, authextra={"pubkey": kp.pubkey_hex})


@aio
async def test_domain_status_version_license(master, keys):
    s = await join(master, keys)
    st = await w(s.call("crossbarfabriccenter.domain.get_status"))
    assert st["type"] == "domain" and st["realm"] == FABRIC_REALM, st
    assert {"now", "started", "uptime", "tick"} <= set(st), st
    v = await w(s.call("crossbarfabriccenter.domain.get_version"))
    assert "cbor" in v["supported_serializers"], v
    lic = await w(s.call("crossbarfabriccenter.domain.get_license"))
    assert "features" in lic and "limits" in lic, lic


@aio
async def test_create_get_list_mrealm(master, keys):
    s = await join(master, keys)
    events = []
    await w(s.subscribe(lambda m: events.append(m), "crossbarfabriccenter.mrealm.on_mrealm_created"))
    name = unique("mr-")
    m = await w(s.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name, "label": "L", "tags": ["a"]}))
    assert m["name"] == name and m["label"] == "L" and m["tags"] == ["a"], m
    uuid.UUID(m["oid"])
    assert isinstance(m["created"], int) and m["owner"], m
    assert await w(s.call("crossbarfabriccenter.mrealm.get_mrealm", m["oid"])) == m
    assert await w(s.call("crossbarfabriccenter.mrealm.get_mrealm_by_name", name)) == m
    assert m["oid"] in await w(s.call("crossbarfabriccenter.mrealm.list_mrealms"))
    assert name in await w(s.call("crossbarfabriccenter.mrealm.list_mrealms", True))
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert events and events[0]["oid"] == m["oid"], events

    e = await call_error(s, "crossbarfabriccenter.mrealm.create_mrealm", {"name": name})
    assert e.error == "crossbar.error.already_exists", e


@pytest.mark.parametrize("bad", ["ab", "1abc", "wamp", "crossbar.x", "has space", ""])
@aio
async def test_invalid_mrealm_names(master, keys, bad):
    s = await join(master, keys)
    e = await call_error(s, "crossbarfabriccenter.mrealm.create_mrealm", {"name": bad})
    assert e.error == "fabric.invalid-realm", e


@aio
async def test_bad_and_unknown_oids(master, keys):
    s = await join(master, keys)
    e = await call_error(s, "crossbarfabriccenter.mrealm.get_mrealm", "not-a-uuid")
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(s, "crossbarfabriccenter.mrealm.get_mrealm", str(uuid.uuid4()))
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(s, "crossbarfabriccenter.mrealm.get_mrealm_by_name", "no-such-realm-x")
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(s, "crossbarfabriccenter.mrealm.create_mrealm", "not a dict")
    assert e.error == "wamp.error.invalid_argument", e


@aio
async def test_users_see_their_own_mrealms(master, keys, tmp_path):
    su = await join(master, keys)
    theirs = await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": unique("su-")}))
    u = await activated_user(master, tmp_path, unique("frank"))
    mine = await w(u.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": unique("fr-")}))
    listed = await w(u.call("crossbarfabriccenter.mrealm.list_mrealms"))
    assert listed == [mine["oid"]], listed
    assert theirs["oid"] in await w(su.call("crossbarfabriccenter.mrealm.list_mrealms"))
    assert mine["oid"] in await w(su.call("crossbarfabriccenter.mrealm.list_mrealms"))


@aio
async def test_anonymous_cannot_create(master, keys):
    s = await join(master, keys, auth="anonymous")
    e = await call_error(s, "crossbarfabriccenter.mrealm.create_mrealm", {"name": unique("an-")})
    assert e.error == "wamp.error.not_authorized", e
