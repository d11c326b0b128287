"""Application realms, roles, permissions, principals, credentials (spec §6.4) and object
documentation (§6.3) on a management realm, against the real binary."""

import uuid

from conftest import aio, w
from mgmt import AREALM, METADATA, RCLUSTER, WCLUSTER, expect_error, is_oid, new_mrealm, unique

A = AREALM
NO_SUCH = "crossbar.error.no_such_object"
EXISTS = "crossbar.error.already_exists"
BAD_ARG = "wamp.error.invalid_argument"

AREALM_FIELDS = {
    "oid", "label", "description", "tags", "name", "status", "workergroup_oid",
    "webcluster_oid", "datamarket_oid", "changed", "owner_oid",
}


async def running_setup(m, tmp_path):
    """A router cluster with one paired node and a worker group of 1, and a web cluster."""
    node, _ = await m.pair_node(tmp_path)
    c = await w(m.s.call(RCLUSTER + "create_routercluster", {"name": unique("rc")}))
    await w(m.s.call(RCLUSTER + "add_routercluster_node", c["oid"], node["oid"]))
    wg = await w(m.s.call(RCLUSTER + "add_routercluster_workergroup", c["oid"], {"scale": 1}))
    wc = await w(m.s.call(WCLUSTER + "create_webcluster", {"name": unique("wc")}))
    return node, c, wg, wc


@aio
async def test_arealm_create_get_list_delete(master, keys):
    m = await new_mrealm(master, keys)
    await m.watch(A, "on_arealm_created", "on_arealm_deleted")
    assert await w(m.s.call(A + "list_arealms")) == []

    a = await w(m.s.call(A + "create_arealm", {"name": "app1", "label": "L", "enable_meta_api": True}))
    assert AREALM_FIELDS <= set(a), a
    assert "mrealm_oid" not in a, a
    assert is_oid(a["oid"]) and a["name"] == "app1" and a["label"] == "L", a
    assert a["status"] == "STOPPED" and a["enable_meta_api"] is True, a
    assert is_oid(a["owner_oid"]) and a["owner_oid"] == m.mrealm["owner"], a
    assert isinstance(a["changed"], int) and a["changed"] > 10**18, a
    assert a["workergroup_oid"] is None and a["webcluster_oid"] is None, a
    ev = await m.event("on_arealm_created")
    assert ev == a, ev

    assert await w(m.s.call(A + "get_arealm", a["oid"])) == a
    assert await w(m.s.call(A + "get_arealm_by_name", "app1")) == a
    b = await w(m.s.call(A + "create_arealm", {}))
    assert b["name"] == f"arealm-{b['oid'][:8]}", b
    assert set(await w(m.s.call(A + "list_arealms"))) == {a["oid"], b["oid"]}
    assert await w(m.s.call(A + "list_arealms", True)) == sorted(["app1", b["name"]])

    await expect_error(m.s, EXISTS, A + "create_arealm", {"name": "app1"})
    await expect_error(m.s, BAD_ARG, A + "create_arealm", {"name": "x y"})
    await expect_error(m.s, BAD_ARG, A + "create_arealm", {"name": 5})
    await expect_error(m.s, BAD_ARG, A + "create_arealm", "not a dict")
    await expect_error(m.s, BAD_ARG, A + "get_arealm", "not-a-uuid")
    await expect_error(m.s, NO_SUCH, A + "get_arealm", str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, A + "get_arealm_by_name", "nope")

    deleted = await w(m.s.call(A + "delete_arealm", a["oid"]))
    assert deleted["oid"] == a["oid"], deleted
    assert (await m.event("on_arealm_deleted"))["oid"] == a["oid"]
    await expect_error(m.s, NO_SUCH, A + "get_arealm", a["oid"])
    await expect_error(m.s, NO_SUCH, A + "delete_arealm", a["oid"])


