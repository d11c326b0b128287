"""Shared fixtures and helpers for the fabric-master integration tests.

* ``master``: one fabric-master process per test module (fresh port, fresh data
  dir, the superuser key from ``keys``, and the realm1 TOML config).  A module
  can add CLI flags with a module-level ``MASTER_EXTRA_ARGS`` list.
* ``keys``: keys generated once per run with ``fabric-master keygen``.
* ``aio``: decorator that turns an ``async def`` test into a sync one, running it
  under ``asyncio.run`` with an overall bound, and closing every session the test
  opened via ``join``.
* ``join`` / ``join_expect_abort``: open an autobahn (asyncio) WAMP session with a
  given serializer and auth, bounded waits everywhere.
* ``RawWamp``: a raw WebSocket WAMP client (``websockets`` package, JSON or
  msgpack/cbor framing done by hand) for wire-level and bad-input tests.

Polling with a deadline lives in waiting.py; management-realm, user and simulated-node helpers
in mgmt.py, users.py and simnode.py. Test modules import helpers from these, never from each
other.
"""

from __future__ import annotations

import asyncio
import binascii
import contextvars
import functools
import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import txaio

txaio.use_asyncio()

from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402
from autobahn.asyncio.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.cryptosign import CryptosignKey  # noqa: E402
from autobahn.wamp.serializer import (  # noqa: E402
    CBORSerializer,
    JsonSerializer,
    MsgPackSerializer,
)
from autobahn.wamp.types import ComponentConfig  # noqa: E402

from waiting import WaitTimeout, wait_for  # noqa: E402

DEFAULT_BIN = "/root/.cache/fabric-master-target/debug/fabric-master"
BIN = os.environ.get("FABRIC_MASTER_BIN", DEFAULT_BIN)

FABRIC_REALM = "com.crossbario.fabric"
PUBLIC_PREFIX = "crossbarfabriccenter.public."

# Default timeout (seconds) of one awaited network step.
STEP = 5.0
# How long the master may take to answer 200 on /readyz after start.
READY_TIMEOUT = float(os.environ.get("FABRIC_MASTER_READY_TIMEOUT", "10"))

REALM1_CONFIG = """\
[[realms]]
name = "realm1"
anonymous_role = "guest"

[[realms.roles]]
name = "owner"

[[realms.roles.permissions]]
uri = ""
match = "prefix"
call = true
register = true
publish = true
subscribe = true
disclose_caller = true
disclose_publisher = true

[[realms.roles]]
name = "guest"

[[realms.roles.permissions]]
uri = "com.example.public."
match = "prefix"
call = true
subscribe = true
"""

_SERIALIZER_FACTORIES = {
    "cbor": lambda: CBORSerializer(),
    "msgpack": lambda: MsgPackSerializer(),
    "json": lambda: JsonSerializer(),
    "cbor.batched": lambda: CBORSerializer(batched=True),
    "msgpack.batched": lambda: MsgPackSerializer(batched=True),
    "json.batched": lambda: JsonSerializer(batched=True),
}

ALL_SERIALIZERS = list(_SERIALIZER_FACTORIES)
# The serializers the main RPC / PubSub tests are parametrized over.
MAIN_SERIALIZERS = ["cbor", "msgpack", "json", "cbor.batched", "json.batched"]


def other_serializer(ser: str) -> str:
    """A different serializer than ``ser`` (to exercise cross-serializer routing)."""
    order = ["cbor", "msgpack", "json"]
    base = ser.split(".")[0]
    return order[(order.index(base) + 1) % len(order)]


def make_serializer(name: str):
    return _SERIALIZER_FACTORIES[name]()


def require_binary() -> str:
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        pytest.fail(
            f"fabric-master binary not found or not executable at {BIN!r} "
            f"(set FABRIC_MASTER_BIN or build it into /root/.cache/fabric-master-target)",
            pytrace=False,
        )
    return BIN


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 2.0, context=None) -> tuple[int, bytes]:
    """HTTP(S) GET (no proxies). Returns (status, body); raises OSError on connect errors.
    ``context``: the ssl.SSLContext for https URLs."""
    opener = _NO_PROXY_OPENER
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------


