"""Helpers for the management-realm tests: unique names, a fresh management realm per test
with an owner session joined on it, paired node keys and node sessions, joining a realm once a
replica knows it, error and event assertions."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from autobahn.wamp.exception import ApplicationError

from conftest import JoinAborted, KeyPair, join, run_keygen, w
from waiting import wait_until

AREALM = "crossbarfabriccenter.mrealm.arealm."
RCLUSTER = "crossbarfabriccenter.mrealm.routercluster."
WCLUSTER = "crossbarfabriccenter.mrealm.webcluster."
METADATA = "crossbarfabriccenter.mrealm.metadata."


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def is_oid(v) -> bool:
    try:
        return str(uuid.UUID(v)) == v
    except (TypeError, ValueError):
        return False


async def call_error(session, uri, *args, **kwargs) -> ApplicationError:
    with pytest.raises(ApplicationError) as e:
        await w(session.call(uri, *args, **kwargs))
    return e.value


async def status_becomes(session, get_uri: str, oid: str, status: str, timeout: float = 15.0) -> dict:
    """Polls `get_uri(oid)` until the object has `status` (a stop answers STOPPING; the
    orchestration reconciler moves it to STOPPED once its workers are gone)."""

    last = {}

    async def now():
        got = await w(session.call(get_uri, oid))
        last["got"] = got
        return got if got["status"] == status else None

    return await wait_until(now, timeout, 0.05, what=lambda: f"{get_uri}({oid}) to be {status}; last {last.get('got')!r}")


async def expect_error(session, error_uri, uri, *args, **kwargs):
    e = await call_error(session, uri, *args, **kwargs)
    assert e.error == error_uri, f"{uri}{args}: expected {error_uri}, got {e.error} {e.args}"
    return e


def node_key(tmp_path, name) -> KeyPair:
    """A fresh key pair for a node (its user-id is the name)."""
    r = run_keygen(tmp_path, name=name, user_id=name)
    assert r.returncode == 0, r.stderr
    return KeyPair(tmp_path / f"{name}.priv", tmp_path / f"{name}.pub")


async def join_node(master, kp, **kw):
    """A node session: the paired key, no realm (the master picks the node's management realm)."""
    return await join(master, key=kp, realm=None, authrole="node", authextra={"pubkey": kp.pubkey_hex}, **kw)


async def closed(session, timeout=5.0):
    """The CloseDetails of a session the router closes (bounded wait)."""
    return await asyncio.wait_for(asyncio.shield(session.left_f), timeout)


def _realm_not_there_yet(e: JoinAborted) -> bool:
    return e.details.reason == "wamp.error.no_such_realm"


async def join_when_realm_exists(master, keys, realm: str, timeout: float = 10.0):
    """Join ``realm`` as the superuser once ``master`` knows it: a replica applies a management
    realm created through another one a little later, and a re-created one takes a moment.
    Only an ABORT with wamp.error.no_such_realm means "not yet"; anything else fails."""
    return await wait_until(
        lambda: join(master, keys, realm=realm),
        timeout=timeout,
        interval=0.05,
        what=f"management realm {realm} on {master.url}",
        retry_on=(JoinAborted,),
        retry_if=_realm_not_there_yet,
    )


class Mrealm:
    """A fresh management realm: `su` on the global realm, `s` joined on the mrealm."""

    def __init__(self, master, keys, su, mrealm, s):
        self.master, self.keys, self.su, self.mrealm, self.s = master, keys, su, mrealm, s
        self.events: list[tuple[str, list]] = []

    @property
    def name(self) -> str:
        return self.mrealm["name"]

    async def watch(self, prefix: str, *topics: str):
        for t in topics:
            def on_event(*args, _t=t, **kwargs):
                self.events.append((_t, list(args)))

            await w(self.s.subscribe(on_event, prefix + t))

    async def event(self, topic: str, pred=lambda arg: True, timeout: float = 5.0):
        """The first argument of the first `topic` event matching `pred` (bounded wait)."""

        def first():
            # a list around the argument: a falsy argument is an event too
            return next(([args[0]] for t, args in self.events if t == topic and args and pred(args[0])), None)

        found = await wait_until(first, timeout, what=lambda: f"a matching {topic} event; got {self.events!r}")
        return found[0]

    async def pair_node(self, tmp_path, authid: str | None = None) -> tuple[dict, KeyPair]:
        name = unique("node")
        kp = node_key(tmp_path, name)
        node = await w(
            self.su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, self.name, authid or name)
        )
        return node, kp

    async def join_as_node(self, kp: KeyPair):
        return await join_node(self.master, kp)


async def new_mrealm(master, keys) -> Mrealm:
    su = await join(master, keys)
    m = await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": unique("mr-")}))
    s = await join(master, keys, realm=m["name"])
    assert s.details.authrole == "owner", s.details
    return Mrealm(master, keys, su, m, s)


async def session_gone(su, session_id: int) -> bool:
    """Whether session ``session_id`` is gone from the realm of ``su`` (who may use the
    meta API)."""
    try:
        await su.call("wamp.session.get", session_id)
    except ApplicationError as e:
        assert e.error == "wamp.error.no_such_session", e
        return True
    return False
