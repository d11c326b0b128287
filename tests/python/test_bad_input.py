"""Transport robustness: HTTP endpoints, subprotocol negotiation, protocol violations,
message size limit, HELLO timeout. After each bad input the router must still serve
a normal RPC round trip."""

import asyncio
import base64
import os
import secrets
import time

import pytest

from conftest import (
    ALL_SERIALIZERS,
    FABRIC_REALM,
    RawWamp,
    aio,
    assert_router_alive,
    http_get,
    join,
    w,
)

MAX_MESSAGE_SIZE = 65536
HELLO_TIMEOUT_MS = 1000
MASTER_EXTRA_ARGS = ["--max-message-size", str(MAX_MESSAGE_SIZE), "--hello-timeout-ms", str(HELLO_TIMEOUT_MS)]


async def ws_handshake(master, protocols, path="/ws"):
    """Hand-made WebSocket upgrade request. Returns (status_code, headers{lower: value})."""
    reader, writer = await w(asyncio.open_connection("127.0.0.1", master.port))
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        req = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{master.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        )
        if protocols:
            req += f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n"
        writer.write((req + "\r\n").encode())
        await writer.drain()
        try:
            head = await w(reader.readuntil(b"\r\n\r\n"))
        except asyncio.IncompleteReadError as e:
            raise AssertionError(f"server closed the connection without an HTTP response (got {e.partial!r})")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert parts[0].startswith("HTTP/1."), lines[0]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return int(parts[1]), headers
    finally:
        writer.close()


def test_health_endpoints(master):
    for path in ("/healthz", "/readyz"):
        status, _ = http_get(master.http + path)
        assert status == 200, f"GET {path} -> {status}"


@aio
async def test_unknown_subprotocol_refused(master, keys):
    status, headers = await ws_handshake(master, ["wamp.2.foo"])
    assert status != 101, f"handshake accepted (headers {headers})"
    assert 400 <= status < 500, f"expected a 4xx refusal, got {status}"
    await assert_router_alive(master, keys)


@pytest.mark.parametrize("ser", ALL_SERIALIZERS)
@aio
async def test_subprotocol_negotiation(master, ser):
    proto = f"wamp.2.{ser}"
    status, headers = await ws_handshake(master, [proto])
    assert status == 101, status
    assert headers.get("sec-websocket-protocol") == proto, headers
    # an unknown one first, then a known one: the known one is selected
    status, headers = await ws_handshake(master, ["wamp.2.foo", proto])
    assert status == 101, status
    assert headers.get("sec-websocket-protocol") == proto, headers


def assert_violation_outcome(msgs):
    """Either nothing before the close, or an ABORT with protocol_violation."""
    if msgs:
        first = msgs[0]
        assert isinstance(first, list) and first[0] == RawWamp.ABORT, f"expected ABORT, got {first!r}"
        assert first[2] == "wamp.error.protocol_violation", first


@aio
async def test_garbage_text_after_join(master, keys):
    bystander = await join(master, keys, label="bystander")
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    await raw.send_raw("not json")
    _, msgs = await raw.expect_closed()
    assert_violation_outcome(msgs)
    assert bystander.is_attached()
    await assert_router_alive(master, keys)


@aio
async def test_wrong_message_type_before_hello(master, keys):
    raw = await RawWamp.connect(master)
    await raw.send([48, 1, {}, "x"])
    _, msgs = await raw.expect_closed()
    assert_violation_outcome(msgs)
    await assert_router_alive(master, keys)


@aio
async def test_non_list_json_before_hello(master, keys):
    raw = await RawWamp.connect(master)
    await raw.send({"hello": "world"})
    _, msgs = await raw.expect_closed()
    assert_violation_outcome(msgs)
    await assert_router_alive(master, keys)


@aio
async def test_hello_twice(master, keys):
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    await raw.send([1, FABRIC_REALM, {"roles": RawWamp.ROLES, "authmethods": ["anonymous"]}])
    _, msgs = await raw.expect_closed()
    assert msgs, "connection closed without ABORT"
    assert msgs[0][0] == RawWamp.ABORT, f"expected ABORT, got {msgs[0]!r}"
    assert msgs[0][2] == "wamp.error.protocol_violation", msgs[0]
    await assert_router_alive(master, keys)


