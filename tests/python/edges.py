"""Real `crossbar edge start` nodes (PyPI Crossbar.io, scripts/setup-crossbar.sh) for the
orchestration tests: keys, start, kill -9, restart, log; and an application client that joins
through a web cluster's proxy with anonymous, ticket or WAMP-CRA authentication."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from pathlib import Path

import txaio

txaio.use_asyncio()

from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402
from autobahn.asyncio.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp import auth as wauth  # noqa: E402
from autobahn.wamp.serializer import CBORSerializer  # noqa: E402
from autobahn.wamp.types import ComponentConfig  # noqa: E402

from crossbar_pypi import ANSI, CROSSBAR, SHELL_TIMEOUT  # noqa: E402
from waiting import wait_for  # noqa: E402


class Edge:
    """One edge node: its own cbdir and key, started against `master_url`."""

    def __init__(self, base: Path, name: str, master_url: str):
        self.name = name
        self.cbdir = base / name / ".crossbar"
        self.log_path = base / f"{name}.log"
        self.master_url = master_url
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.cbdir.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([str(CROSSBAR), "edge", "keys", "--cbdir", str(self.cbdir)], capture_output=True,
                           text=True, timeout=SHELL_TIMEOUT, env=self.env(), stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stdout + r.stderr
        self.pubkey = re.search(r"public-key-ed25519:\s*([0-9a-f]{64})", (self.cbdir / "key.pub").read_text()).group(1)

    def env(self) -> dict:
        e = dict(os.environ)
        e.pop("PYTHONPATH", None)
        e["CROSSBAR_FABRIC_URL"] = self.master_url
        return e

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(CROSSBAR), "edge", "start", "--cbdir", str(self.cbdir), "--loglevel", "info"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env(),
            start_new_session=True)

    def log(self) -> str:
        try:
            return ANSI.sub("", self.log_path.read_bytes().decode("utf-8", "replace"))
        except OSError:
            return ""

    def wait_connected(self, after: int = 0, timeout: float = 90):
        """Until the log (past `after` bytes) says the node reached the master."""
        wait_for(lambda: "Connected to Crossbar.io Master" in self.log()[after:] or self.proc.poll() is not None,
                 timeout, 0.2, what=f"edge {self.name} to connect")
        assert self.proc.poll() is None, self.log()[-3000:]

    def log_size(self) -> int:
        return len(self.log())

    def kill(self):
        """kill -9 of the node and all its workers (its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, timeout: float = 20):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None


class AppClient(ApplicationSession):
    """An application client; `joined` resolves with the WELCOME details or fails with the
    ABORT."""

    def __init__(self, realm, authmethods, authid=None, secret=None):
        super().__init__(ComponentConfig(realm=realm))
        loop = asyncio.get_running_loop()
        self.kw = dict(realm=realm, authmethods=authmethods, authid=authid)
        self.secret = secret
        self.joined = loop.create_future()
        self.left = loop.create_future()

    def onConnect(self):
        self.join(**self.kw)

    def onChallenge(self, ch):
        if ch.method == "ticket":
            return self.secret
        if ch.method == "wampcra":
            return wauth.compute_wcs(self.secret, ch.extra["challenge"])
        raise Exception(f"unexpected challenge {ch.method}")

    def onJoin(self, details):
        if not self.joined.done():
            self.joined.set_result(details)

    def onLeave(self, details):
        if not self.joined.done():
            self.joined.set_exception(Aborted(details.reason, details.message))
        if not self.left.done():
            self.left.set_result(details)
        super().onLeave(details)

    def onDisconnect(self):
        if not self.joined.done():
            self.joined.set_exception(Aborted("disconnected", "connection lost before WELCOME"))

    @property
    def worker(self) -> str | None:
        """The router worker the proxy put this session on (Crossbar's `x_cb_worker`)."""
        d = self.joined.result()
        return (d.authextra or {}).get("x_cb_worker")


class Aborted(Exception):
    def __init__(self, reason, message):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


async def app_client(port: int, realm: str, authmethods, authid=None, secret=None, path="ws",
                     timeout: float = 20.0) -> AppClient:
    s = AppClient(realm, authmethods, authid=authid, secret=secret)
    factory = WampWebSocketClientFactory(lambda: s, url=f"ws://127.0.0.1:{port}/{path}",
                                         serializers=[CBORSerializer()])
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.create_connection(factory, "127.0.0.1", port), 5)
    await asyncio.wait_for(asyncio.shield(s.joined), timeout)
    return s


async def leave(s: AppClient | None):
    if s is not None and s.is_attached():
        s.leave()
        try:
            await asyncio.wait_for(asyncio.shield(s.left), 5)
        except asyncio.TimeoutError:
            pass