@aio
async def test_arealm_start_stop(master, keys, tmp_path):
    m = await new_mrealm(master, keys)
    await m.watch(A, "on_arealm_starting", "on_arealm_stopping", "on_arealm_stopped")
    node, c, wg, wc = await running_setup(m, tmp_path)
    a = await w(m.s.call(A + "create_arealm", {"name": "app1"}))
    assert await w(m.s.call(A + "list_router_workers", a["oid"])) == []

    await expect_error(m.s, NO_SUCH, A + "start_arealm", a["oid"], str(uuid.uuid4()), wc["oid"])
    await expect_error(m.s, NO_SUCH, A + "start_arealm", a["oid"], wg["oid"], str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, A + "start_arealm", str(uuid.uuid4()), wg["oid"], wc["oid"])
    await expect_error(m.s, BAD_ARG, A + "start_arealm", a["oid"], "nope", wc["oid"])

    started = await w(m.s.call(A + "start_arealm", a["oid"], wg["oid"], wc["oid"]))
    assert started["oid"] == a["oid"] and started["status"] == "STARTING", started
    assert started["router_workergroup_oid"] == wg["oid"], started
    assert isinstance(started["changed"], int), started
    who = started["who"]
    assert who["authid"] == "superuser" and who["authrole"] == "owner", who
    assert who["session"] == m.s.details.session, who
    ev = await m.event("on_arealm_starting")
    assert ev["oid"] == a["oid"] and ev["status"] == "STARTING", ev

    got = await w(m.s.call(A + "get_arealm", a["oid"]))
    # STARTING, or DEGRADED already: the node of its worker group is not online.
    assert got["status"] in ("STARTING", "DEGRADED") and got["workergroup_oid"] == wg["oid"], got
    assert got["webcluster_oid"] == wc["oid"], got
    workers = await w(m.s.call(A + "list_router_workers", a["oid"]))
    assert len(workers) == 1 and workers[0]["node_oid"] == node["oid"], workers
    assert workers[0]["worker_name"] == f"{wg['name']}_1", workers

    await expect_error(m.s, "crossbar.error.cannot_start", A + "start_arealm", a["oid"], wg["oid"], wc["oid"])
    await expect_error(m.s, "crossbar.error.not_stopped", A + "delete_arealm", a["oid"])

    stopped = await w(m.s.call(A + "stop_arealm", a["oid"]))
    assert stopped["oid"] == a["oid"] and stopped["status"] == "STOPPING", stopped
    assert (await m.event("on_arealm_stopping"))["status"] == "STOPPING"
    assert (await m.event("on_arealm_stopped", timeout=15))["status"] == "STOPPED"
    assert (await w(m.s.call(A + "get_arealm", a["oid"])))["status"] == "STOPPED"
    await expect_error(m.s, "crossbar.error.cannot_stop", A + "stop_arealm", a["oid"])
    await expect_error(m.s, NO_SUCH, A + "stop_arealm", str(uuid.uuid4()))
    await w(m.s.call(A + "delete_arealm", a["oid"]))


