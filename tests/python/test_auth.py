"""keygen, superuser cryptosign auth, anonymous auth, realms and roles from the config file."""

import os
import re
import secrets
import stat

import pytest
from autobahn.util import parse_keyfile
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.exception import ApplicationError
from nacl.signing import VerifyKey

from conftest import (
    ALL_SERIALIZERS,
    FABRIC_REALM,
    PUBLIC_PREFIX,
    RawWamp,
    aio,
    join,
    join_expect_abort,
    run_keygen,
    w,
)
from waiting import wait_until

HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------
# keygen
# --------------------------------------------------------------------------------------


def test_keygen_writes_crossbar_keyfiles(tmp_path):
    r = run_keygen(tmp_path, name="alice", user_id="alice@example.com")
    assert r.returncode == 0, f"keygen failed: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    priv, pub = tmp_path / "alice.priv", tmp_path / "alice.pub"
    assert priv.is_file(), sorted(os.listdir(tmp_path))
    assert pub.is_file(), sorted(os.listdir(tmp_path))

    mode = stat.S_IMODE(priv.stat().st_mode)
    assert mode == 0o600, f"private key file mode is {oct(mode)}, expected 0o600"

    pub_text = pub.read_text()
    m = re.search(r"^public-key-ed25519:\s*([0-9a-fA-F]+)\s*$", pub_text, re.M)
    assert m, f"no 'public-key-ed25519: <hex>' line in .pub:\n{pub_text}"
    pub_hex = m.group(1).lower()
    assert HEX64.match(pub_hex), pub_hex
    assert "private-key" not in pub_text, "public key file must not contain the private key"

    # Crossbar key-file format as parsed by autobahn (comment block, blank line, tags).
    pub_tags = parse_keyfile(str(pub), private=False)
    assert pub_tags.get("public-key-ed25519", "").lower() == pub_hex, pub_tags
    assert pub_tags.get("user-id") == "alice@example.com", pub_tags
    priv_tags = parse_keyfile(str(priv), private=True)
    assert HEX64.match(priv_tags.get("private-key-ed25519", "").lower()), priv_tags

    # autobahn loads both files; they belong together.
    sk = CryptosignKey.from_keyfile(str(priv))
    assert sk.can_sign
    assert sk.public_key() == pub_hex
    vk = CryptosignKey.from_keyfile(str(pub))
    assert not vk.can_sign
    assert vk.public_key() == pub_hex

    # and the key really signs for that public key
    msg = secrets.token_bytes(32)
    sig = sk._key.sign(msg).signature
    VerifyKey(bytes.fromhex(pub_hex)).verify(msg, sig)


