"""The authorization table, every cell against the binary.

`fabric-master authz-table` prints the table the router enforces (src/authz.rs): for the global
realm and for management realms, every role × URI family, allow or deny for call, register,
publish and subscribe, with probe URIs inside each family. This test joins one real session
per role (the superuser, activated users holding each role on a management realm, a paired
node, anonymous clients) and tries every action on every probe: an allowed action must not be
refused with ``wamp.error.not_authorized``; a denied one must be. A role added to the table
without a way to join with it here fails the test, and so does any internal role a client
manages to join with.
"""

import json
import subprocess

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from conftest import FABRIC_REALM, JoinAborted, aio, join, require_binary, w
from mgmt import join_node, new_mrealm, unique
from users import join_as, user

NOT_AUTHORIZED = "wamp.error.not_authorized"
ACK = PublishOptions(acknowledge=True)
ACTIONS = "CRPS"


def authz_tables() -> dict:
    out = subprocess.run([require_binary(), "authz-table"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return {t["realm"]: t for t in json.loads(out.stdout)}


def _refused(e: ApplicationError) -> bool:
    return e.error == NOT_AUTHORIZED


async def allowed(session, uri: str, action: str) -> bool:
    """Whether the router lets ``session`` do ``action`` on ``uri``. Only not_authorized counts
    as a refusal: a call that reaches its procedure may fail for its own reasons."""
    try:
        if action == "C":
            # A harmless argument: kills kill nobody, getters find nothing.
            await w(session.call(uri, "authz-probe-nobody"))
        elif action == "R":
            reg = await w(session.register(lambda *a, **k: None, uri))
            await w(reg.unregister())
        elif action == "P":
            await w(session.publish(uri, options=ACK))
        elif action == "S":
            sub = await w(session.subscribe(lambda *a, **k: None, uri))
            await w(sub.unsubscribe())
    except ApplicationError as e:
        if _refused(e):
            return False
        if action == "C":
            return True
        raise AssertionError(f"{action} {uri}: unexpected {e.error} {e.args}")
    return True


async def check_table(table: dict, sessions: dict) -> list[str]:
    """Every cell of ``table`` for every role in ``sessions``; returns the mismatches."""
    clients = [r for r in table["roles"] if r not in table["internal_roles"]]
    assert sorted(sessions) == sorted(clients), f"a session per client role of {table['realm']}"
    wrong = []
    for family in table["families"]:
        for role, cell in zip(table["roles"], family["cells"]):
            if role not in sessions:
                continue
            s = sessions[role]
            for probe in family["probes"]:
                uri = probe.replace("{authid}", s.details.authid)
                for letter in ACTIONS:
                    expected = letter in cell
                    got = await allowed(s, uri, letter)
                    if got != expected:
                        verdict = "allowed" if got else "refused"
                        wrong.append(f"{table['realm']}/{family['name']}: {role} {letter} {uri} was {verdict}")
    return wrong


@aio(timeout=240)
async def test_every_cell_of_the_global_realm(master, keys, tmp_path):
    table = authz_tables()["global"]
    mallory, _, _, _ = await user(master, tmp_path, "authz-user")
    sessions = {
        "superuser": await join(master, keys, label="superuser"),
        "user": mallory,
        "public": await join(master, keys, auth="anonymous", label="anonymous"),
    }
    assert sessions["superuser"].details.authrole == "user"  # as in the reference, on the wire
    assert sessions["public"].details.authrole == "public"
    wrong = await check_table(table, sessions)
    assert not wrong, "\n".join(wrong)
    # The check can fail: with the user's cell of one family inverted, it reports every probe
    # action of that cell.
    family = dict(table["families"][0])
    i = table["roles"].index("user")
    inverted = "".join("-" if c != "-" else ACTIONS[k] for k, c in enumerate(family["cells"][i]))
    family["cells"] = family["cells"][:i] + [inverted] + family["cells"][i + 1 :]
    wrong = await check_table(dict(table, families=[family]), sessions)
    assert len(wrong) == 4 * len(family["probes"]), wrong


@aio(timeout=240)
async def test_every_cell_of_a_management_realm(master, keys, tmp_path):
    table = authz_tables()["management"]
    m = await new_mrealm(master, keys)
    sessions = {}
    for role in ("owner", "admin", "user", "guest"):
        _, kp, email, oid = await user(master, tmp_path, f"authz-{role}")
        await w(m.su.call("crossbarfabriccenter.mrealm.set_roles_on_mrealm_for_user", m.mrealm["oid"], oid, [role]))
        sessions[role] = await join_as(master, kp, email, m.name, authrole=role)
        assert sessions[role].details.authrole == role
    _, kp = await m.pair_node(tmp_path)
    sessions["node"] = await join_node(master, kp)
    assert sessions["node"].details.authrole == "node"
    sessions["public"] = await join(master, None, realm=m.name, auth="anonymous", label="anonymous")
    wrong = await check_table(table, sessions)
    assert not wrong, "\n".join(wrong)


@aio
async def test_no_client_joins_with_an_internal_role(master, keys, tmp_path):
    tables = authz_tables()
    m = await new_mrealm(master, keys)
    _, kp, email, oid = await user(master, tmp_path, "authz-owner")
    await w(m.su.call("crossbarfabriccenter.mrealm.set_roles_on_mrealm_for_user", m.mrealm["oid"], oid, ["owner"]))
    for table, realm in ((tables["global"], FABRIC_REALM), (tables["management"], m.name)):
        assert table["internal_roles"], table["realm"]
        for role in table["internal_roles"]:
            attempts = [
                dict(keys=keys, realm=realm, authrole=role),  # even the superuser
                dict(keys=None, realm=realm, auth="anonymous", authrole=role),
                dict(keys=None, realm=realm, authid=email, authrole=role, key=kp, authextra={"pubkey": kp.pubkey_hex}),
            ]
            for kw in attempts:
                # Refused, or welcomed with a role of its own (anonymous clients get theirs
                # whatever they ask for): never with the internal one.
                try:
                    s = await join(master, label=unique("internal"), **kw)
                except JoinAborted as e:
                    assert e.details.reason.startswith(("wamp.error.", "fabric.auth-failed.")), e.details
                else:
                    assert s.details.authrole not in table["internal_roles"], (kw, s.details)
                    s.leave()
    # The superuser joining the global realm asking for nothing is still welcomed.
    (await join(master, keys)).leave()