@aio
async def test_roles_and_permissions(master, keys):
    m = await new_mrealm(master, keys)
    await m.watch(A, "on_role_created", "on_role_deleted", "on_permission_added", "on_permission_removed")
    role = await w(m.s.call(A + "create_role", {"name": "role1", "description": "D"}))
    assert {"oid", "label", "description", "tags", "name", "created", "owner"} <= set(role), role
    assert role["name"] == "role1" and role["description"] == "D" and is_oid(role["oid"]), role
    assert (await m.event("on_role_created")) == role
    await expect_error(m.s, EXISTS, A + "create_role", {"name": "role1"})
    await expect_error(m.s, BAD_ARG, A + "create_role", {})
    r2 = await w(m.s.call(A + "create_role", {"name": "role0"}))
    assert set(await w(m.s.call(A + "list_roles"))) == {role["oid"], r2["oid"]}
    assert await w(m.s.call(A + "list_roles", True)) == ["role0", "role1"]
    assert await w(m.s.call(A + "get_role", role["oid"])) == role
    assert await w(m.s.call(A + "get_role_by_name", "role1")) == role
    await expect_error(m.s, NO_SUCH, A + "get_role", str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, A + "get_role_by_name", "nope")

    cfg = {"match": "prefix", "allow_call": True, "allow_subscribe": True, "disclose_caller": True}
    p1 = await w(m.s.call(A + "add_role_permission", role["oid"], "com.example.", cfg))
    assert p1["uri"] == "com.example." and p1["match"] == "prefix" and p1["role_oid"] == role["oid"], p1
    assert p1["allow_call"] is True and p1["allow_publish"] is False, p1
    assert (await m.event("on_permission_added")) == p1
    p2 = await w(m.s.call(A + "add_role_permission", role["oid"], "org.other", {"match": "exact"}))
    await expect_error(m.s, EXISTS, A + "add_role_permission", role["oid"], "com.example.", cfg)
    await expect_error(m.s, BAD_ARG, A + "add_role_permission", role["oid"], "x", {"match": "glob"})
    await expect_error(m.s, BAD_ARG, A + "add_role_permission", role["oid"], "x", {"allow_call": "yes"})
    await expect_error(m.s, NO_SUCH, A + "add_role_permission", str(uuid.uuid4()), "x", {})

    assert set(await w(m.s.call(A + "list_role_permissions", role["oid"]))) == {p1["oid"], p2["oid"]}
    assert await w(m.s.call(A + "list_role_permissions", role["oid"], "com.")) == [p1["oid"]]
    assert await w(m.s.call(A + "get_role_permissions_by_uri", role["oid"], "org.")) == [p2]
    assert len(await w(m.s.call(A + "get_role_permissions_by_uri", role["oid"]))) == 2
    assert await w(m.s.call(A + "get_role_permission", role["oid"], p1["oid"])) == p1
    await expect_error(m.s, NO_SUCH, A + "get_role_permission", role["oid"], str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, A + "list_role_permissions", str(uuid.uuid4()))

    removed = await w(m.s.call(A + "remove_role_permission", role["oid"], p2["oid"]))
    assert removed["oid"] == p2["oid"], removed
    assert (await m.event("on_permission_removed"))["oid"] == p2["oid"]
    await expect_error(m.s, NO_SUCH, A + "remove_role_permission", role["oid"], p2["oid"])

    deleted = await w(m.s.call(A + "delete_role", role["oid"]))
    assert deleted["oid"] == role["oid"], deleted
    assert (await m.event("on_role_deleted"))["oid"] == role["oid"]
    # Its permissions went with it.
    await expect_error(m.s, NO_SUCH, A + "get_role_permission", role["oid"], p1["oid"])


