#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ from the WAMP test
vectors (tests/vectors) and a few state machine commands. Run by scripts/fuzz; needs msgpack
(in the test venv)."""

import hashlib
import json
import struct
import sys
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
SERIALIZERS = {"json": 0, "msgpack": 1, "cbor": 2}


def vectors():
    """(serializer, message bytes, message type) of every sample in the test vectors."""
    for path in sorted((ROOT / "tests" / "vectors").rglob("*.json")):
        doc = json.loads(path.read_text())
        for sample in doc.get("samples", []):
            for ser, variants in sample.get("serializers", {}).items():
                if ser not in SERIALIZERS:
                    continue
                for v in variants:
                    raw = bytes.fromhex(v["bytes_hex"]) if "bytes_hex" in v else v["bytes"].encode()
                    yield ser, raw, doc.get("wamp_message_type", "")


def frame(ser: str, raw: bytes) -> bytes:
    return raw + b"\x1e" if ser == "json" else struct.pack(">I", len(raw)) + raw


def write(target: str, data: bytes):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    msgpack_msgs = []
    for ser, raw, kind in vectors():
        write("decode_message", bytes([SERIALIZERS[ser]]) + raw)
        write("batched_frame", bytes([SERIALIZERS[ser]]) + frame(ser, raw) + frame(ser, raw))
        if ser == "msgpack":
            msgpack_msgs.append((kind, raw))
    # Sessions: an anonymous HELLO on the global realm, then every other message; a cryptosign
    # HELLO followed by an AUTHENTICATE.
    details = {"roles": {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}}
    hello_anon = msgpack.packb([1, "com.crossbario.fabric", dict(details, authmethods=["anonymous"])])
    hello_cs = msgpack.packb([1, "com.crossbario.fabric", dict(details, authmethods=["cryptosign"],
                             authid="superuser", authextra={"pubkey": "00" * 32})])
    rest = b"".join(frame("msgpack", raw) for kind, raw in msgpack_msgs if kind not in ("HELLO", "WELCOME"))
    write("hello_authenticate", frame("msgpack", hello_anon) + rest)
    write("hello_authenticate", frame("msgpack", hello_cs) + frame("msgpack", msgpack.packb([5, "ab" * 96, {}])))
    for kind, raw in msgpack_msgs:
        write("hello_authenticate", frame("msgpack", hello_anon) + frame("msgpack", raw))
    oid = "8c5b6f0e-7a52-4d58-9d0b-2c9f0a6c1e11"
    commands = [
        [{"op": "delete", "kind": "User", "key": oid, "cascade": True}],
        [{"op": "modify", "kind": "ManagementRealm", "key": oid, "delta": {"label": "x"}, "status_rule": None}],
        [{"op": "presence_drop_replica", "replica_id": 3}],
        [{"op": "unpair_node", "oid": oid}],
        [{"op": "presence_leave", "node_oid": oid, "session_id": 1}],
    ]
    for c in commands:
        write("raft_command", msgpack.packb(c))
    print(f"seed corpus in {CORPUS}: " + ", ".join(f"{d.name} {len(list(d.iterdir()))}" for d in sorted(CORPUS.iterdir())))


if __name__ == "__main__":
    sys.exit(main())
