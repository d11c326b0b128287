"""The management-realm catalogue and domain procedures of the global realm (spec §6.1),
backed by the replicated state, against the real binary."""

import uuid

import pytest

from conftest import FABRIC_REALM, KeyPair, aio, join, join_expect_abort, w
from mgmt import call_error, closed, join_node, node_key, unique
from users import activated_user
from waiting import wait_until


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
    await wait_until(lambda: events, what="on_mrealm_created")
    assert events[0]["oid"] == m["oid"], events

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


@aio
async def test_mrealm_is_a_realm_until_deleted(master, keys):
    su = await join(master, keys)
    name = unique("live-")
    m = await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}))
    inside = await join(master, keys, realm=name)
    assert (inside.details.realm, inside.details.authrole) == (name, "owner")
    events = []
    await w(su.subscribe(lambda e: events.append(e), "crossbarfabriccenter.mrealm.on_realm_deleted"))

    deleted = await w(su.call("crossbarfabriccenter.mrealm.delete_mrealm", m["oid"]))
    assert deleted["oid"] == m["oid"] and deleted["unpaired"] == [], deleted
    await closed(inside)
    d = await join_expect_abort(master, keys, realm=name)
    assert d.reason == "wamp.error.no_such_realm", d
    e = await call_error(su, "crossbarfabriccenter.mrealm.get_mrealm", m["oid"])
    assert e.error == "crossbar.error.no_such_object", e
    await wait_until(lambda: events, what="on_realm_deleted")
    assert events[0]["oid"] == m["oid"], events


@aio
async def test_pair_join_unpair_node(master, keys, tmp_path):
    su = await join(master, keys)
    name = unique("nodes-")
    m = await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}))
    kp = node_key(tmp_path, "edge1")
    d = await join_expect_abort(master, key=kp, realm=None, authrole="node", authextra={"pubkey": kp.pubkey_hex})
    assert d.reason == "fabric.auth-failed.node-unpaired", d

    node = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node1", {"k": "v"}))
    assert node["mrealm_oid"] == m["oid"] and node["authid"] == "node1" and node["pubkey"] == kp.pubkey_hex, node
    e = await call_error(su, "crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node2")
    assert e.error == "fabric.node-already-paired", e
    e = await call_error(su, "crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, "no-such-mrealm", "n")
    assert e.error == "fabric.no-such-realm", e

    s = await join_node(master, kp)
    assert (s.details.realm, s.details.authid, s.details.authrole) == (name, "node1", "node")

    # A realm with a paired node is not deleted without cascade.
    e = await call_error(su, "crossbarfabriccenter.mrealm.delete_mrealm", m["oid"])
    assert e.error == "crossbar.error.dependent_objects", e

    out = await w(su.call("crossbarfabriccenter.mrealm.unpair_node_by_pubkey", kp.pubkey_hex))
    assert out["oid"] == node["oid"] and out["mrealm_oid"] == m["oid"] and len(out["killed"]) == 1, out
    left = await closed(s)
    assert left.reason == "wamp.close.auth-changed", left
    d = await join_expect_abort(master, key=kp, realm=None, authrole="node", authextra={"pubkey": kp.pubkey_hex})
    assert d.reason == "fabric.auth-failed.node-unpaired", d
    e = await call_error(su, "crossbarfabriccenter.mrealm.unpair_node", node["oid"])
    assert e.error == "fabric.node-not-paired", e

    # Re-paired (same oid), then the realm is deleted with cascade: the node is unpaired.
    again = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node1"))
    assert again["oid"] == node["oid"], again
    s = await join_node(master, kp)
    deleted = await w(su.call("crossbarfabriccenter.mrealm.delete_mrealm_by_name", name, True))
    assert deleted["unpaired"] == [node["oid"]], deleted
    await closed(s)
    d = await join_expect_abort(master, key=kp, realm=None, authrole="node", authextra={"pubkey": kp.pubkey_hex})
    assert d.reason == "fabric.auth-failed.node-unpaired", d


@aio
async def test_owners_manage_their_realms_only(master, keys, tmp_path):
    owner = await activated_user(master, tmp_path, unique("gina"))
    other = await activated_user(master, tmp_path, unique("hank"))
    name = unique("gina-")
    m = await w(owner.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}))
    email = owner.details.authid
    kp = KeyPair(tmp_path / f"{email.split('@')[0]}.priv", tmp_path / f"{email.split('@')[0]}.pub")
    inside = await join(master, key=kp, authid=email, authextra={"pubkey": kp.pubkey_hex}, realm=name)
    assert inside.details.authrole == "owner"
    guest = await join(master, key=kp, authid=email, authextra={"pubkey": kp.pubkey_hex}, realm=name, authrole="guest")
    assert guest.details.authrole == "guest"
    e = await call_error(other, "crossbarfabriccenter.mrealm.delete_mrealm", m["oid"])
    assert e.error == "fabric.not-authorized", e
    hank_kp_name = other.details.authid.split("@")[0]
    hk = KeyPair(tmp_path / f"{hank_kp_name}.priv", tmp_path / f"{hank_kp_name}.pub")
    d = await join_expect_abort(master, key=hk, authid=other.details.authid, authextra={"pubkey": hk.pubkey_hex}, realm=name)
    assert d.reason == "wamp.error.not_authorized", d
    await w(owner.call("crossbarfabriccenter.mrealm.delete_mrealm", m["oid"]))
    await closed(inside)