@aio
async def test_principals_and_credentials(master, keys):
    m = await new_mrealm(master, keys)
    await m.watch(A, "on_principal_created", "on_principal_removed")
    a = await w(m.s.call(A + "create_arealm", {"name": "app1"}))
    role = await w(m.s.call(A + "create_role", {"name": "frontend"}))

    p = await w(m.s.call(A + "add_principal", a["oid"], {"authid": "joe", "role_oid": role["oid"], "authextra": {"k": 1}}))
    assert p["authid"] == "joe" and p["role_oid"] == role["oid"] and p["arealm_oid"] == a["oid"], p
    assert p["authextra"] == {"k": 1} and isinstance(p["modified"], int) and is_oid(p["oid"]), p
    assert (await m.event("on_principal_created")) == p
    await expect_error(m.s, EXISTS, A + "add_principal", a["oid"], {"authid": "joe", "role_oid": role["oid"]})
    await expect_error(m.s, "crossbar.error.invalid_config", A + "add_principal", a["oid"], {"role_oid": role["oid"]})
    await expect_error(m.s, "crossbar.error.invalid_config", A + "add_principal", a["oid"], {"authid": "x", "role_oid": "nope"})
    await expect_error(m.s, NO_SUCH, A + "add_principal", a["oid"], {"authid": "x", "role_oid": str(uuid.uuid4())})
    await expect_error(m.s, NO_SUCH, A + "add_principal", str(uuid.uuid4()), {"authid": "x", "role_oid": role["oid"]})
    p2 = await w(m.s.call(A + "add_principal", a["oid"], {"authid": "ann", "role_oid": role["oid"]}))

    assert set(await w(m.s.call(A + "list_principals", a["oid"]))) == {p["oid"], p2["oid"]}
    assert await w(m.s.call(A + "list_principals", a["oid"], True)) == ["ann", "joe"]
    assert await w(m.s.call(A + "get_principal", a["oid"], p["oid"])) == p
    assert await w(m.s.call(A + "get_principal_by_name", a["oid"], "joe")) == p
    await expect_error(m.s, NO_SUCH, A + "get_principal", a["oid"], str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, A + "get_principal_by_name", a["oid"], "nobody")
    await expect_error(m.s, NO_SUCH, A + "list_principals", str(uuid.uuid4()))

    cred = await w(m.s.call(A + "add_principal_credential", a["oid"], p["oid"], {"authmethod": "ticket", "secret": "s3cr3t"}))
    assert cred["authmethod"] == "ticket" and cred["realm"] == "app1" and cred["authid"] == "joe", cred
    assert cred["principal_oid"] == p["oid"] and cred["secret"] == "s3cr3t", cred
    assert isinstance(cred["created"], int) and is_oid(cred["oid"]), cred
    await expect_error(m.s, "crossbar.error.already_running", A + "add_principal_credential", a["oid"], p["oid"], {"authmethod": "ticket"})
    await expect_error(m.s, "crossbar.error.invalid_config", A + "add_principal_credential", a["oid"], p["oid"], {"authmethod": "magic"})
    await expect_error(m.s, NO_SUCH, A + "add_principal_credential", a["oid"], str(uuid.uuid4()), {"authmethod": "ticket"})
    cred2 = await w(m.s.call(A + "add_principal_credential", a["oid"], p["oid"], {"authmethod": "wampcra", "authconfig": {"secret": "x"}}))
    assert set(await w(m.s.call(A + "list_principal_credentials", a["oid"], p["oid"]))) == {cred["oid"], cred2["oid"]}
    assert await w(m.s.call(A + "get_principal_credential", a["oid"], p["oid"], cred["oid"])) == cred
    await expect_error(m.s, NO_SUCH, A + "get_principal_credential", a["oid"], p["oid"], str(uuid.uuid4()))

    stat = await w(m.s.call(A + "stat_arealm", a["oid"]))
    assert stat["oid"] == a["oid"] and stat["name"] == "app1", stat
    assert stat["stats"]["principals"] == 2 and stat["stats"]["credentials"] == 2, stat
    assert stat["stats"]["roles"] == 0, stat
    await expect_error(m.s, NO_SUCH, A + "stat_arealm", str(uuid.uuid4()))

    # A role used by principals is not deleted.
    await expect_error(m.s, "crossbar.error.dependent_objects", A + "delete_role", role["oid"])

    removed = await w(m.s.call(A + "remove_principal_credential", a["oid"], p["oid"], cred2["oid"]))
    assert removed["oid"] == cred2["oid"], removed
    assert await w(m.s.call(A + "list_principal_credentials", a["oid"], p["oid"])) == [cred["oid"]]
    await expect_error(m.s, NO_SUCH, A + "remove_principal_credential", a["oid"], p["oid"], cred2["oid"])

    removed = await w(m.s.call(A + "remove_principal", a["oid"], p["oid"]))
    assert removed["oid"] == p["oid"], removed
    assert (await m.event("on_principal_removed"))["oid"] == p["oid"]
    await expect_error(m.s, NO_SUCH, A + "get_principal", a["oid"], p["oid"])
    await expect_error(m.s, NO_SUCH, A + "list_principal_credentials", a["oid"], p["oid"])

    # Deleting the realm takes the remaining principal along; then the role is free.
    await w(m.s.call(A + "delete_arealm", a["oid"]))
    await w(m.s.call(A + "delete_role", role["oid"]))


@aio
async def test_arealm_roles(master, keys):
    m = await new_mrealm(master, keys)
    await m.watch(A, "on_arealm_role_added", "on_arealm_role_removed")
    a = await w(m.s.call(A + "create_arealm", {"name": "app1"}))
    r1 = await w(m.s.call(A + "create_role", {"name": "zeta"}))
    r2 = await w(m.s.call(A + "create_role", {"name": "alpha"}))

    added = await w(m.s.call(A + "add_arealm_role", a["oid"], r1["oid"]))
    assert added["arealm_oid"] == a["oid"] and added["role_oid"] == r1["oid"], added
    assert (await m.event("on_arealm_role_added")) == added
    await w(m.s.call(A + "add_arealm_role", a["oid"], r2["oid"], {"note": "x"}))
    await expect_error(m.s, EXISTS, A + "add_arealm_role", a["oid"], r1["oid"])
    await expect_error(m.s, NO_SUCH, A + "add_arealm_role", a["oid"], str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, A + "add_arealm_role", str(uuid.uuid4()), r1["oid"])

    assert set(await w(m.s.call(A + "list_arealm_roles", a["oid"]))) == {r1["oid"], r2["oid"]}
    assert await w(m.s.call(A + "list_arealm_roles", a["oid"], True)) == ["alpha", "zeta"]
    assert await w(m.s.call(A + "get_arealm_role", a["oid"], r1["oid"])) == added
    assert (await w(m.s.call(A + "stat_arealm", a["oid"])))["stats"]["roles"] == 2

    await expect_error(m.s, "crossbar.error.dependent_objects", A + "delete_role", r1["oid"])
    removed = await w(m.s.call(A + "remove_arealm_role", a["oid"], r1["oid"]))
    assert removed["role_oid"] == r1["oid"], removed
    assert (await m.event("on_arealm_role_removed"))["role_oid"] == r1["oid"]
    await expect_error(m.s, NO_SUCH, A + "get_arealm_role", a["oid"], r1["oid"])
    await expect_error(m.s, NO_SUCH, A + "remove_arealm_role", a["oid"], r1["oid"])
    await w(m.s.call(A + "delete_role", r1["oid"]))


