"""WebSocket over TLS (``--tls-cert``/``--tls-key``) and cryptosign channel binding.

With TLS, a client that asks for ``channel_binding: "tls-unique"`` (the Crossbar shell and
edge node do on wss://) must sign the challenge XORed with SHA-256 of the handshake's first
Finished message, computed here by autobahn itself; a signature of the plain challenge is
then refused, so a login relayed from another TLS connection does not work. On plain ws://
the request is answered with no binding (as Crossbar's older routers do). SIGHUP reloads
the certificate.
"""

import asyncio
import os
import signal
import ssl
import subprocess

import pytest

from crossbar_pypi import ANSI, CROSSBAR, SHELL_TIMEOUT, require_crossbar
from conftest import (
    JoinAborted,
    Master,
    aio,
    http_get,
    join,
    join_expect_abort,
    require_binary,
)
from waiting import wait_until


def certs(dir_, name):
    """A CA and a certificate for 127.0.0.1 issued by it: (ca.pem, cert, key)."""
    binary = require_binary()
    ca_dir = dir_ / f"{name}-ca"
    for args in (
        ["certs", "ca", "--dir", str(ca_dir)],
        ["certs", "issue", "--ca-dir", str(ca_dir), "--out", str(dir_), "--name", name, "--san", "127.0.0.1"],
    ):
        r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    return ca_dir / "ca.pem", dir_ / f"{name}.pem", dir_ / f"{name}.key"


def client_context(ca_pem) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    ctx.check_hostname = True
    return ctx


@pytest.fixture(scope="module")
def tls_master(tmp_path_factory, keys):
    d = tmp_path_factory.mktemp("ws-tls")
    ca, cert, key = certs(d, "ws")
    # The master reads the files it is given on every reload: these paths stay, their
    # contents change in the reload test.
    live_cert, live_key = d / "live.pem", d / "live.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    m = Master(d, keys.superuser.pub_path, extra_args=["--tls-cert", str(live_cert), "--tls-key", str(live_key)])
    m.ssl = client_context(ca)
    m.dir, m.live_cert, m.live_key = d, live_cert, live_key
    m.start()
    yield m
    m.stop()


class BindingSigner:
    """Signs as the Crossbar shell does on wss://: bound to the channel's tls-unique id, or
    (``bind=False``) the plain challenge although the binding was asked for."""

    def __init__(self, keypair, bind=True):
        self.key = keypair.key
        self.bind = bind
        self.challenges = []

    def sign_challenge_for(self, session, challenge):
        self.challenges.append(challenge.extra)
        if not self.bind:
            return self.key.sign_challenge(challenge)
        channel_id = session._transport.transport_details.channel_id["tls-unique"]
        return self.key.sign_challenge(challenge, channel_id=channel_id, channel_id_type="tls-unique")


def bound_hello(keys):
    return {"pubkey": keys.superuser.pubkey_hex, "channel_binding": "tls-unique"}


@aio
async def test_wss_serves_sessions_and_http(tls_master, keys):
    assert tls_master.url.startswith("wss://")
    status, body = http_get(tls_master.http + "/readyz", context=tls_master.ssl)
    assert (status, body) == (200, b"ready\n")
    s = await join(tls_master, keys)
    assert s.details.authid == "superuser"
    assert s.challenges[0].extra.get("channel_binding") is None
    s.leave()


@aio
async def test_tls_unique_binding_is_verified(tls_master, keys):
    signer = BindingSigner(keys.superuser)
    s = await join(tls_master, keys, authextra=bound_hello(keys), signer=signer)
    assert s.details.authid == "superuser"
    assert signer.challenges[0]["channel_binding"] == "tls-unique"
    s.leave()
    # The plain challenge (what a login relayed from another channel would carry) is refused.
    unbound = BindingSigner(keys.superuser, bind=False)
    details = await join_expect_abort(tls_master, keys, authextra=bound_hello(keys), signer=unbound)
    assert details.reason == "wamp.error.not_authorized", details
    assert "does not match" in (details.message or ""), details