def test_keygen_default_name_and_distinct_keys(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d in (a, b):
        r = run_keygen(d)
        assert r.returncode == 0, f"keygen failed: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
        assert (d / "key.priv").is_file() and (d / "key.pub").is_file(), sorted(os.listdir(d))
    ka = CryptosignKey.from_keyfile(str(a / "key.priv")).public_key()
    kb = CryptosignKey.from_keyfile(str(b / "key.priv")).public_key()
    assert ka != kb, "two keygen runs produced the same key"


# --------------------------------------------------------------------------------------
# superuser
# --------------------------------------------------------------------------------------


def assert_superuser_details(d):
    assert d.realm == FABRIC_REALM
    assert d.authid == "superuser"
    assert d.authrole == "user"
    assert d.authmethod == "cryptosign"
    assert d.authprovider == "static"
    assert isinstance(d.session, int) and 0 < d.session < 2**53
    assert isinstance(d.authextra, dict) and d.authextra, f"authextra is {d.authextra!r}"
    for k in ("x_cb_node", "x_cb_peer", "x_cb_pid"):
        assert k in d.authextra, f"{k} missing in authextra {d.authextra!r}"


@pytest.mark.parametrize("ser", ALL_SERIALIZERS)
@aio
async def test_superuser_welcome(master, keys, ser):
    s = await join(master, keys, serializer=ser, realm=FABRIC_REALM)
    assert_superuser_details(s.details)
    assert len(s.challenges) == 1 and s.challenges[0].method == "cryptosign"


@pytest.mark.parametrize(
    "realm,authid",
    [(None, None), (None, "superuser"), (FABRIC_REALM, None), (FABRIC_REALM, "superuser"), (FABRIC_REALM, "whoever")],
)
@aio
async def test_superuser_hello_variants(master, keys, realm, authid):
    s = await join(master, keys, realm=realm, authid=authid)
    assert_superuser_details(s.details)


@aio
async def test_superuser_welcome_on_the_wire(master, keys):
    raw = await RawWamp.connect(master)
    await raw.send(
        [1, None, {"roles": RawWamp.ROLES, "authmethods": ["cryptosign"], "authextra": {"pubkey": keys.superuser.pubkey_hex}}]
    )
    ch = await raw.recv()
    assert ch[0] == 4 and ch[1] == "cryptosign", ch
    assert isinstance(ch[2], dict) and HEX64.match(ch[2].get("challenge", "")), ch
    await raw.send([5, keys.superuser.sign_challenge_hex(ch[2]["challenge"]), {}])
    wel = await raw.recv()
    assert wel[0] == 2, wel
    assert isinstance(wel[1], int) and 0 < wel[1] < 2**53
    d = wel[2]
    assert d.get("realm") == FABRIC_REALM
    assert d.get("authid") == "superuser"
    assert d.get("authrole") == "user"
    assert d.get("authmethod") == "cryptosign"
    assert d.get("authprovider") == "static"
    assert {"broker", "dealer"} <= set(d.get("roles", {})), d
    for k in ("x_cb_node", "x_cb_peer", "x_cb_pid"):
        assert k in d.get("authextra", {}), d
    # orderly GOODBYE handshake (spec: reply goodbye_and_out; Crossbar.io replies wamp.close.normal)
    await raw.send([6, {}, "wamp.close.close_realm"])
    bye = await raw.recv()
    assert bye[0] == 6 and bye[2] in ("wamp.close.goodbye_and_out", "wamp.close.normal"), bye


@aio
async def test_unknown_key_is_aborted(master, keys):
    details = await join_expect_abort(master, keys, key=keys.intruder)
    assert details.reason.startswith("fabric.auth-failed."), details


@aio
async def test_wrong_signature_is_aborted(master, keys):
    # claim the superuser's public key, but sign the challenge with another key
    details = await join_expect_abort(
        master, keys, authextra={"pubkey": keys.superuser.pubkey_hex}, signer=keys.intruder.key
    )
    assert details.reason == "wamp.error.not_authorized" or details.reason.startswith("fabric.auth-failed."), details


@pytest.mark.parametrize("variant", ["foreign-challenge", "garbage"])
@aio
async def test_bad_authenticate_signature_raw(master, keys, variant):
    raw = await RawWamp.connect(master)
    await raw.send([1, FABRIC_REALM, {"roles": RawWamp.ROLES, "authmethods": ["cryptosign"],
                                      "authextra": {"pubkey": keys.superuser.pubkey_hex}}])
    ch = await raw.recv()
    assert ch[0] == 4, ch
    if variant == "foreign-challenge":
        # a valid signature by the right key, but over a different 32-byte message
        sig = keys.superuser.sign_challenge_hex(secrets.token_hex(32))
    else:
        sig = "00" * 96
    await raw.send([5, sig, {}])
    from websockets.exceptions import ConnectionClosed

    try:
        msg = await raw.recv()
    except ConnectionClosed as e:
        raise AssertionError(f"connection closed without ABORT ({e})")
    assert msg[0] == 3, f"expected ABORT, got {msg!r}"
    reason = msg[2]
    assert reason == "wamp.error.not_authorized" or reason.startswith("fabric.auth-failed."), msg
    await assert_router_alive_small(master, keys)


async def assert_router_alive_small(master, keys):
    s = await join(master, keys)
    assert_superuser_details(s.details)
    await s.close()


# --------------------------------------------------------------------------------------
# anonymous / public role
# --------------------------------------------------------------------------------------


@aio
async def test_anonymous_gets_public_role(master, keys):
    s = await join(master, keys, auth="anonymous")
    assert s.details.realm == FABRIC_REALM
    assert s.details.authrole == "public"
    assert s.details.authmethod == "anonymous"
    assert isinstance(s.details.session, int)


@aio
async def test_anonymous_permissions(master, keys):
    su = await join(master, keys, label="su")
    anon = await join(master, keys, auth="anonymous", label="anon")

    pub_proc = PUBLIC_PREFIX + "echo"
    priv_proc = "com.example.private.echo"
    await w(su.register(lambda x: ["pub", x], pub_proc))
    await w(su.register(lambda x: ["priv", x], priv_proc))

    assert await w(anon.call(pub_proc, 7)) == ["pub", 7]

    with pytest.raises(ApplicationError) as ei:
        await w(anon.call(priv_proc, 7))
    assert ei.value.error == "wamp.error.not_authorized"

    with pytest.raises(ApplicationError) as ei:
        await w(anon.register(lambda: None, PUBLIC_PREFIX + "anon.proc"))
    assert ei.value.error == "wamp.error.not_authorized"

    from autobahn.wamp.types import PublishOptions

    with pytest.raises(ApplicationError) as ei:
        await w(anon.publish(PUBLIC_PREFIX + "topic", 1, options=PublishOptions(acknowledge=True)))
    assert ei.value.error == "wamp.error.not_authorized"

    with pytest.raises(ApplicationError) as ei:
        await w(anon.subscribe(lambda *a: None, "com.example.private.topic"))
    assert ei.value.error == "wamp.error.not_authorized"

    got = []
    await w(anon.subscribe(lambda x: got.append(x), PUBLIC_PREFIX + "topic"))
    await w(su.publish(PUBLIC_PREFIX + "topic", 42, options=PublishOptions(acknowledge=True)))
    await wait_until(lambda: got, what="event on public topic")
    assert got == [42]


# --------------------------------------------------------------------------------------
# realms from the config file
# --------------------------------------------------------------------------------------


@aio
async def test_realm1_superuser_default_role_owner(master, keys):
    s = await join(master, keys, realm="realm1")
    assert s.details.realm == "realm1"
    assert s.details.authrole == "owner"
    assert s.details.authid == "superuser"
    assert s.details.authmethod == "cryptosign"


@aio
async def test_realm1_superuser_requested_role_guest(master, keys):
    s = await join(master, keys, realm="realm1", authrole="guest")
    assert s.details.realm == "realm1"
    assert s.details.authrole == "guest"


@pytest.mark.parametrize(
    "authrole,reason",
    [
        # a role name users may request (spec 3.3 step 2), but not one realm1 has
        ("operator", "wamp.error.no_such_role"),
        # not a role name users may request at all: the authenticator refuses it first
        ("no-such-role", "fabric.auth-failed.invalid-parameters"),
    ],
)
@aio
async def test_realm1_unknown_role_aborted(master, keys, authrole, reason):
    details = await join_expect_abort(master, keys, realm="realm1", authrole=authrole)
    assert details.reason == reason, details


@pytest.mark.parametrize("auth", ["superuser", "anonymous"])
@aio
async def test_unknown_realm_aborted(master, keys, auth):
    details = await join_expect_abort(master, keys, realm="no.such.realm", auth=auth)
    assert details.reason == "wamp.error.no_such_realm", details


@aio
async def test_realm1_anonymous_gets_guest(master, keys):
    s = await join(master, keys, realm="realm1", auth="anonymous")
    assert s.details.realm == "realm1"
    assert s.details.authrole == "guest"
    assert s.details.authmethod == "anonymous"


@aio
async def test_realm1_guest_permissions_and_realm_isolation(master, keys):
    owner = await join(master, keys, realm="realm1", label="owner")
    guest = await join(master, keys, realm="realm1", authrole="guest", label="guest")
    fabric = await join(master, keys, realm=FABRIC_REALM, label="fabric")

    await w(owner.register(lambda x: ["public", x], "com.example.public.echo"))
    await w(owner.register(lambda x: ["private", x], "com.example.private.echo"))

    assert await w(guest.call("com.example.public.echo", 1)) == ["public", 1]
    with pytest.raises(ApplicationError) as ei:
        await w(guest.call("com.example.private.echo", 1))
    assert ei.value.error == "wamp.error.not_authorized"
    with pytest.raises(ApplicationError) as ei:
        await w(guest.register(lambda: None, "com.example.public.guestproc"))
    assert ei.value.error == "wamp.error.not_authorized"

    # the registration lives in realm1 only
    with pytest.raises(ApplicationError) as ei:
        await w(fabric.call("com.example.public.echo", 1))
    assert ei.value.error == "wamp.error.no_such_procedure"
    # and the same URI can be registered independently on the other realm
    await w(fabric.register(lambda x: ["fabric", x], "com.example.public.echo"))
    assert await w(fabric.call("com.example.public.echo", 2)) == ["fabric", 2]
    assert await w(guest.call("com.example.public.echo", 3)) == ["public", 3]


# --------------------------------------------------------------------------------------
# beyond the brief's list: malformed cryptosign input must fail the session only
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authextra",
    [{"pubkey": "zz" * 32}, {"pubkey": "ab" * 31}, {"pubkey": 12345}, {}, None, {"pubkey": "ab" * 33}],
    ids=["nonhex", "short", "int", "no-pubkey", "no-authextra", "long"],
)
@aio
async def test_malformed_cryptosign_hello_not_welcomed(master, keys, authextra):
    raw = await RawWamp.connect(master)
    details = {"roles": RawWamp.ROLES, "authmethods": ["cryptosign"]}
    if authextra is not None:
        details["authextra"] = authextra
    await raw.send([1, FABRIC_REALM, details])
    from websockets.exceptions import ConnectionClosed

    try:
        msg = await raw.recv()
        if msg[0] == RawWamp.CHALLENGE:
            # answer with a signature by a key the router does not know
            await raw.send([5, keys.intruder.sign_challenge_hex(msg[2]["challenge"]), {}])
            msg = await raw.recv()
    except ConnectionClosed:
        msg = None
    assert msg is None or msg[0] == RawWamp.ABORT, f"expected ABORT (or close), got {msg!r}"
    await assert_router_alive_small(master, keys)


