"""Helpers for the management-realm object API tests: a fresh management realm per test
with an owner session joined on it, paired nodes, error and event assertions."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from autobahn.wamp.exception import ApplicationError

from conftest import KeyPair, join, run_keygen, w

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


async def expect_error(session, error_uri, uri, *args, **kwargs):
    e = await call_error(session, uri, *args, **kwargs)
    assert e.error == error_uri, f"{uri}{args}: expected {error_uri}, got {e.error} {e.args}"
    return e


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
        deadline = time.monotonic() + timeout
        while True:
            for t, args in self.events:
                if t == topic and args and pred(args[0]):
                    return args[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {topic} event matching; got {self.events!r}")
            await asyncio.sleep(0.02)

    async def pair_node(self, tmp_path, authid: str | None = None) -> tuple[dict, KeyPair]:
        name = unique("node")
        r = run_keygen(tmp_path, name=name, user_id=name)
        assert r.returncode == 0, r.stderr
        kp = KeyPair(tmp_path / f"{name}.priv", tmp_path / f"{name}.pub")
        node = await w(
            self.su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, self.name, authid or name)
        )
        return node, kp

    async def join_as_node(self, kp: KeyPair):
        return await join(
            self.master, key=kp, realm=None, authrole="node", authextra={"pubkey": kp.pubkey_hex}
        )


async def new_mrealm(master, keys) -> Mrealm:
    su = await join(master, keys)
    m = await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": unique("mr-")}))
    s = await join(master, keys, realm=m["name"])
    assert s.details.authrole == "owner", s.details
    return Mrealm(master, keys, su, m, s)
