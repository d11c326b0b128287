"""Users, organizations, management-realm roles and the node catalogue of the global realm
(spec §6.1), including the procedures the reference leaves unimplemented, against the real
binary."""

import uuid

from autobahn.wamp.exception import ApplicationError

from conftest import aio, join, w
from mgmt import call_error, closed, join_node, node_key, unique
from users import join_as, join_as_refused, user
from waiting import wait_until

U = "crossbarfabriccenter.user."
M = "crossbarfabriccenter.mrealm."

USER_FIELDS = {"oid", "label", "description", "tags", "email", "registered", "pubkey"}
ORG_FIELDS = {"oid", "label", "description", "tags", "name", "otype", "registered"}
NODE_FIELDS = {
    "oid", "label", "description", "tags", "owner_oid", "pubkey", "cluster_ip",
    "mrealm_oid", "authid", "authextra",
}


async def subscribe(session, topic):
    events = []
    await w(session.subscribe(lambda *a, **kw: events.append(a[0] if a else kw), topic))
    return events


async def got(events, pred, what):
    return await wait_until(lambda: any(pred(e) for e in events), what=lambda: f"{what}: {events!r}")


# ---- users ------------------------------------------------------------------------------


@aio
async def test_users_get_list_and_lookup(master, keys, tmp_path):
    su = await join(master, keys)
    a, _, email, a_oid = await user(master, tmp_path, "ulrike")
    me = await w(su.call(U + "get_user_by_email", "superuser"))
    assert set(me) == USER_FIELDS and me["email"] == "superuser", me
    u = await w(su.call(U + "get_user", a_oid))
    assert set(u) == USER_FIELDS, u
    assert u["email"] == email and isinstance(u["registered"], int) and u["pubkey"] is None, u
    uuid.UUID(u["oid"])
    assert await w(a.call(U + "get_user", a_oid)) == u
    users = await w(su.call(U + "list_users"))
    assert a_oid in users and me["oid"] in users and users == sorted(users), users

    e = await call_error(su, U + "get_user", "not-a-uuid")
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(su, U + "get_user", str(uuid.uuid4()))
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(su, U + "get_user_by_email", "nobody@example.com")
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(su, U + "get_user_by_pubkey", "ab" * 32)
    assert e.error == "crossbar.error.no_such_object", e


@aio
async def test_modify_user(master, keys, tmp_path):
    su = await join(master, keys)
    a, kp, email, a_oid = await user(master, tmp_path, "mona")
    b, _, b_email, b_oid = await user(master, tmp_path, "ned")

    out = await w(a.call(U + "modify_user", a_oid, {"label": "Mona", "tags": ["x"], "pubkey": kp.pubkey_hex.upper()}))
    assert out["label"] == "Mona" and out["tags"] == ["x"] and out["pubkey"] == kp.pubkey_hex, out
    assert out["oid"] == a_oid and out["email"] == email, out
    assert await w(su.call(U + "get_user_by_pubkey", kp.pubkey_hex)) == out
    assert await w(su.call(U + "get_user", a_oid)) == out

    # The superuser may change anyone; nobody else may.
    out = await w(su.call(U + "modify_user", b_oid, {"description": "by su"}))
    assert out["description"] == "by su", out
    e = await call_error(b, U + "modify_user", a_oid, {"label": "hijack"})
    assert e.error == "fabric.not-authorized", e

    e = await call_error(a, U + "modify_user", a_oid, {"email": b_email})
    assert e.error == "crossbar.error.already_exists", e
    e = await call_error(a, U + "modify_user", a_oid, {"email": "superuser"})
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(a, U + "modify_user", a_oid, {"oid": str(uuid.uuid4())})
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(a, U + "modify_user", a_oid, {"registered": 1})
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(a, U + "modify_user", a_oid, {"pubkey": "xyz"})
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(a, U + "modify_user", a_oid, {"tags": "not a list"})
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(a, U + "modify_user", a_oid, "not a dict")
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(su, U + "modify_user", str(uuid.uuid4()), {"label": "x"})
    assert e.error == "crossbar.error.no_such_object", e
    su_oid = (await w(su.call(U + "get_user_by_email", "superuser")))["oid"]
    e = await call_error(su, U + "modify_user", su_oid, {"email": "root@example.com"})
    assert e.error == "wamp.error.invalid_argument", e

    # A new e-mail is unique like the old one, and the old one is free again.
    new_email = f"{unique('mona')}@example.org"
    out = await w(a.call(U + "modify_user", a_oid, {"email": new_email}))
    assert out["email"] == new_email, out
    assert (await w(su.call(U + "get_user_by_email", new_email)))["oid"] == a_oid
    e = await call_error(su, U + "get_user_by_email", email)
    assert e.error == "crossbar.error.no_such_object", e