@aio
async def test_an_unknown_binding_is_refused_before_authentication(tls_master, keys):
    extra = {"pubkey": keys.superuser.pubkey_hex, "channel_binding": "tls-server-end-point"}
    details = await join_expect_abort(tls_master, keys, authextra=extra)
    assert details.reason == "wamp.error.invalid_argument", details


@aio
async def test_plain_ws_answers_a_binding_request_with_none(master, keys):
    signer = BindingSigner(keys.superuser, bind=False)
    s = await join(master, keys, authextra=bound_hello(keys), signer=signer)
    assert signer.challenges[0]["channel_binding"] is None
    s.leave()


@aio
async def test_plain_tcp_on_the_tls_port_is_not_served(tls_master, keys):
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_master.port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    try:
        data = await asyncio.wait_for(reader.read(4096), 5)
    except ConnectionResetError:  # the TLS alert and close may arrive as a reset
        data = b""
    assert b"ready" not in data
    writer.close()
    # ... and the master still serves TLS clients.
    s = await join(tls_master, keys)
    s.leave()


@aio(timeout=60)
async def test_sighup_reloads_the_certificate(tls_master, keys):
    ca2, cert2, key2 = certs(tls_master.dir, "ws2")
    old_context = tls_master.ssl
    tls_master.live_cert.write_bytes(cert2.read_bytes())
    tls_master.live_key.write_bytes(key2.read_bytes())
    tls_master.proc.send_signal(signal.SIGHUP)
    tls_master.ssl = client_context(ca2)
    try:
        # New connections get the new certificate once the reload is done.
        s = await wait_until(
            lambda: join(tls_master, keys),
            timeout=10,
            interval=0.1,
            what="a session verified against the new CA",
            retry_on=(ssl.SSLError, OSError, JoinAborted),
        )
        s.leave()
        tls_master.ssl = old_context
        with pytest.raises(ssl.SSLCertVerificationError):
            await join(tls_master, keys)
    finally:
        tls_master.ssl = old_context
        tls_master.live_cert.write_bytes((tls_master.dir / "ws.pem").read_bytes())
        tls_master.live_key.write_bytes((tls_master.dir / "ws.key").read_bytes())
        tls_master.proc.send_signal(signal.SIGHUP)


def test_the_real_crossbar_shell_over_wss_binds_to_tls_unique(tls_master, keys, tmp_path):
    """`crossbar shell` (PyPI) asks for tls-unique on wss:// and signs the bound challenge."""
    require_crossbar()
    dotdir = tmp_path / "shell"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(USER="su", CROSSBAR_FABRIC_URL=tls_master.url, SSL_CERT_FILE=str(tls_master.dir / "ws-ca" / "ca.pem"))

    def shell(*args):
        r = subprocess.run([str(CROSSBAR), "shell", "--dotdir", str(dotdir), *args], capture_output=True,
                           text=True, timeout=SHELL_TIMEOUT, env=env, stdin=subprocess.DEVNULL)
        return r.returncode, ANSI.sub("", r.stdout + r.stderr)

    log_start = len(tls_master.log_path.read_bytes())
    code, out = shell("init", "--yes")
    assert code == 0, out
    # The shell acts as the master's superuser: its profile gets the superuser's key.
    (dotdir / "default.priv").write_bytes(keys.superuser.priv_path.read_bytes())
    (dotdir / "default.pub").write_bytes(keys.superuser.pub_path.read_bytes())
    code, out = shell("auth", "--yes")
    assert code == 0 and "authid      : superuser" in out, out
    code, out = shell("show", "status")
    assert code == 0 and '"realm": "com.crossbario.fabric"' in out, out
    log = tls_master.log_path.read_bytes()[log_start:].decode(errors="replace")
    assert "cryptosign failed" not in log, log[-2000:]
