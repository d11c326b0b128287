"""Every error URI of spec §9 that a client can provoke, provoked against the real binary.

``SECTION_9`` is the set of URIs copied from the spec's §9 table. ``TABLE`` maps each of them
to either

* ``Provoke(how, scenario)``: the scenario drives the master (ABORT on join, ERROR on call,
  the reason of a session the master closes) and returns the URIs it observed; every one of
  them must be the table's URI; or
* ``Exempt(reason, instead, expect)``: a client cannot make our master raise the URI; the
  reason says why, and ``instead`` shows what the master answers in the situation the
  reference would have raised it in (it must return ``expect``).

``test_table_covers_section_9`` fails when a URI is added to one side only, and
``test_error_uri`` runs one case per URI (the case id is the URI). All cases share the
module's master; every scenario brings its own management realm, keys and sessions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import pytest
from autobahn.wamp.exception import ApplicationError

from conftest import KeyPair, Keys, Master, aio, free_port, join, join_expect_abort, w
from mgmt import AREALM, RCLUSTER, call_error, closed, join_node, new_mrealm, node_key, unique
from users import activated_user, last_code, new_key

MRLM = "crossbarfabriccenter.mrealm."
REMOTE = "crossbarfabriccenter.remote."

# Copied from spec §9 ("Error URIs"), row by row. Keep in step with the spec: a URI added
# here without an entry in TABLE (or the other way round) fails test_table_covers_section_9.
SECTION_9 = frozenset(
    {
        # authentication (ABORT)
        "fabric.auth-failed.invalid-parameters",
        "fabric.auth-failed.pending-activation",
        "fabric.auth-failed.no-pending-activation",
        "fabric.auth-failed.invalid-activation-code",
        "fabric.auth-failed.new-user-auth-code-sent",
        "fabric.auth-failed.registered-user-auth-code-sent",
        "fabric.auth-failed.node-unpaired",
        "fabric.auth-failed.node-already-connected",
        "fabric.auth-failed.email-failure",
        "wamp.error.runtime_error",
        "wamp.error.no_such_role",
        "wamp.error.no_such_realm",
        # master/mrealm/mrealm.py
        "fabric.invalid-realm",
        "fabric.realm-already-exists",
        "fabric.no-such-realm",
        "fabric.not-authorized",
        "fabric.node-already-paired",
        "fabric.node-not-paired",
        "fabric.node-not-exist",
        # backends
        "crossbar.error.no_such_object",
        "crossbar.error.already_exists",
        "crossbar.error.dependent_objects",
        "crossbar.error.not_stopped",
        "crossbar.error.cannot_start",
        "crossbar.error.cannot_stop",
        "crossbar.error.invalid_config",
        "crossbar.error.already_running",
        "wamp.error.invalid_argument",
        "wamp.error.invalid_configuration",
        "wamp.error.no_such_principal",
        "wamp.error.not_authorized",
        # closing node sessions on unpair
        "wamp.close.auth-changed",
        # passed through from nodes (crossbar.error.no_such_object is also a backend URI above)
        "crossbar.error.no_such_worker",
        "crossbar.error.feature_unavailable",
        "crossbar.error.not_running",
        "wamp.error.no_such_procedure",
    }
)


@dataclass(frozen=True)
class Ctx:
    master: Master
    keys: Keys
    tmp_path: Path


Scenario = Callable[[Ctx], Awaitable[list]]


@dataclass(frozen=True)
class Provoke:
    how: str
    scenario: Scenario


@dataclass(frozen=True)
class Exempt:
    reason: str
    instead: Scenario
    expect: tuple


# --------------------------------------------------------------------------------------
# observation helpers: each returns the URI the master answered with
# --------------------------------------------------------------------------------------


async def error_of(session, procedure, *args, **kwargs) -> str:
    return (await call_error(session, procedure, *args, **kwargs)).error


async def abort_of(master, **kwargs) -> str:
    return (await join_expect_abort(master, **kwargs)).reason


async def close_reason_of(session) -> str:
    return (await closed(session)).reason


def user_hello(kp, email, code=None, **kw) -> dict:
    extra = {"pubkey": kp.pubkey_hex}
    if code is not None:
        extra["activation_code"] = code
    return dict(key=kp, authid=email, authextra=extra, **kw)


def node_hello(kp) -> dict:
    return dict(key=kp, realm=None, authrole="node", authextra={"pubkey": kp.pubkey_hex})


def fresh_user(c: Ctx):
    name = unique("u")
    return new_key(c.tmp_path, name), f"{name}@example.com"


async def paired(c: Ctx):
    """A fresh management realm with one paired (not connected) node."""
    m = await new_mrealm(c.master, c.keys)
    node, kp = await m.pair_node(c.tmp_path)
    return m, node, kp


NODE_ERRORS = {
    # node-side procedure → (remote.* procedure, its arguments after the node oid, the URI the
    # node raises): what a real edge node answers in these situations.
    "get_worker": ("node.get_worker", ("nope",), "crossbar.error.no_such_worker"),
    "start_manhole": ("node.start_manhole", (), "crossbar.error.feature_unavailable"),
    "worker.rtr1.stop_router_transport": (
        "router.stop_router_transport",
        ("rtr1", "tp9"),
        "crossbar.error.not_running",
    ),
    "worker.rtr1.get_router_realm": (
        "router.get_router_realm",
        ("rtr1", "rlm9"),
        "crossbar.error.no_such_object",
    ),
}


async def node_passes_through(c: Ctx, node_proc: str) -> list:
    """A connected simulated node raises the URI; the owner's remote.* call must get it
    unchanged (URI and arguments)."""
    m, node, kp = await paired(c)
    n = await m.join_as_node(kp)
    authid = n.details.authid
    remote, args, uri = NODE_ERRORS[node_proc]

    def fail(*a, **kw):
        raise ApplicationError(uri, f"simulated {node_proc}")

    await w(n.register(fail, f"crossbarfabriccenter.node.{authid}.{node_proc}"))
    e = await call_error(m.s, REMOTE + remote, node["oid"], *args)
    assert e.args == (f"simulated {node_proc}",), e
    return [e.error]


# --------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------


async def invalid_parameters(c: Ctx):
    kp, _ = fresh_user(c)
    # users authenticate with their e-mail as authid; also a role no global-realm user has
    return [
        await abort_of(c.master, key=kp, authextra={"pubkey": kp.pubkey_hex}),
        await abort_of(c.master, **user_hello(kp, "x@example.com", authrole="owner")),
    ]


async def pending_activation(c: Ctx):
    kp, email = fresh_user(c)
    assert await abort_of(c.master, **user_hello(kp, email)) == "fabric.auth-failed.new-user-auth-code-sent"
    return [await abort_of(c.master, **user_hello(kp, email))]


async def no_pending_activation(c: Ctx):
    kp, email = fresh_user(c)
    # a code for an e-mail and key that have nothing pending
    return [await abort_of(c.master, **user_hello(kp, email, code="AAAA-AAAA-AAAA"))]


async def invalid_activation_code(c: Ctx):
    kp, email = fresh_user(c)
    await abort_of(c.master, **user_hello(kp, email))
    code = await last_code(c.master, email)
    wrong = "CCCC-CCCC-CCCC" if code != "CCCC-CCCC-CCCC" else "AAAA-AAAA-AAAA"
    return [await abort_of(c.master, **user_hello(kp, email, code=wrong))]


async def new_user_code_sent(c: Ctx):
    kp, email = fresh_user(c)
    return [await abort_of(c.master, **user_hello(kp, email))]


async def registered_user_code_sent(c: Ctx):
    s = await activated_user(c.master, c.tmp_path, unique("reg"))
    second = new_key(c.tmp_path, unique("second"))
    return [await abort_of(c.master, **user_hello(second, s.details.authid))]


async def node_unpaired(c: Ctx):
    return [await abort_of(c.master, **node_hello(node_key(c.tmp_path, unique("stranger"))))]


async def no_such_role(c: Ctx):
    m = await new_mrealm(c.master, c.keys)
    # a role users may ask for, but not one a management realm has
    return [await abort_of(c.master, keys=c.keys, realm=m.name, authrole="operator")]


async def no_such_realm(c: Ctx):
    return [await abort_of(c.master, keys=c.keys, realm=unique("no-such-mrealm-"))]


async def invalid_realm(c: Ctx):
    su = await join(c.master, c.keys)
    return [await error_of(su, MRLM + "create_mrealm", {"name": bad}) for bad in ("ab", "wamp", "crossbar.x")]


async def no_such_mrealm_on_pairing(c: Ctx):
    su = await join(c.master, c.keys)
    kp = node_key(c.tmp_path, unique("edge"))
    return [await error_of(su, MRLM + "pair_node", kp.pubkey_hex, unique("no-such-mrealm-"), "n1")]


async def fabric_not_authorized(c: Ctx):
    su = await join(c.master, c.keys)
    m = await w(su.call(MRLM + "create_mrealm", {"name": unique("mr-")}))
    other = await activated_user(c.master, c.tmp_path, unique("other"))
    return [
        await error_of(other, MRLM + "delete_mrealm", m["oid"]),
        await error_of(other, MRLM + "modify_mrealm", m["oid"], {"label": "x"}),
    ]


async def node_already_paired(c: Ctx):
    m, node, kp = await paired(c)
    return [await error_of(m.su, MRLM + "pair_node", kp.pubkey_hex, m.name, unique("again"))]


async def node_not_paired(c: Ctx):
    m, node, kp = await paired(c)
    await w(m.su.call(MRLM + "unpair_node", node["oid"]))
    return [await error_of(m.su, MRLM + "unpair_node", node["oid"])]


async def no_such_object(c: Ctx):
    su = await join(c.master, c.keys)
    raised = [
        await error_of(su, MRLM + "get_mrealm", str(uuid.uuid4())),
        await error_of(su, MRLM + "get_mrealm_by_name", unique("nope-")),
    ]
    return raised + await node_passes_through(c, "worker.rtr1.get_router_realm")


async def already_exists(c: Ctx):
    m = await new_mrealm(c.master, c.keys)
    await w(m.s.call(RCLUSTER + "create_routercluster", {"name": "cluster1"}))
    return [
        await error_of(m.su, MRLM + "create_mrealm", {"name": m.name}),
        await error_of(m.s, RCLUSTER + "create_routercluster", {"name": "cluster1"}),
    ]


async def dependent_objects(c: Ctx):
    m, node, kp = await paired(c)
    # a management realm with a paired node is not deleted without cascade
    return [await error_of(m.su, MRLM + "delete_mrealm", m.mrealm["oid"])]


async def started_cluster(c: Ctx):
    m = await new_mrealm(c.master, c.keys)
    rc = await w(m.s.call(RCLUSTER + "create_routercluster", {"name": "cluster1"}))
    started = await w(m.s.call(RCLUSTER + "start_routercluster", rc["oid"]))
    assert started["status"] == "STARTING", started
    return m, rc


async def not_stopped(c: Ctx):
    m, rc = await started_cluster(c)
    return [await error_of(m.s, RCLUSTER + "delete_routercluster", rc["oid"])]


async def cannot_start(c: Ctx):
    m, rc = await started_cluster(c)
    return [await error_of(m.s, RCLUSTER + "start_routercluster", rc["oid"])]


async def cannot_stop(c: Ctx):
    m = await new_mrealm(c.master, c.keys)
    rc = await w(m.s.call(RCLUSTER + "create_routercluster", {"name": "cluster1"}))
    return [await error_of(m.s, RCLUSTER + "stop_routercluster", rc["oid"])]


async def arealm_principal(c: Ctx):
    m = await new_mrealm(c.master, c.keys)
    a = await w(m.s.call(AREALM + "create_arealm", {"name": "app1"}))
    role = await w(m.s.call(AREALM + "create_role", {"name": "frontend"}))
    return m, a, role


async def invalid_config(c: Ctx):
    m, a, role = await arealm_principal(c)
    return [
        await error_of(m.s, AREALM + "add_principal", a["oid"], {"role_oid": role["oid"]}),
        await error_of(m.s, AREALM + "add_principal", a["oid"], {"authid": "x", "role_oid": "nope"}),
    ]


async def already_running(c: Ctx):
    m, a, role = await arealm_principal(c)
    p = await w(m.s.call(AREALM + "add_principal", a["oid"], {"authid": "joe", "role_oid": role["oid"]}))
    await w(m.s.call(AREALM + "add_principal_credential", a["oid"], p["oid"], {"authmethod": "ticket", "secret": "s"}))
    # a second credential of the same method: the reference's (sic) URI for the duplicate
    return [await error_of(m.s, AREALM + "add_principal_credential", a["oid"], p["oid"], {"authmethod": "ticket"})]


async def invalid_argument(c: Ctx):
    m = await new_mrealm(c.master, c.keys)
    return [
        await error_of(m.su, MRLM + "get_mrealm", "not-a-uuid"),
        await error_of(m.su, MRLM + "create_mrealm", "not a dict"),
        await error_of(m.s, AREALM + "get_arealm", "not-a-uuid"),
    ]


async def invalid_configuration(c: Ctx):
    m = await new_mrealm(c.master, c.keys)
    return [
        await error_of(m.s, RCLUSTER + "create_routercluster", {"name": "Bad Name"}),
        await error_of(m.s, RCLUSTER + "create_routercluster", {}),
    ]


async def wamp_not_authorized(c: Ctx):
    anon = await join(c.master, c.keys, auth="anonymous")
    m, node, kp = await paired(c)
    n = await m.join_as_node(kp)
    return [
        await error_of(anon, MRLM + "create_mrealm", {"name": unique("an-")}),
        # on a management realm, writes are for owners and admins
        await error_of(n, AREALM + "create_arealm", {"name": "app1"}),
    ]


async def auth_changed(c: Ctx):
    m, node, kp = await paired(c)
    n = await m.join_as_node(kp)
    out = await w(m.su.call(MRLM + "unpair_node", node["oid"]))
    assert len(out["killed"]) == 1, out
    return [await close_reason_of(n)]


async def no_such_procedure(c: Ctx):
    m, node, kp = await paired(c)
    # paired but not connected (the reference's "node offline")
    offline = await error_of(m.s, REMOTE + "node.get_status", node["oid"])
    # connected, but without that procedure
    n = await m.join_as_node(kp)
    assert n.details.authrole == "node"
    missing = await error_of(m.s, REMOTE + "node.get_cpu_count", node["oid"])
    return [offline, missing]


# -- what the master does instead of the exempt URIs ----------------------------------------


async def replaced_instead_of_already_connected(c: Ctx):
    m, node, kp = await paired(c)
    first = await join_node(c.master, kp)
    second = await join_node(c.master, kp)
    assert second.details.authrole == "node"
    return [await close_reason_of(first)]


async def email_failure(c: Ctx):
    # A second master whose SMTP server is not there: nothing listens on a fresh free port.
    m = Master(
        c.tmp_path / f"smtp-{uuid.uuid4().hex[:6]}",
        c.keys.superuser.pub_path,
        extra_args=["--smtp-url", f"smtp://127.0.0.1:{free_port()}"],
    )
    await m.start_async()
    try:
        kp, email = fresh_user(c)
        failed = await abort_of(m, **user_hello(kp, email))
        assert await last_code(m, email), "the undelivered code is still logged for the operator"
        return [failed]
    finally:
        m.stop()


async def specific_uris_instead_of_runtime_error(c: Ctx):
    kp, _ = fresh_user(c)
    su = await join(c.master, c.keys)
    theirs = await w(su.call(MRLM + "create_mrealm", {"name": unique("su-")}))
    name = unique("nora")
    user = await activated_user(c.master, c.tmp_path, name)
    ukp = KeyPair(c.tmp_path / f"{name}.priv", c.tmp_path / f"{name}.pub")
    return [
        # reference: authid None → TypeError
        await abort_of(c.master, key=kp, authextra={"pubkey": kp.pubkey_hex}),
        # reference: 'no realm "X" or user not permitted'
        await abort_of(c.master, **user_hello(ukp, user.details.authid, realm=theirs["name"])),
        # reference: 'badly formed hexadecimal UUID string'
        await error_of(su, MRLM + "get_mrealm", "not-a-uuid"),
    ]


async def owner_oid_instead_of_no_such_principal(c: Ctx):
    m = await new_mrealm(c.master, c.keys)
    a = await w(m.s.call(AREALM + "create_arealm", {"name": "app1"}))
    assert a["owner_oid"] == m.mrealm["owner"], a
    _, kp = await m.pair_node(c.tmp_path)
    n = await m.join_as_node(kp)
    return [await error_of(n, AREALM + "create_arealm", {"name": "app2"})]


async def already_exists_instead_of_realm_already_exists(c: Ctx):
    m = await new_mrealm(c.master, c.keys)
    return [await error_of(m.su, MRLM + "create_mrealm", {"name": m.name})]


async def no_such_object_instead_of_node_not_exist(c: Ctx):
    su = await join(c.master, c.keys)
    return [
        await error_of(su, MRLM + "get_node", str(uuid.uuid4())),
        await error_of(su, MRLM + "unpair_node", str(uuid.uuid4())),
    ]


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------

TABLE: dict[str, Provoke | Exempt] = {
    "fabric.auth-failed.invalid-parameters": Provoke(
        "user key without an authid (e-mail); user key asking for role owner on the global realm",
        invalid_parameters,
    ),
    "fabric.auth-failed.pending-activation": Provoke(
        "unknown e-mail + key (code issued), then the same again without the code", pending_activation
    ),
    "fabric.auth-failed.no-pending-activation": Provoke(
        "an activation code for an e-mail + key with nothing pending", no_pending_activation
    ),
    "fabric.auth-failed.invalid-activation-code": Provoke(
        "a pending activation answered with a wrong code", invalid_activation_code
    ),
    "fabric.auth-failed.new-user-auth-code-sent": Provoke(
        "unknown e-mail + key: REGISTRATION code issued", new_user_code_sent
    ),
    "fabric.auth-failed.registered-user-auth-code-sent": Provoke(
        "activated user's e-mail with a second key: LOGIN code issued", registered_user_code_sent
    ),
    "fabric.auth-failed.node-unpaired": Provoke("node HELLO with an unpaired key", node_unpaired),
    "fabric.auth-failed.node-already-connected": Exempt(
        "defined, never raised by the reference either; here a newer session of a paired node "
        "replaces the older one (docs/ARCHITECTURE.md: 'A newer session of the same node, on any "
        "replica, closes the older one'), so a second connection is never refused",
        replaced_instead_of_already_connected,
        ("wamp.close.replaced",),
    ),
    "fabric.auth-failed.email-failure": Provoke(
        "a master whose SMTP server cannot be reached issues a code", email_failure
    ),
    "wamp.error.runtime_error": Exempt(
        "the reference's catch-all for plain Python exceptions; this master raises it only for "
        "storage failures ('the disk, never the caller's input', src/api/common.rs store_failed) "
        "and answers each reference case with a specific URI",
        specific_uris_instead_of_runtime_error,
        (
            "fabric.auth-failed.invalid-parameters",
            "wamp.error.not_authorized",
            "wamp.error.invalid_argument",
        ),
    ),
    "wamp.error.no_such_role": Provoke("join a management realm asking for role operator", no_such_role),
    "wamp.error.no_such_realm": Provoke("join an unknown management realm", no_such_realm),
    "fabric.invalid-realm": Provoke("create_mrealm with invalid names", invalid_realm),
    "fabric.realm-already-exists": Exempt(
        "unused in the reference (mrealm.py defines it; a duplicate name is "
        "crossbar.error.already_exists there as here)",
        already_exists_instead_of_realm_already_exists,
        ("crossbar.error.already_exists",),
    ),
    "fabric.no-such-realm": Provoke("pair_node to an unknown management realm", no_such_mrealm_on_pairing),
    "fabric.not-authorized": Provoke(
        "a user who is not its owner deletes / modifies someone else's mrealm", fabric_not_authorized
    ),
    "fabric.node-already-paired": Provoke("pair_node with an already paired pubkey", node_already_paired),
    "fabric.node-not-paired": Provoke("unpair_node of a node unpaired before", node_not_paired),
    "fabric.node-not-exist": Exempt(
        "unused in the reference (mrealm.py defines it); an unknown node is "
        "crossbar.error.no_such_object",
        no_such_object_instead_of_node_not_exist,
        ("crossbar.error.no_such_object", "crossbar.error.no_such_object"),
    ),
    "crossbar.error.no_such_object": Provoke(
        "get_mrealm / get_mrealm_by_name of unknown ones; a node's no_such_object passed through "
        "remote.router.get_router_realm",
        no_such_object,
    ),
    "crossbar.error.already_exists": Provoke(
        "create_mrealm and create_routercluster with a taken name", already_exists
    ),
    "crossbar.error.dependent_objects": Provoke(
        "delete_mrealm (no cascade) of a realm with a paired node", dependent_objects
    ),
    "crossbar.error.not_stopped": Provoke("delete_routercluster of a STARTING cluster", not_stopped),
    "crossbar.error.cannot_start": Provoke("start_routercluster of a STARTING cluster", cannot_start),
    "crossbar.error.cannot_stop": Provoke("stop_routercluster of a STOPPED cluster", cannot_stop),
    "crossbar.error.invalid_config": Provoke(
        "add_principal without authid / with a malformed role_oid", invalid_config
    ),
    "crossbar.error.already_running": Provoke(
        "add_principal_credential twice with the same authmethod", already_running
    ),
    "wamp.error.invalid_argument": Provoke(
        "non-UUID oids, a non-dict mrealm spec", invalid_argument
    ),
    "wamp.error.invalid_configuration": Provoke(
        "create_routercluster with a bad / missing name", invalid_configuration
    ),
    "wamp.error.no_such_principal": Exempt(
        "the reference raises it from create_arealm/… when the caller's authid has no user "
        "record; here writes are for owners and admins only (others: wamp.error.not_authorized "
        "first), every user session has a user record (created at activation, never deleted), "
        "and the superuser, who needs none, is the recorded owner when it has one",
        owner_oid_instead_of_no_such_principal,
        ("wamp.error.not_authorized",),
    ),
    "wamp.error.not_authorized": Provoke(
        "anonymous create_mrealm on the global realm; a node's create_arealm on its mrealm",
        wamp_not_authorized,
    ),
    "wamp.close.auth-changed": Provoke("unpair_node of a connected node: its session's close reason", auth_changed),
    "crossbar.error.no_such_worker": Provoke(
        "passed through: remote.node.get_worker, the node raises it",
        lambda c: node_passes_through(c, "get_worker"),
    ),
    "crossbar.error.feature_unavailable": Provoke(
        "passed through: remote.node.start_manhole, the node raises it",
        lambda c: node_passes_through(c, "start_manhole"),
    ),
    "crossbar.error.not_running": Provoke(
        "passed through: remote.router.stop_router_transport, the node raises it",
        lambda c: node_passes_through(c, "worker.rtr1.stop_router_transport"),
    ),
    "wamp.error.no_such_procedure": Provoke(
        "remote.node.get_status to a paired node that is offline; a procedure the node lacks",
        no_such_procedure,
    ),
}


def test_table_covers_section_9():
    missing = sorted(SECTION_9 - TABLE.keys())
    extra = sorted(TABLE.keys() - SECTION_9)
    assert not missing, f"§9 URIs without a scenario or exemption: {missing}"
    assert not extra, f"table entries that are not §9 URIs: {extra}"
    for uri, entry in TABLE.items():
        assert isinstance(entry, (Provoke, Exempt)), uri
        assert (entry.how if isinstance(entry, Provoke) else entry.reason).strip(), uri


@pytest.mark.parametrize("uri", sorted(SECTION_9 | TABLE.keys()))
def test_error_uri(master, keys, tmp_path, uri):
    entry = TABLE.get(uri)
    assert entry is not None, f"{uri} is in spec §9 but has no scenario or exemption"
    assert uri in SECTION_9, f"{uri} is not a §9 URI"
    ctx = Ctx(master, keys, tmp_path)
    if isinstance(entry, Provoke):
        observed = aio(timeout=40)(entry.scenario)(ctx)
        assert observed, f"the scenario for {uri} observed nothing"
        assert observed == [uri] * len(observed), f"{entry.how}: expected {uri} each time, got {observed}"
    else:
        observed = aio(timeout=40)(entry.instead)(ctx)
        assert tuple(observed) == entry.expect, (
            f"{uri} is exempt ({entry.reason}), but the master's answer instead changed: "
            f"expected {list(entry.expect)}, got {observed}"
        )