@aio
async def test_anonymous_is_not_a_user(master, keys):
    s = await join(master, keys, auth="anonymous")
    for uri, args in [
        ("list_organizations", []),
        ("list_users", []),
        ("create_organization", [{"name": unique("anon")}]),
    ]:
        e = await call_error(s, U + uri, *args)
        assert e.error == "wamp.error.not_authorized", (uri, e)


# ---- organizations ----------------------------------------------------------------------


@aio
async def test_organization_lifecycle(master, keys):
    su = await join(master, keys)
    created_ev = await subscribe(su, U + "on_organization_created")
    modified_ev = await subscribe(su, U + "on_organization_modified")
    deleted_ev = await subscribe(su, U + "on_organization_deleted")
    me = await w(su.call(U + "get_user_by_email", "superuser"))

    name = unique("org-")
    org = await w(su.call(U + "create_organization", {"name": name, "label": "L", "tags": ["t"], "otype": 2}))
    assert set(org) == ORG_FIELDS, org
    assert (org["name"], org["label"], org["tags"], org["otype"], org["description"]) == (name, "L", ["t"], 2, None)
    assert isinstance(org["registered"], int), org
    uuid.UUID(org["oid"])
    await got(created_ev, lambda e: e == org, "on_organization_created")
    assert await w(su.call(U + "get_organization", org["oid"])) == org
    assert org["oid"] in await w(su.call(U + "list_organizations"))
    assert await w(su.call(U + "list_users_by_organization", org["oid"])) == [me["oid"]]
    assert org["oid"] in await w(su.call(U + "list_organizations_by_user", me["oid"]))
    assert await w(su.call(U + "get_roles_on_organization_for_user", org["oid"], me["oid"])) == ["owner"]

    e = await call_error(su, U + "create_organization", {"name": name})
    assert e.error == "crossbar.error.already_exists", e
    for bad in [{"label": "no name"}, {"name": ""}, {"name": 5}, {"name": unique("o"), "otype": 9}, "x"]:
        e = await call_error(su, U + "create_organization", bad)
        assert e.error == "wamp.error.invalid_argument", (bad, e)

    out = await w(su.call(U + "modify_organization", org["oid"], {"label": "L2", "description": "D", "otype": 3}))
    assert (out["label"], out["description"], out["otype"], out["name"]) == ("L2", "D", 3, name), out
    assert out["oid"] == org["oid"] and out["registered"] == org["registered"], out
    await got(modified_ev, lambda e: e == out, "on_organization_modified")
    renamed = unique("org-")
    out = await w(su.call(U + "modify_organization", org["oid"], {"name": renamed}))
    assert out["name"] == renamed, out
    other = await w(su.call(U + "create_organization", {"name": unique("org-")}))
    e = await call_error(su, U + "modify_organization", org["oid"], {"name": other["name"]})
    assert e.error == "crossbar.error.already_exists", e
    for bad in [{"oid": str(uuid.uuid4())}, {"registered": 1}, {"otype": 7}, {"name": ""}, {"tags": 3}]:
        e = await call_error(su, U + "modify_organization", org["oid"], bad)
        assert e.error == "wamp.error.invalid_argument", (bad, e)
    e = await call_error(su, U + "modify_organization", str(uuid.uuid4()), {"label": "x"})
    assert e.error == "crossbar.error.no_such_object", e

    e = await call_error(su, U + "get_organization", "nope")
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(su, U + "get_organization", str(uuid.uuid4()))
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(su, U + "list_users_by_organization", str(uuid.uuid4()))
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(su, U + "list_organizations_by_user", str(uuid.uuid4()))
    assert e.error == "crossbar.error.no_such_object", e

    # The creator's own role goes with the organization: no cascade needed.
    deleted = await w(su.call(U + "delete_organization", org["oid"]))
    assert deleted["oid"] == org["oid"] and deleted["name"] == renamed, deleted
    await got(deleted_ev, lambda e: e["oid"] == org["oid"], "on_organization_deleted")
    e = await call_error(su, U + "get_organization", org["oid"])
    assert e.error == "crossbar.error.no_such_object", e
    assert org["oid"] not in await w(su.call(U + "list_organizations"))
    assert org["oid"] not in await w(su.call(U + "list_organizations_by_user", me["oid"]))
    e = await call_error(su, U + "delete_organization", org["oid"])
    assert e.error == "crossbar.error.no_such_object", e


