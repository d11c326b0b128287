"""Helpers for users of the global realm (spec §3.3): key pairs, the activation code as the
master logs it (an operator reads it there), HELLO arguments of a user, activated users and
their sessions on a management realm."""

from __future__ import annotations

import re

from conftest import FABRIC_REALM, KeyPair, join, join_expect_abort, run_keygen, w
from mgmt import unique
from waiting import wait_until

ALPHABET = "[345679ACEFGHJKLMNPQRSTUVWXY]"
CODE_LINE = re.compile(rf"activation code for (\S+): ({ALPHABET}{{4}}-{ALPHABET}{{4}}-{ALPHABET}{{4}})")


def new_key(tmp_path, name: str) -> KeyPair:
    """A fresh key pair whose user-id is ``name``@example.com."""
    r = run_keygen(tmp_path, name=name, user_id=f"{name}@example.com")
    assert r.returncode == 0, r.stderr
    return KeyPair(tmp_path / f"{name}.priv", tmp_path / f"{name}.pub")


def codes_for(master, email: str) -> list[str]:
    """Every activation code the master logged for ``email``, oldest first."""
    text = master.log_path.read_bytes().decode("utf-8", "replace")
    return [code for who, code in CODE_LINE.findall(text) if who == email]


async def last_code(master, email: str, timeout: float = 5.0) -> str:
    """The newest activation code for ``email`` in the master's log (bounded wait for it)."""
    codes = await wait_until(
        lambda: codes_for(master, email),
        timeout,
        interval=0.05,
        what=lambda: f"an activation code for {email} in the log:\n{master.log_tail()}",
    )
    return codes[-1]


async def as_user(master, kp, email, code=None, realm=FABRIC_REALM, new_code=False, **kw):
    """The ``join`` / ``join_expect_abort`` arguments of a user's HELLO."""
    extra = {"pubkey": kp.pubkey_hex}
    if code is not None:
        extra["activation_code"] = code
    if new_code:
        extra["request_new_activation_code"] = True
    return dict(key=kp, authid=email, authextra=extra, realm=realm, **kw)


async def activated_user(master, tmp_path, name):
    """A new user ``name``@example.com, activated with the logged code; returns a session of
    theirs on the global realm (their key is ``tmp_path``/``name``.priv)."""
    kp = new_key(tmp_path, name)
    email = f"{name}@example.com"
    await join_expect_abort(master, key=kp, authid=email, authextra={"pubkey": kp.pubkey_hex})
    code = await last_code(master, email)
    extra = {"pubkey": kp.pubkey_hex, "activation_code": code}
    s = await join(master, key=kp, authid=email, authextra=extra)
    s.leave()
    return await join(master, key=kp, authid=email, authextra={"pubkey": kp.pubkey_hex})


async def user(master, tmp_path, prefix):
    """An activated user: (global realm session, key pair, e-mail, user oid)."""
    name = unique(prefix)
    s = await activated_user(master, tmp_path, name)
    kp = KeyPair(tmp_path / f"{name}.priv", tmp_path / f"{name}.pub")
    me = await w(s.call("crossbarfabriccenter.user.get_user_by_email", s.details.authid))
    return s, kp, s.details.authid, me["oid"]


async def join_as(master, kp, email, realm, authrole=None):
    """A user's session on ``realm`` (a management realm they have a role on)."""
    return await join(master, key=kp, authid=email, authextra={"pubkey": kp.pubkey_hex}, realm=realm, authrole=authrole)


async def join_as_refused(master, kp, email, realm, authrole=None):
    """A user's HELLO for ``realm`` that must be refused; returns the ABORT details."""
    return await join_expect_abort(
        master, key=kp, authid=email, authextra={"pubkey": kp.pubkey_hex}, realm=realm, authrole=authrole
    )