@aio
async def test_message_below_limit_is_fine(master, keys):
    callee = await join(master, keys, label="callee")
    await w(callee.register(lambda s: len(s), "com.example.bad.len"))
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    payload = secrets.token_hex(30 * 1024 // 2)  # 30 KiB
    rid = raw.next_id()
    await raw.send([RawWamp.CALL, rid, {}, "com.example.bad.len", [payload]])
    msg = await raw.recv()
    assert msg[:2] == [RawWamp.RESULT, rid] and msg[3] == [len(payload)], msg


@aio
async def test_oversize_message_closes_with_1009(master, keys):
    bystander = await join(master, keys, label="bystander")
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    payload = secrets.token_hex(100 * 1024 // 2)  # 100 KiB, incompressible
    await raw.send([RawWamp.CALL, raw.next_id(), {}, "com.example.bad.len", [payload]])
    frame, msgs = await raw.expect_closed()
    assert frame is not None, f"connection dropped without a WebSocket close frame (messages: {msgs!r})"
    assert frame.code == 1009, f"close code {frame.code} reason {frame.reason!r}"
    assert bystander.is_attached()
    await assert_router_alive(master, keys)


@aio
async def test_oversize_message_before_hello_closes_with_1009(master, keys):
    raw = await RawWamp.connect(master)
    await raw.send_raw("x" * (MAX_MESSAGE_SIZE + 1024))
    frame, msgs = await raw.expect_closed()
    assert frame is not None, f"connection dropped without a WebSocket close frame (messages: {msgs!r})"
    assert frame.code == 1009, f"close code {frame.code} reason {frame.reason!r}"
    await assert_router_alive(master, keys)


@aio
async def test_hello_timeout_closes_connection(master, keys):
    raw = await RawWamp.connect(master)
    t0 = time.monotonic()
    _, msgs = await raw.expect_closed(timeout=HELLO_TIMEOUT_MS / 1000 + 4)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.5 * HELLO_TIMEOUT_MS / 1000, f"closed after {elapsed:.2f}s, before the HELLO timeout"
    assert_violation_outcome_or_timeout(msgs)
    await assert_router_alive(master, keys)


def assert_violation_outcome_or_timeout(msgs):
    for m in msgs:
        assert isinstance(m, list) and m[0] == RawWamp.ABORT, f"unexpected message before close: {m!r}"


@aio
async def test_hello_timeout_does_not_hit_joined_sessions(master, keys):
    s = await join(master, keys)
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    # A deliberate pause, not a poll: the HELLO timeout must pass while both sessions idle.
    # Round trips after it are the markers that the router did not close them meanwhile (a
    # close would come before the answer on the same connection).
    await asyncio.sleep(2.5 * HELLO_TIMEOUT_MS / 1000)
    await w(s.call("wamp.session.count"))
    assert s.is_attached()
    rid = raw.next_id()
    await raw.send([RawWamp.PUBLISH, rid, {"acknowledge": True}, "com.example.still.here", []])
    msg = await raw.recv()
    assert msg[:2] == [RawWamp.PUBLISHED, rid], msg
    await assert_router_alive(master, keys)


# --------------------------------------------------------------------------------------
# beyond the brief's list: more malformed input (the router must fail the session, not itself)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "protocol,garbage",
    [("wamp.2.cbor", b"\xff\xfe\xfd not cbor"), ("wamp.2.msgpack", b"\xc1\xc1\xc1"), ("wamp.2.cbor", "text frame on cbor")],
)
@aio
async def test_garbage_on_binary_serializers(master, keys, protocol, garbage):
    raw = await RawWamp.connect(master, protocol=protocol)
    await raw.join_superuser(keys.superuser)
    await raw.send_raw(garbage)
    _, msgs = await raw.expect_closed()
    assert_violation_outcome(msgs)
    await assert_router_alive(master, keys)


@pytest.mark.parametrize(
    "msg",
    [
        [48, "x", {}, "com.example.p"],  # request id not an integer
        [48, 1, "not-a-dict", "com.example.p"],  # options not a dict
        [48, 1, {}, 42],  # procedure not a string
        [48],  # too short
        [],  # empty
        [999, 1, {}],  # unknown message type
        [2, 1, {}],  # WELCOME sent by a client
        "just a string",  # not an array
    ],
    ids=["reqid-str", "options-str", "proc-int", "short", "empty", "unknown-type", "client-welcome", "string"],
)
@aio
async def test_malformed_message_after_join(master, keys, msg):
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    await raw.send(msg)
    _, msgs = await raw.expect_closed()
    assert_violation_outcome(msgs)
    await assert_router_alive(master, keys)


@aio
async def test_websocket_ping_is_answered(master, keys):
    raw = await RawWamp.connect(master)
    await raw.join_superuser(keys.superuser)
    pong = await raw.ws.ping(b"fabric")
    await w(pong)
    rid = raw.next_id()
    await raw.send([RawWamp.PUBLISH, rid, {"acknowledge": True}, "com.example.after.ping", []])
    msg = await raw.recv()
    assert msg[:2] == [RawWamp.PUBLISHED, rid], msg


@pytest.mark.parametrize("protocol", ["wamp.2.cbor", "wamp.2.msgpack"])
@aio
async def test_raw_binary_serializer_session(master, keys, protocol):
    """WELCOME and RESULT on the binary serializers, straight from the wire."""
    callee = await join(master, keys, serializer="json", label="callee")
    await w(callee.register(lambda b: ["len", len(b)], "com.example.bad.binlen"))
    raw = await RawWamp.connect(master, protocol=protocol)
    wel = await raw.join_superuser(keys.superuser)
    assert wel[2]["authid"] == "superuser"
    rid = raw.next_id()
    await raw.send([RawWamp.CALL, rid, {}, "com.example.bad.binlen", ["abc"]])
    msg = await raw.recv()
    assert msg[:2] == [RawWamp.RESULT, rid] and msg[3] == [["len", 3]], msg
