"""Users by e-mail and key with activation codes (spec §3.3), and nodes by paired key (§4.3),
against the real binary. The code is read from the master's log, as an operator would."""

import pytest

from conftest import FABRIC_REALM, aio, join, join_expect_abort
from users import as_user, codes_for, last_code, new_key


@aio
async def test_new_user_activation_flow(master, tmp_path):
    kp = new_key(tmp_path, "alice")
    email = "alice@example.com"
    d = await join_expect_abort(master, **await as_user(master, kp, email))
    assert d.reason == "fabric.auth-failed.new-user-auth-code-sent", d
    assert email in (d.message or ""), d
    code = await last_code(master, email)

    d = await join_expect_abort(master, **await as_user(master, kp, email))
    assert d.reason == "fabric.auth-failed.pending-activation", d

    wrong = "AAAA-AAAA-AAAA" if code != "AAAA-AAAA-AAAA" else "CCCC-CCCC-CCCC"
    d = await join_expect_abort(master, **await as_user(master, kp, email, code=wrong))
    assert d.reason == "fabric.auth-failed.invalid-activation-code", d

    s = await join(master, **await as_user(master, kp, email, code=code))
    assert (s.details.realm, s.details.authid, s.details.authrole) == (FABRIC_REALM, email, "user")
    assert s.details.authmethod == "cryptosign"
    s.leave()

    # Activated: the key alone is enough now, and the code is spent.
    s = await join(master, **await as_user(master, kp, email))
    assert s.details.authid == email
    s.leave()
    d = await join_expect_abort(master, **await as_user(master, kp, email, code=code))
    assert d.reason == "fabric.auth-failed.no-pending-activation", d


@aio
async def test_known_user_new_key_and_new_code(master, tmp_path):
    email = "bob@example.com"
    first, second = new_key(tmp_path, "bob1"), new_key(tmp_path, "bob2")
    await join_expect_abort(master, **await as_user(master, first, email))
    s = await join(master, **await as_user(master, first, email, code=await last_code(master, email)))
    s.leave()

    # A second key of a known user gets a LOGIN code.
    d = await join_expect_abort(master, **await as_user(master, second, email))
    assert d.reason == "fabric.auth-failed.registered-user-auth-code-sent", d
    old = await last_code(master, email)

    # Asking for a new code replaces the pending one.
    d = await join_expect_abort(master, **await as_user(master, second, email, new_code=True))
    assert d.reason == "fabric.auth-failed.registered-user-auth-code-sent", d
    codes = codes_for(master, email)
    new = codes[-1]
    assert len(codes) == 3 and new != old, codes
    d = await join_expect_abort(master, **await as_user(master, second, email, code=old))
    assert d.reason == "fabric.auth-failed.invalid-activation-code", d
    s = await join(master, **await as_user(master, second, email, code=new))
    assert s.details.authid == email
    s.leave()


@aio
async def test_codes_are_per_key_and_unused_codes_do_not_leak(master, tmp_path):
    kp, other = new_key(tmp_path, "carol"), new_key(tmp_path, "mallory")
    email = "carol@example.com"
    await join_expect_abort(master, **await as_user(master, kp, email))
    code = await last_code(master, email)
    # Another key cannot use carol's code: it has no pending activation of its own.
    d = await join_expect_abort(master, **await as_user(master, other, email, code=code))
    assert d.reason == "fabric.auth-failed.no-pending-activation", d


@pytest.mark.parametrize(
    "case",
    [
        dict(authid=None, realm=FABRIC_REALM, authrole=None),  # users need their e-mail
        dict(authid="x@example.com", realm=FABRIC_REALM, authrole="owner"),  # not a global role
        dict(authid="x@example.com", realm=None, authrole="admin"),
        dict(authid=None, realm="mrealm-x", authrole="node"),  # nodes must not ask for a realm
        dict(authid="x@example.com", realm="mrealm-x", authrole="developerx"),
    ],
)
@aio
async def test_invalid_parameters(master, tmp_path, case):
    kp = new_key(tmp_path, "dave")
    d = await join_expect_abort(master, key=kp, authextra={"pubkey": kp.pubkey_hex}, **case)
    assert d.reason == "fabric.auth-failed.invalid-parameters", (case, d)


@aio
async def test_unpaired_node_is_refused(master, tmp_path):
    kp = new_key(tmp_path, "node9")
    d = await join_expect_abort(
        master, key=kp, authextra={"pubkey": kp.pubkey_hex}, realm=None, authrole="node"
    )
    assert d.reason == "fabric.auth-failed.node-unpaired", d


@aio
async def test_activated_user_on_unknown_management_realm(master, tmp_path):
    kp = new_key(tmp_path, "erin")
    email = "erin@example.com"
    await join_expect_abort(master, **await as_user(master, kp, email))
    s = await join(master, **await as_user(master, kp, email, code=await last_code(master, email)))
    s.leave()
    d = await join_expect_abort(master, **await as_user(master, kp, email, realm="no-such-mrealm"))
    assert d.reason == "wamp.error.no_such_realm", d