@aio
async def test_organization_members_and_permissions(master, keys, tmp_path):
    su = await join(master, keys)
    a, _, _, a_oid = await user(master, tmp_path, "olga")
    b, _, _, b_oid = await user(master, tmp_path, "paul")
    org = await w(a.call(U + "create_organization", {"name": unique("olga-org-")}))
    oid = org["oid"]
    assert await w(a.call(U + "get_roles_on_organization_for_user", oid, a_oid)) == ["owner"]

    # Not an owner: b can look, not touch.
    assert await w(b.call(U + "get_organization", oid)) == org
    for uri, args in [
        ("modify_organization", [oid, {"label": "x"}]),
        ("delete_organization", [oid]),
        ("set_roles_on_organization_for_user", [oid, b_oid, ["owner"]]),
    ]:
        e = await call_error(b, U + uri, *args)
        assert e.error == "fabric.not-authorized", (uri, e)

    # Names and numbers are both roles; the answer is names.
    assert await w(a.call(U + "set_roles_on_organization_for_user", oid, b_oid, ["user", 2, "user"])) == ["admin", "user"]
    assert await w(b.call(U + "get_roles_on_organization_for_user", oid, b_oid)) == ["admin", "user"]
    assert await w(a.call(U + "list_users_by_organization", oid)) == sorted([a_oid, b_oid])
    assert await w(a.call(U + "list_organizations_by_user", b_oid)) == [oid]
    e = await call_error(a, U + "set_roles_on_organization_for_user", oid, b_oid, ["king"])
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(a, U + "set_roles_on_organization_for_user", oid, b_oid, [7])
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(a, U + "set_roles_on_organization_for_user", oid, b_oid, "owner")
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(a, U + "set_roles_on_organization_for_user", oid, str(uuid.uuid4()), ["user"])
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(a, U + "set_roles_on_organization_for_user", str(uuid.uuid4()), b_oid, ["user"])
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(a, U + "get_roles_on_organization_for_user", oid, str(uuid.uuid4()))
    assert e.error == "crossbar.error.no_such_object", e
    # The last owner cannot give up ownership.
    e = await call_error(a, U + "set_roles_on_organization_for_user", oid, a_oid, ["admin"])
    assert e.error == "wamp.error.invalid_argument", e

    # A second owner may change the organization.
    await w(a.call(U + "set_roles_on_organization_for_user", oid, b_oid, ["owner"]))
    out = await w(b.call(U + "modify_organization", oid, {"label": "by paul"}))
    assert out["label"] == "by paul", out
    await w(b.call(U + "set_roles_on_organization_for_user", oid, b_oid, ["guest"]))
    assert await w(b.call(U + "get_roles_on_organization_for_user", oid, b_oid)) == ["guest"]

    # Members other than the caller keep the organization unless cascade.
    e = await call_error(a, U + "delete_organization", oid)
    assert e.error == "crossbar.error.dependent_objects", e
    assert await w(a.call(U + "set_roles_on_organization_for_user", oid, b_oid, [])) == []
    assert await w(a.call(U + "get_roles_on_organization_for_user", oid, b_oid)) == []
    assert await w(a.call(U + "list_users_by_organization", oid)) == [a_oid]
    assert await w(a.call(U + "list_organizations_by_user", b_oid)) == []
    assert await w(a.call(U + "set_roles_on_organization_for_user", oid, b_oid, None)) == []
    await w(a.call(U + "set_roles_on_organization_for_user", oid, b_oid, ["user"]))
    deleted = await w(a.call(U + "delete_organization", oid, True))
    assert deleted["oid"] == oid, deleted
    assert await w(su.call(U + "list_organizations_by_user", b_oid)) == []

    # The superuser manages any organization.
    org2 = await w(a.call(U + "create_organization", {"name": unique("olga-org-")}))
    out = await w(su.call(U + "modify_organization", org2["oid"], {"label": "by su"}))
    assert out["label"] == "by su", out
    await w(su.call(U + "delete_organization", org2["oid"]))