class KeyPair:
    def __init__(self, priv_path: Path, pub_path: Path):
        self.priv_path = priv_path
        self.pub_path = pub_path
        self.key = CryptosignKey.from_keyfile(str(priv_path))
        self.pubkey_hex = self.key.public_key()
        # the raw nacl signing key, for raw-wire clients
        self.signing_key = self.key._key

    def sign_challenge_hex(self, challenge_hex: str) -> str:
        """What autobahn sends in AUTHENTICATE: hex(signature) + hex(challenge)."""
        data = binascii.a2b_hex(challenge_hex)
        sig = self.signing_key.sign(data).signature
        return binascii.b2a_hex(sig).decode() + challenge_hex


def run_keygen(out_dir: Path, name: str | None = None, user_id: str | None = None, timeout: float = 30):
    cmd = [require_binary(), "keygen", "--out", str(out_dir)]
    if name is not None:
        cmd += ["--name", name]
    if user_id is not None:
        cmd += ["--user-id", user_id]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class Keys:
    def __init__(self, superuser: KeyPair, intruder: KeyPair):
        self.superuser = superuser
        self.intruder = intruder


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    pairs = {}
    for name in ("superuser", "intruder"):
        r = run_keygen(d, name=name, user_id=f"{name}@example.com")
        if r.returncode != 0:
            pytest.fail(
                f"`fabric-master keygen --out {d} --name {name}` failed with exit code "
                f"{r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}",
                pytrace=False,
            )
        priv, pub = d / f"{name}.priv", d / f"{name}.pub"
        if not (priv.is_file() and pub.is_file()):
            pytest.fail(f"keygen did not write {priv} and {pub}: {sorted(os.listdir(d))}", pytrace=False)
        pairs[name] = KeyPair(priv, pub)
    return Keys(pairs["superuser"], pairs["intruder"])


# --------------------------------------------------------------------------------------
# master process
# --------------------------------------------------------------------------------------


class Master:
    def __init__(
        self,
        workdir: Path,
        superuser_pub: Path,
        extra_args=(),
        config_text: str | None = REALM1_CONFIG,
        peer_port: int | None = None,
    ):
        """``peer_port``: a fixed replica-to-replica port (others ``--join`` it); any free one
        by default."""
        self.workdir = workdir
        # Extra environment of the process (a test may set it between runs).
        self.env: dict[str, str] = {}
        self.peer_port = peer_port
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "fabric-master.log"
        self.superuser_pub = superuser_pub
        self.extra_args = list(extra_args)
        self.config_path = None
        if config_text is not None:
            self.config_path = workdir / "config.toml"
            self.config_path.write_text(config_text)
        self.port = None
        self.proc = None
        self._log_file = None
        # The client's ssl.SSLContext when the master serves TLS (--tls-cert/--tls-key).
        self.ssl = None

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl else 'ws'}://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            require_binary(),
            "start",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--peer-listen",
            f"127.0.0.1:{self.peer_port or 0}",
            "--data-dir",
            str(self.data_dir),
            "--superuser",
            str(self.superuser_pub),
        ]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd + self.extra_args

    def start(self, ready_timeout: float = READY_TIMEOUT):
        """Start the process and wait (blocking, bounded) for 200 on /readyz."""
        self.port = free_port()
        self._log_file = open(self.log_path, "ab")
        cmd = self.command()
        self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(self.workdir),
            # Stop at once unless a test asks for a drain with the flags (flags win over env).
            env={**os.environ, "FABRIC_DRAIN_DELAY_MS": "0", "FABRIC_DRAIN_WINDOW_MS": "0", **self.env},
        )
        last = ["no answer yet"]

        def ready_or_exited():
            if self.proc.poll() is not None:
                return "exited"
            status, _ = http_get(self.http + "/readyz", timeout=1.0, context=self.ssl)  # OSError: not listening yet
            last[0] = f"HTTP {status}"
            return "ready" if status == 200 else None

        try:
            outcome = wait_for(
                ready_or_exited, ready_timeout, 0.1, what=lambda: f"200 on /readyz (last: {last[0]})",
                retry_on=(OSError,),
            )
        except WaitTimeout as e:
            self.stop()
            pytest.fail(f"fabric-master did not get ready: {e}\ncommand: {' '.join(cmd)}\n"
                        f"--- log tail ---\n{self.log_tail()}", pytrace=False)
        if outcome == "exited":
            self.stop()
            pytest.fail(
                f"fabric-master exited early with code {self.proc.returncode}\n"
                f"command: {' '.join(cmd)}\n--- log tail ---\n{self.log_tail()}",
                pytrace=False,
            )
        return self

    async def start_async(self, ready_timeout: float = READY_TIMEOUT):
        """``start`` for async code: the readiness poll runs in a worker thread, so the test's
        event loop keeps serving its sessions meanwhile."""
        return await asyncio.to_thread(self.start, ready_timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 80) -> str:
        try:
            data = self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError as e:
            return f"<no log: {e}>"
        return "\n".join(data.splitlines()[-lines:])