@aio
async def test_writes_need_owner_or_admin(master, keys, tmp_path):
    m = await new_mrealm(master, keys)
    a = await w(m.s.call(A + "create_arealm", {"name": "app1"}))
    _, kp = await m.pair_node(tmp_path)
    node = await m.join_as_node(kp)
    assert node.details.realm == m.name and node.details.authrole == "node", node.details
    denied = "wamp.error.not_authorized"
    await expect_error(node, denied, A + "create_arealm", {"name": "app2"})
    await expect_error(node, denied, A + "delete_arealm", a["oid"])
    await expect_error(node, denied, A + "create_role", {"name": "r"})
    await expect_error(node, denied, METADATA + "add_docs", "arealm", a["oid"], "text")
    assert await w(m.s.call(A + "list_arealms")) == [a["oid"]]


@aio
async def test_metadata_docs(master, keys):
    m = await new_mrealm(master, keys)
    a = await w(m.s.call(A + "create_arealm", {"name": "app1"}))
    role = await w(m.s.call(A + "create_role", {"name": "r1"}))

    assert await w(m.s.call(METADATA + "get_docs", "arealm", a["oid"])) is None
    stored = await w(m.s.call(METADATA + "add_docs", "arealm", a["oid"], {"text": "# App 1"}))
    assert stored["oid"] == a["oid"] and stored["otype"] == "arealm", stored
    assert stored["docs"] == {"text": "# App 1"} and isinstance(stored["modified"], int), stored
    assert await w(m.s.call(METADATA + "get_docs", "arealm", a["oid"])) == {"text": "# App 1"}
    await w(m.s.call(METADATA + "add_docs", "arealm", a["oid"], "replaced"))
    assert await w(m.s.call(METADATA + "get_docs", "arealm", a["oid"])) == "replaced"
    await w(m.s.call(METADATA + "add_docs", "role", role["oid"], "role docs"))
    assert await w(m.s.call(METADATA + "get_docs", "role", role["oid"])) == "role docs"
    assert await w(m.s.call(METADATA + "get_docs", "mrealm", m.mrealm["oid"])) is None

    e = await expect_error(m.s, BAD_ARG, METADATA + "get_docs", "docs", "x")
    assert "invalid object_id" in e.args[0], e.args
    await expect_error(m.s, BAD_ARG, METADATA + "get_docs", "spaceship", a["oid"])
    await expect_error(m.s, BAD_ARG, METADATA + "add_docs", "arealm", a["oid"])
    await expect_error(m.s, NO_SUCH, METADATA + "get_docs", "arealm", str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, METADATA + "get_docs", "role", a["oid"])
    await expect_error(m.s, NO_SUCH, METADATA + "add_docs", "arealm", str(uuid.uuid4()), "x")

    deleted = await w(m.s.call(METADATA + "delete_docs", a["oid"]))
    assert deleted["oid"] == a["oid"] and deleted["docs"] == "replaced", deleted
    assert await w(m.s.call(METADATA + "get_docs", "arealm", a["oid"])) is None
    await expect_error(m.s, NO_SUCH, METADATA + "delete_docs", a["oid"])
    await expect_error(m.s, BAD_ARG, METADATA + "delete_docs", "nope")