# ---- management realms: modify and roles ------------------------------------------------


@aio
async def test_modify_mrealm(master, keys, tmp_path):
    su = await join(master, keys)
    events = await subscribe(su, M + "on_mrealm_modified")
    a, _, _, _ = await user(master, tmp_path, "quinn")
    name = unique("mod-")
    m = await w(a.call(M + "create_mrealm", {"name": name}))
    out = await w(a.call(M + "modify_mrealm", m["oid"], {"label": "L", "description": "D", "tags": ["x"], "name": name}))
    assert (out["label"], out["description"], out["tags"], out["name"]) == ("L", "D", ["x"], name), out
    assert (out["oid"], out["owner"], out["created"]) == (m["oid"], m["owner"], m["created"]), out
    await got(events, lambda e: e == out, "on_mrealm_modified")
    assert await w(a.call(M + "get_mrealm", m["oid"])) == out

    e = await call_error(a, M + "modify_mrealm", m["oid"], {"name": unique("other-")})
    assert e.error == "wamp.error.invalid_argument", e
    for bad in [{"owner": str(uuid.uuid4())}, {"created": 1}, {"oid": str(uuid.uuid4())}, {"tags": 1}]:
        e = await call_error(a, M + "modify_mrealm", m["oid"], bad)
        assert e.error == "wamp.error.invalid_argument", (bad, e)
    e = await call_error(a, M + "modify_mrealm", "bad", {"label": "x"})
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(a, M + "modify_mrealm", str(uuid.uuid4()), {"label": "x"})
    assert e.error == "crossbar.error.no_such_object", e
    b, _, _, _ = await user(master, tmp_path, "rita")
    e = await call_error(b, M + "modify_mrealm", m["oid"], {"label": "x"})
    assert e.error == "fabric.not-authorized", e
    out = await w(su.call(M + "modify_mrealm", m["oid"], {"label": "by su"}))
    assert out["label"] == "by su", out