def _start_master(request, tmp_path_factory, keys, extra_args=None, config_text=REALM1_CONFIG) -> Master:
    require_binary()
    name = request.module.__name__.split(".")[-1] if request.module else "master"
    workdir = tmp_path_factory.mktemp(f"master-{name}")
    if extra_args is None:
        extra_args = getattr(request.module, "MASTER_EXTRA_ARGS", [])
    m = Master(workdir, keys.superuser.pub_path, extra_args=extra_args, config_text=config_text)
    m.start()
    return m


def start_two_replicas(base: Path, keys: Keys) -> tuple[Master, Master]:
    """Two real replica processes: a forms the cluster, b joins it at a's peer port (fixed
    ports, so that b can name a). Stop them with ``stop_all``."""
    p1, p2 = free_port(), free_port()
    a = Master(base / "a", keys.superuser.pub_path, config_text=None,
               extra_args=["--node-id", "1", "--bootstrap"], peer_port=p1)
    a.start(ready_timeout=20)
    b = Master(base / "b", keys.superuser.pub_path, config_text=None,
               extra_args=["--node-id", "2", "--join", f"127.0.0.1:{p1}"], peer_port=p2)
    b.start(ready_timeout=30)
    return a, b


def stop_all(*masters: Master):
    for m in reversed(masters):
        m.stop()


