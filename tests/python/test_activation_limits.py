"""Activation codes are issued within limits: every code is a Raft write and (with SMTP) a
mail, so an unauthenticated client must not issue them without bound (before: 2,500 codes in
~3 s, never purged). Past a limit the HELLO is refused with
``fabric.auth-failed.rate-limited`` and no code is issued, logged or mailed."""

from conftest import FABRIC_REALM, aio, join_expect_abort
from users import codes_for, new_key

# Low limits for this module's master: 2 codes per e-mail, 4 per source address.
MASTER_EXTRA_ARGS = ["--activation-codes-per-email", "2", "--activation-codes-per-source", "4"]

LIMITED = "fabric.auth-failed.rate-limited"


async def ask_code(master, tmp_path, name: str, email: str):
    kp = new_key(tmp_path, name)
    return await join_expect_abort(
        master, key=kp, realm=FABRIC_REALM, authid=email, authextra={"pubkey": kp.pubkey_hex}
    )


@aio
async def test_codes_are_limited_per_email_and_per_source(master, tmp_path):
    # Per e-mail: two keys get codes, a third is refused and gets none.
    for i in range(2):
        details = await ask_code(master, tmp_path, f"k{i}", "carol@example.com")
        assert details.reason == "fabric.auth-failed.new-user-auth-code-sent", details
    details = await ask_code(master, tmp_path, "k2", "carol@example.com")
    assert details.reason == LIMITED, details
    assert "carol@example.com" in details.message, details
    assert len(codes_for(master, "carol@example.com")) == 2

    # Per source: everything here comes from 127.0.0.1; two more e-mails reach its limit.
    for email in ("dan@example.com", "erin@example.com"):
        details = await ask_code(master, tmp_path, email.split("@")[0], email)
        assert details.reason == "fabric.auth-failed.new-user-auth-code-sent", details
    details = await ask_code(master, tmp_path, "frank", "frank@example.com")
    assert details.reason == LIMITED, details
    assert "127.0.0.1" in details.message, details
    assert codes_for(master, "frank@example.com") == []