@aio
async def test_mrealm_roles_let_users_in(master, keys, tmp_path):
    a, a_kp, a_email, a_oid = await user(master, tmp_path, "sara")
    b, b_kp, b_email, b_oid = await user(master, tmp_path, "tom")
    name = unique("team-")
    m = await w(a.call(M + "create_mrealm", {"name": name}))
    d = await join_as_refused(master, b_kp, b_email, name, "guest")
    assert d.reason == "wamp.error.not_authorized", d
    assert await w(a.call(M + "get_roles_on_mrealm_for_user", m["oid"], a_oid)) == ["owner", "admin", "user", "guest"]
    assert await w(a.call(M + "get_roles_on_mrealm_for_user", m["oid"], b_oid)) == []

    # Only an owner grants.
    e = await call_error(b, M + "set_roles_on_mrealm_for_user", m["oid"], b_oid, ["owner"])
    assert e.error == "fabric.not-authorized", e
    assert await w(a.call(M + "set_roles_on_mrealm_for_user", m["oid"], b_oid, ["guest", 2])) == ["admin", "guest"]
    assert await w(b.call(M + "get_roles_on_mrealm_for_user", m["oid"], b_oid)) == ["admin", "guest"]
    e = await call_error(b, M + "get_roles_on_mrealm_for_user", m["oid"], a_oid)
    assert e.error == "fabric.not-authorized", e
    assert m["oid"] in await w(b.call(M + "list_mrealms"))

    admin = await join_as(master, b_kp, b_email, name, "admin")
    assert (admin.details.realm, admin.details.authrole) == (name, "admin")
    guest = await join_as(master, b_kp, b_email, name, "guest")
    assert guest.details.authrole == "guest"
    d = await join_as_refused(master, b_kp, b_email, name, "owner")
    assert d.reason == "wamp.error.not_authorized", d
    # Admin is not owner: no managing the realm from the global realm.
    e = await call_error(b, M + "modify_mrealm", m["oid"], {"label": "x"})
    assert e.error == "fabric.not-authorized", e

    # Taking a role away closes the sessions joined under it, and only those.
    assert await w(a.call(M + "set_roles_on_mrealm_for_user", m["oid"], b_oid, [4])) == ["guest"]
    left = await closed(admin)
    assert left.reason == "wamp.close.auth-changed", left
    # Marker: a round trip of the guest session after the change; a close of it would come first.
    await w(guest.call(M + "get_status"))
    assert not guest.left_f.done()
    d = await join_as_refused(master, b_kp, b_email, name, "admin")
    assert d.reason == "wamp.error.not_authorized", d

    assert await w(a.call(M + "set_roles_on_mrealm_for_user", m["oid"], b_oid, [3])) == ["user"]
    await closed(guest)
    u = await join_as(master, b_kp, b_email, name, "user")
    assert u.details.authrole == "user"

    # Revoking everything: out, and the realm is no longer listed for them.
    assert await w(a.call(M + "set_roles_on_mrealm_for_user", m["oid"], b_oid, [])) == []
    await closed(u)
    assert m["oid"] not in await w(b.call(M + "list_mrealms"))
    assert await w(a.call(M + "set_roles_on_mrealm_for_user", m["oid"], b_oid, [])) == []

    # A second owner can manage; the last owner cannot step down.
    e = await call_error(a, M + "set_roles_on_mrealm_for_user", m["oid"], a_oid, ["admin"])
    assert e.error == "wamp.error.invalid_argument", e
    await w(a.call(M + "set_roles_on_mrealm_for_user", m["oid"], b_oid, ["owner"]))
    out = await w(b.call(M + "modify_mrealm", m["oid"], {"label": "by tom"}))
    assert out["label"] == "by tom", out
    assert await w(b.call(M + "set_roles_on_mrealm_for_user", m["oid"], a_oid, ["guest"])) == ["guest"]
    e = await call_error(a, M + "modify_mrealm", m["oid"], {"label": "x"})
    assert e.error == "fabric.not-authorized", e

    for bad in [["king"], [0], [5], "owner", [True]]:
        e = await call_error(b, M + "set_roles_on_mrealm_for_user", m["oid"], a_oid, bad)
        assert e.error == "wamp.error.invalid_argument", (bad, e)
    e = await call_error(b, M + "set_roles_on_mrealm_for_user", m["oid"], str(uuid.uuid4()), ["guest"])
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(b, M + "set_roles_on_mrealm_for_user", str(uuid.uuid4()), a_oid, ["guest"])
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(b, M + "set_roles_on_mrealm_for_user", "bad", a_oid, ["guest"])
    assert e.error == "wamp.error.invalid_argument", e
    e = await call_error(b, M + "get_roles_on_mrealm_for_user", m["oid"], str(uuid.uuid4()))
    assert e.error == "crossbar.error.no_such_object", e