@pytest.mark.parametrize("signature", ["not hex at all", "ab" * 10, "", "00" * 64], ids=["nonhex", "short", "empty", "sig-only-zero"])
@aio
async def test_malformed_authenticate_not_welcomed(master, keys, signature):
    raw = await RawWamp.connect(master)
    await raw.send([1, FABRIC_REALM, {"roles": RawWamp.ROLES, "authmethods": ["cryptosign"],
                                      "authextra": {"pubkey": keys.superuser.pubkey_hex}}])
    ch = await raw.recv()
    assert ch[0] == RawWamp.CHALLENGE, ch
    await raw.send([5, signature, {}])
    from websockets.exceptions import ConnectionClosed

    try:
        msg = await raw.recv()
    except ConnectionClosed:
        msg = None
    assert msg is None or msg[0] == RawWamp.ABORT, f"expected ABORT (or close), got {msg!r}"
    await assert_router_alive_small(master, keys)


@aio
async def test_authenticate_without_hello_is_violation(master, keys):
    raw = await RawWamp.connect(master)
    await raw.send([5, "00" * 96, {}])
    _, msgs = await raw.expect_closed()
    if msgs:
        assert msgs[0][0] == RawWamp.ABORT and msgs[0][2] == "wamp.error.protocol_violation", msgs[0]
    await assert_router_alive_small(master, keys)
