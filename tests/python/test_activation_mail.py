"""Activation codes mailed over SMTP (spec §3.3, issue: `lettre`), against the real binary and a
real SMTP server (aiosmtpd) on loopback. The code in the mail is the one the master logs and the
one that activates the key; a delivery failure answers `fabric.auth-failed.email-failure`."""

import email
import email.policy
import re
import subprocess
import threading

import pytest
from aiosmtpd.controller import Controller

from conftest import FABRIC_REALM, aio, free_port, join, join_expect_abort, require_binary
from users import as_user, codes_for, new_key
from waiting import wait_until

SMTP_PORT = free_port()
SENDER = "noreply@fabric.test"
MASTER_EXTRA_ARGS = [
    "--smtp-url",
    f"smtp://127.0.0.1:{SMTP_PORT}",
    "--smtp-from",
    f"Fabric Master <{SENDER}>",
]
CODE = re.compile(r"^ {4}([345679ACEFGHJKLMNPQRSTUVWXY]{4}-[345679ACEFGHJKLMNPQRSTUVWXY]{4}-[345679ACEFGHJKLMNPQRSTUVWXY]{4})\s*$", re.M)


class Mailbox:
    """An SMTP handler that keeps what it accepts, or refuses every recipient when told to."""

    def __init__(self):
        self.messages = []
        self.refuse = False
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"

    def _to(self, address: str):
        with self._lock:
            return [m for (_, rcpt, m) in self.messages if address in rcpt]

    async def to(self, address: str, timeout: float = 10.0):
        """The mails to ``address`` so far, once there is at least one (bounded wait; the
        SMTP server runs in its own thread)."""
        return await wait_until(lambda: self._to(address), timeout, interval=0.05, what=f"a mail to {address}")


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    yield box
    controller.stop()


def code_in(msg) -> str:
    m = CODE.search(msg.get_content())
    assert m, msg.get_content()
    return m.group(1)


@aio
async def test_registration_and_login_codes_are_mailed(mailbox, master, tmp_path):
    email_addr = "mia@example.com"
    kp = new_key(tmp_path, "mia")
    d = await join_expect_abort(master, **await as_user(master, kp, email_addr))
    assert d.reason == "fabric.auth-failed.new-user-auth-code-sent", d

    [msg] = await mailbox.to(email_addr)
    assert msg["Subject"] == "Crossbar.io: your REGISTRATION code"
    assert SENDER in msg["From"] and msg["To"] == email_addr
    code = code_in(msg)
    # The same code is in the log, for the operator.
    assert codes_for(master, email_addr) == [code]

    s = await join(master, **await as_user(master, kp, email_addr, code=code))
    assert (s.details.realm, s.details.authid, s.details.authrole) == (FABRIC_REALM, email_addr, "user")
    s.leave()

    # A second key of the now known user gets a LOGIN mail.
    second = new_key(tmp_path, "mia2")
    d = await join_expect_abort(master, **await as_user(master, second, email_addr))
    assert d.reason == "fabric.auth-failed.registered-user-auth-code-sent", d
    msgs = await mailbox.to(email_addr)
    assert len(msgs) == 2 and msgs[1]["Subject"] == "Crossbar.io: your LOGIN code"
    s = await join(master, **await as_user(master, second, email_addr, code=code_in(msgs[1])))
    assert s.details.authid == email_addr
    s.leave()


@aio
async def test_refused_delivery_is_reported_and_a_new_code_can_follow(mailbox, master, tmp_path):
    email_addr = "noah@example.com"
    kp = new_key(tmp_path, "noah")
    mailbox.refuse = True
    try:
        d = await join_expect_abort(master, **await as_user(master, kp, email_addr))
    finally:
        mailbox.refuse = False
    assert d.reason == "fabric.auth-failed.email-failure", d
    assert email_addr in (d.message or ""), d
    # The code was still issued and logged, so the operator can hand it out.
    logged = codes_for(master, email_addr)
    assert len(logged) == 1, logged
    d = await join_expect_abort(master, **await as_user(master, kp, email_addr))
    assert d.reason == "fabric.auth-failed.pending-activation", d

    # Once mail works again, a new code replaces the undelivered one.
    d = await join_expect_abort(master, **await as_user(master, kp, email_addr, new_code=True))
    assert d.reason == "fabric.auth-failed.new-user-auth-code-sent", d
    [msg] = await mailbox.to(email_addr)
    code = code_in(msg)
    assert code != logged[0] and codes_for(master, email_addr) == [logged[0], code]
    d = await join_expect_abort(master, **await as_user(master, kp, email_addr, code=logged[0]))
    assert d.reason == "fabric.auth-failed.invalid-activation-code", d
    s = await join(master, **await as_user(master, kp, email_addr, code=code))
    assert s.details.authid == email_addr
    s.leave()


def test_bad_smtp_settings_stop_the_start(tmp_path):
    for args, expected in [
        (["--smtp-url", "ftp://mail.example.com"], "SMTP"),
        (["--smtp-url", "smtp://127.0.0.1:25", "--smtp-from", "not an address"], "sender"),
    ]:
        r = subprocess.run(
            [require_binary(), "start", "--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0",
             "--data-dir", str(tmp_path / "data"), *args],
            capture_output=True, text=True, timeout=30,
        )
        assert r.returncode != 0, r
        assert expected in r.stderr + r.stdout, r