# ---- nodes on the global realm ----------------------------------------------------------


@aio
async def test_global_node_catalogue(master, keys, tmp_path):
    su = await join(master, keys)
    a, _, _, a_oid = await user(master, tmp_path, "vera")
    b, _, _, _ = await user(master, tmp_path, "walt")
    name = unique("fleet-")
    m = await w(a.call(M + "create_mrealm", {"name": name}))
    kp = node_key(tmp_path, unique("edge"))
    node = await w(a.call(M + "pair_node", kp.pubkey_hex, name, "node1", {"k": "v"}))
    oid = node["oid"]

    assert await w(a.call(M + "get_node_by_name", name, "node1")) == node
    assert await w(a.call(M + "get_node", oid)) == node
    assert set(node) == NODE_FIELDS and node["owner_oid"] == a_oid, node
    assert await w(a.call(M + "list_nodes")) == [oid]
    assert await w(a.call(M + "list_nodes", True)) == ["node1"]
    assert oid in await w(su.call(M + "list_nodes"))
    assert await w(b.call(M + "list_nodes")) == []
    assert await w(a.call(M + "list_nodes_by_mrealm", m["oid"])) == [oid]
    assert await w(a.call(M + "list_nodes_by_mrealm", m["oid"], True)) == ["node1"]
    assert await w(a.call(M + "list_nodes_by_mrealm_name", name)) == [oid]
    assert await w(a.call(M + "list_nodes_by_mrealm_name", name, True)) == ["node1"]

    st = await w(a.call(M + "stat_node", oid))
    assert st == {**node, "paired": True, "mrealm_name": name, "online": False}, st
    s = await join_node(master, kp)
    assert isinstance((await w(a.call(M + "stat_node", oid)))["online"], bool)

    # Outsiders see nothing of it.
    for uri, args in [
        ("get_node", [oid]),
        ("stat_node", [oid]),
        ("get_node_by_name", [name, "node1"]),
        ("list_nodes_by_mrealm", [m["oid"]]),
        ("list_nodes_by_mrealm_name", [name]),
        ("modify_node", [oid, {"label": "x"}]),
        ("delete_node", [oid]),
        ("unpair_node_by_name", [name, "node1"]),
    ]:
        e = await call_error(b, M + uri, *args)
        assert e.error == "fabric.not-authorized", (uri, e)

    out = await w(a.call(M + "modify_node", oid, {"label": "N", "tags": ["edge"], "cluster_ip": "10.0.0.1", "authextra": {"x": 1}}))
    assert (out["label"], out["tags"], out["cluster_ip"], out["authextra"]) == ("N", ["edge"], "10.0.0.1", {"x": 1}), out
    assert (out["pubkey"], out["authid"], out["mrealm_oid"]) == (node["pubkey"], "node1", m["oid"]), out
    assert await w(a.call(M + "get_node", oid)) == out
    for bad in [{"pubkey": "ab" * 32}, {"authid": "n2"}, {"mrealm_oid": None}, {"oid": str(uuid.uuid4())}, {"owner_oid": a_oid}]:
        e = await call_error(a, M + "modify_node", oid, bad)
        assert e.error == "wamp.error.invalid_argument", (bad, e)

    e = await call_error(a, M + "delete_node", oid)
    assert e.error == "crossbar.error.dependent_objects" and name in e.args[0], e

    e = await call_error(a, M + "get_node_by_name", name, "node2")
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(a, M + "get_node_by_name", "no-such-mrealm", "node1")
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(a, M + "unpair_node_by_name", name, "node2")
    assert e.error == "crossbar.error.no_such_object", e
    for uri in ["get_node", "stat_node", "delete_node"]:
        e = await call_error(a, M + uri, str(uuid.uuid4()))
        assert e.error == "crossbar.error.no_such_object", (uri, e)
        e = await call_error(a, M + uri, "bad-oid")
        assert e.error == "wamp.error.invalid_argument", (uri, e)
    e = await call_error(a, M + "list_nodes_by_mrealm", str(uuid.uuid4()))
    assert e.error == "crossbar.error.no_such_object", e
    e = await call_error(a, M + "list_nodes_by_mrealm_name", "no-such-mrealm")
    assert e.error == "crossbar.error.no_such_object", e

    unpaired_ev = await subscribe(su, M + "on_node_unpaired")
    out = await w(a.call(M + "unpair_node_by_name", name, "node1"))
    assert out["oid"] == oid and out["mrealm_oid"] == m["oid"] and len(out["killed"]) == 1, out
    left = await closed(s)
    assert left.reason == "wamp.close.auth-changed", left
    await got(unpaired_ev, lambda e: e["oid"] == oid, "on_node_unpaired")
    e = await call_error(a, M + "unpair_node_by_name", name, "node1")
    assert e.error == "crossbar.error.no_such_object", e

    st = await w(a.call(M + "stat_node", oid))
    assert (st["paired"], st["mrealm_name"], st["online"], st["mrealm_oid"]) == (False, None, False, None), st
    assert await w(a.call(M + "list_nodes_by_mrealm", m["oid"])) == []
    # Unpaired, it stays visible to the user who paired it, not to others.
    assert await w(a.call(M + "list_nodes")) == [oid]
    assert await w(a.call(M + "list_nodes", True)) == []
    e = await call_error(b, M + "get_node", oid)
    assert e.error == "fabric.not-authorized", e

    deleted_ev = await subscribe(su, M + "on_node_deleted")
    e = await call_error(b, M + "delete_node", oid)
    assert e.error == "fabric.not-authorized", e
    deleted = await w(a.call(M + "delete_node", oid))
    assert deleted["oid"] == oid and deleted["pubkey"] == kp.pubkey_hex, deleted
    await got(deleted_ev, lambda e: e["oid"] == oid, "on_node_deleted")
    e = await call_error(a, M + "get_node", oid)
    assert e.error == "crossbar.error.no_such_object", e
    assert oid not in await w(su.call(M + "list_nodes"))

    # A deleted node pairs again as a new one.
    again = await w(a.call(M + "pair_node", kp.pubkey_hex, name, "node1"))
    assert again["oid"] != oid, again