@pytest.fixture(scope="module")
def master(request, tmp_path_factory, keys):
    m = _start_master(request, tmp_path_factory, keys)
    yield m
    crashed = not m.alive()
    code = m.proc.returncode if crashed else None
    m.stop()
    if crashed:
        pytest.fail(
            f"fabric-master died during the module (exit code {code})\n--- log tail ---\n{m.log_tail()}",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _master_still_alive(request):
    """After each test that used the master, check the process did not die (panic...)."""
    yield
    if "master" in request.fixturenames:
        m = request.getfixturevalue("master")
        if not m.alive():
            pytest.fail(
                f"fabric-master is no longer running (exit code {m.proc.returncode})\n"
                f"--- log tail ---\n{m.log_tail()}",
                pytrace=False,
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        m = getattr(item, "funcargs", {}).get("master")
        if isinstance(m, Master):
            rep.sections.append(("fabric-master log (tail)", m.log_tail(60)))


# --------------------------------------------------------------------------------------
# async test runner
# --------------------------------------------------------------------------------------

_OPEN_SESSIONS: contextvars.ContextVar[list] = contextvars.ContextVar("_OPEN_SESSIONS")
_OPEN_RAW: contextvars.ContextVar[list] = contextvars.ContextVar("_OPEN_RAW")


def aio(fn=None, *, timeout: float = 50.0):
    """Run an ``async def`` test under asyncio.run, bounded by ``timeout`` seconds.

    Every session opened with ``join`` / ``RawWamp.connect`` during the test is
    closed afterwards (bounded).
    """

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            async def main():
                sessions: list = []
                raws: list = []
                _OPEN_SESSIONS.set(sessions)
                _OPEN_RAW.set(raws)
                try:
                    return await asyncio.wait_for(f(*args, **kwargs), timeout)
                finally:
                    for s in sessions:
                        try:
                            await s.close()
                        except Exception:
                            pass
                    for r in raws:
                        try:
                            await r.abort()
                        except Exception:
                            pass

            return asyncio.run(main())

        return wrapper

    if fn is not None:
        return deco(fn)
    return deco


async def w(aw, timeout: float = STEP):
    """Await with a bound."""
    return await asyncio.wait_for(aw, timeout)


# --------------------------------------------------------------------------------------
# autobahn sessions
# --------------------------------------------------------------------------------------


class JoinAborted(Exception):
    def __init__(self, details):
        super().__init__(f"session aborted: reason={details.reason!r} message={details.message!r}")
        self.details = details


class ConnectionLostBeforeJoin(Exception):
    pass


class Client(ApplicationSession):
    """An asyncio ApplicationSession whose lifecycle is observable through futures."""

    def __init__(self, join_kwargs: dict, signer=None, label: str = "client"):
        super().__init__(ComponentConfig(realm=join_kwargs.get("realm")))
        loop = asyncio.get_running_loop()
        self.join_kwargs = join_kwargs
        self.signer = signer
        self.label = label
        self.joined_f = loop.create_future()
        self.left_f = loop.create_future()
        self.disconnected_f = loop.create_future()
        self.details = None
        self.close_details = None
        self.challenges = []
        self.proto = None

    # -- autobahn callbacks --
    def onConnect(self):
        self.join(**self.join_kwargs)

    def onChallenge(self, challenge):
        self.challenges.append(challenge)
        if self.signer is None:
            raise Exception(f"unexpected challenge {challenge.method}")
        # A signer that binds to the channel needs the session's transport.
        if hasattr(self.signer, "sign_challenge_for"):
            return self.signer.sign_challenge_for(self, challenge)
        return self.signer.sign_challenge(challenge)

    def onJoin(self, details):
        self.details = details
        if not self.joined_f.done():
            self.joined_f.set_result(details)

    def onLeave(self, details):
        self.close_details = details
        if not self.left_f.done():
            self.left_f.set_result(details)
        if not self.joined_f.done():
            self.joined_f.set_exception(JoinAborted(details))
        return super().onLeave(details)

    def onDisconnect(self):
        if not self.disconnected_f.done():
            self.disconnected_f.set_result(True)
        if not self.joined_f.done():
            self.joined_f.set_exception(ConnectionLostBeforeJoin("transport closed before WELCOME/ABORT"))
        return super().onDisconnect()

    # -- helpers --
    @property
    def id(self) -> int:
        assert self.details is not None, "not joined"
        return self.details.session

    def drop(self):
        """Abort the TCP connection without any WAMP/WebSocket closing handshake."""
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.abort()

    async def close(self, timeout: float = 3.0):
        if self.disconnected_f.done():
            return
        try:
            if self.is_attached() and not self.left_f.done():
                self.leave()
                await asyncio.wait_for(asyncio.shield(self.left_f), timeout)
            await asyncio.wait_for(asyncio.shield(self.disconnected_f), timeout)
        except Exception:
            self.drop()


async def _open(master: Master, serializer: str, join_kwargs: dict, signer, label: str) -> Client:
    session = Client(join_kwargs, signer=signer, label=label)
    factory = WampWebSocketClientFactory(
        lambda: session, url=master.url, serializers=[make_serializer(serializer)]
    )
    loop = asyncio.get_running_loop()
    context = getattr(master, "ssl", None)  # some tests pass a bare address holder
    tls = {"ssl": context, "server_hostname": "127.0.0.1"} if context else {}
    _, proto = await w(loop.create_connection(factory, "127.0.0.1", master.port, **tls))
    session.proto = proto
    try:
        _OPEN_SESSIONS.get().append(session)
    except LookupError:
        pass
    return session


def _join_kwargs(keys: Keys | None, auth: str, realm, authid, authrole, authextra, authmethods, key):
    signer = None
    if auth == "superuser":
        kp = key or keys.superuser
        signer = kp.key
        authmethods = authmethods or ["cryptosign"]
        if authextra is None:
            authextra = {"pubkey": kp.pubkey_hex}
    elif auth == "anonymous":
        authmethods = authmethods or ["anonymous"]
    elif auth == "none":
        pass
    else:
        raise ValueError(auth)
    return (
        dict(realm=realm, authmethods=authmethods, authid=authid, authrole=authrole, authextra=authextra),
        signer,
    )


async def join(
    master: Master,
    keys: Keys | None = None,
    serializer: str = "cbor",
    realm: str | None = FABRIC_REALM,
    auth: str = "superuser",
    authid: str | None = None,
    authrole: str | None = None,
    authextra: dict | None = None,
    authmethods: list | None = None,
    key: KeyPair | None = None,
    signer=None,
    label: str = "client",
    timeout: float = STEP,
) -> Client:
    """Open a session and wait (bounded) for WELCOME. Raises JoinAborted on ABORT."""
    kw, default_signer = _join_kwargs(keys, auth, realm, authid, authrole, authextra, authmethods, key)
    session = await _open(master, serializer, kw, signer or default_signer, label)
    await asyncio.wait_for(asyncio.shield(session.joined_f), timeout)
    return session


async def join_expect_abort(master: Master, keys: Keys | None = None, **kwargs):
    """Open a session that must NOT be welcomed; returns autobahn CloseDetails of the ABORT."""
    timeout = kwargs.pop("timeout", STEP)
    serializer = kwargs.pop("serializer", "cbor")
    signer = kwargs.pop("signer", None)
    label = kwargs.pop("label", "client")
    auth = kwargs.pop("auth", "superuser")
    kw, default_signer = _join_kwargs(
        keys,
        auth,
        kwargs.pop("realm", FABRIC_REALM),
        kwargs.pop("authid", None),
        kwargs.pop("authrole", None),
        kwargs.pop("authextra", None),
        kwargs.pop("authmethods", None),
        kwargs.pop("key", None),
    )
    assert not kwargs, kwargs
    session = await _open(master, serializer, kw, signer or default_signer, label)
    try:
        details = await asyncio.wait_for(asyncio.shield(session.joined_f), timeout)
    except JoinAborted as e:
        return e.details
    except ConnectionLostBeforeJoin:
        raise AssertionError("router closed the connection without sending ABORT")
    raise AssertionError(
        f"expected ABORT but router sent WELCOME (authid={details.authid!r} "
        f"authrole={details.authrole!r} realm={details.realm!r})"
    )


async def assert_router_alive(master: Master, keys: Keys, serializer: str = "cbor"):
    """A fresh pair of sessions on the master still completes an RPC round trip."""
    callee = await join(master, keys, serializer=serializer, label="alive-callee")
    caller = await join(master, keys, serializer=serializer, label="alive-caller")
    uri = f"com.example.alive.{callee.id}"

    def echo(*args, **kwargs):
        return [list(args), kwargs]

    reg = await w(callee.register(echo, uri))
    res = await w(caller.call(uri, 1, "x", k="v"))
    assert res == [[1, "x"], {"k": "v"}]
    await w(reg.unregister())
    await callee.close()
    await caller.close()


# --------------------------------------------------------------------------------------
# raw wire client
# --------------------------------------------------------------------------------------


class RawWamp:
    """A raw WAMP-over-WebSocket client on the `websockets` package (JSON by default)."""

    HELLO, WELCOME, ABORT, CHALLENGE, AUTHENTICATE, GOODBYE = 1, 2, 3, 4, 5, 6
    ERROR, PUBLISH, PUBLISHED, SUBSCRIBE, SUBSCRIBED, EVENT = 8, 16, 17, 32, 33, 36
    CALL, CANCEL, RESULT, REGISTER, REGISTERED, INVOCATION, INTERRUPT, YIELD = 48, 49, 50, 64, 65, 68, 69, 70

    ROLES = {"caller": {"features": {}}, "callee": {"features": {}}, "publisher": {"features": {}}, "subscriber": {"features": {}}}

    def __init__(self, ws, protocol):
        self.ws = ws
        self.protocol = protocol
        self.session_id = None
        self.welcome = None
        self._req = 0

    @classmethod
    async def connect(cls, master: Master, protocol: str = "wamp.2.json", max_size=None) -> "RawWamp":
        from websockets.asyncio.client import connect

        ws = await asyncio.wait_for(
            connect(
                master.url,
                subprotocols=[protocol],
                compression=None,
                proxy=None,
                max_size=max_size,
                open_timeout=STEP,
                close_timeout=2,
                ping_interval=None,
            ),
            STEP + 1,
        )
        assert ws.subprotocol == protocol, f"server selected subprotocol {ws.subprotocol!r}, expected {protocol!r}"
        r = cls(ws, protocol)
        try:
            _OPEN_RAW.get().append(r)
        except LookupError:
            pass
        return r

    def next_id(self) -> int:
        self._req += 1
        return self._req

    def encode(self, msg):
        if self.protocol == "wamp.2.json":
            return json.dumps(msg)
        if self.protocol == "wamp.2.cbor":
            import cbor2

            return cbor2.dumps(msg)
        if self.protocol == "wamp.2.msgpack":
            import msgpack

            return msgpack.packb(msg, use_bin_type=True)
        raise ValueError(self.protocol)

    def decode(self, raw):
        if isinstance(raw, str):
            return json.loads(raw)
        if self.protocol == "wamp.2.cbor":
            import cbor2

            return cbor2.loads(raw)
        if self.protocol == "wamp.2.msgpack":
            import msgpack

            return msgpack.unpackb(raw, raw=False)
        raise ValueError(f"binary frame on {self.protocol}: {raw[:64]!r}")

    async def send(self, msg):
        await self.ws.send(self.encode(msg))

    async def send_raw(self, data):
        await self.ws.send(data)

    async def recv(self, timeout: float = STEP):
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return self.decode(raw)

    async def recv_until(self, pred, timeout: float = STEP, limit: int = 100):
        """Receive messages until pred(msg) is true; returns (msg, skipped). At most ``limit``
        messages, within ``timeout`` seconds in all."""
        skipped = []

        async def scan():
            for _ in range(limit):
                msg = self.decode(await self.ws.recv())
                if pred(msg):
                    return msg
                skipped.append(msg)
            return None

        try:
            msg = await asyncio.wait_for(scan(), timeout)
        except asyncio.TimeoutError:
            msg = None
        if msg is None:
            raise AssertionError(f"no matching message within {timeout}s / {limit} messages; got {skipped!r}")
        return msg, skipped

    async def join_superuser(self, keypair: KeyPair, realm=FABRIC_REALM, authid=None, authrole=None):
        details = {"roles": self.ROLES, "authmethods": ["cryptosign"], "authextra": {"pubkey": keypair.pubkey_hex}}
        if authid is not None:
            details["authid"] = authid
        if authrole is not None:
            details["authrole"] = authrole
        await self.send([self.HELLO, realm, details])
        msg = await self.recv()
        assert msg[0] == self.CHALLENGE, f"expected CHALLENGE, got {msg!r}"
        assert msg[1] == "cryptosign", msg
        challenge = msg[2]["challenge"]
        await self.send([self.AUTHENTICATE, keypair.sign_challenge_hex(challenge), {}])
        msg = await self.recv()
        assert msg[0] == self.WELCOME, f"expected WELCOME, got {msg!r}"
        self.session_id = msg[1]
        self.welcome = msg
        return msg

    async def expect_closed(self, timeout: float = STEP, limit: int = 100):
        """Read until the connection closes (at most ``limit`` messages, within ``timeout``
        seconds in all). Returns (close_frame_or_None, messages)."""
        from websockets.exceptions import ConnectionClosed

        messages = []

        async def drain():
            for _ in range(limit):
                try:
                    raw = await self.ws.recv()
                except ConnectionClosed as e:
                    return e
                try:
                    messages.append(self.decode(raw))
                except Exception:
                    messages.append(raw)
            return None

        try:
            closed = await asyncio.wait_for(drain(), timeout)
        except asyncio.TimeoutError:
            closed = None
        if closed is None:
            raise AssertionError(f"connection still open after {timeout}s / {limit} messages; received {messages!r}")
        return closed.rcvd, messages

    async def abort(self):
        try:
            self.ws.transport.abort()
        except Exception:
            pass