@aio
async def test_members_see_nodes_owners_manage_them(master, keys, tmp_path):
    a, _, _, _ = await user(master, tmp_path, "xena")
    b, _, _, b_oid = await user(master, tmp_path, "yuri")
    name = unique("shared-")
    m = await w(a.call(M + "create_mrealm", {"name": name}))
    kp = node_key(tmp_path, unique("edge"))
    node = await w(a.call(M + "pair_node", kp.pubkey_hex, name, "n1"))
    await w(a.call(M + "set_roles_on_mrealm_for_user", m["oid"], b_oid, ["guest"]))
    assert await w(b.call(M + "list_nodes")) == [node["oid"]]
    assert await w(b.call(M + "get_node", node["oid"])) == node
    assert await w(b.call(M + "get_node_by_name", name, "n1")) == node
    assert await w(b.call(M + "list_nodes_by_mrealm_name", name, True)) == ["n1"]
    e = await call_error(b, M + "modify_node", node["oid"], {"label": "x"})
    assert e.error == "fabric.not-authorized", e
    e = await call_error(b, M + "unpair_node_by_name", name, "n1")
    assert e.error == "fabric.not-authorized", e
    try:
        await w(a.call(M + "delete_mrealm", m["oid"], True))
    except ApplicationError:
        pass
