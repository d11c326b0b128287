#!/usr/bin/env bash
# Benchmarks fabric-master (release build) with its own load generator on this machine.
# Optional: REF_URL + REF_KEY (+ REF_REALM, REF_NODE_OID) point at a running reference master
# (../shared/tools/crossbar-reference, KEEP_RUNNING=1) to measure it in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/fabric-master-target}
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/fabric-master"
PORT=${PORT:-9311}
URL="ws://127.0.0.1:$PORT/ws"
WORK=$(mktemp -d)
trap 'kill "$MASTER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
ulimit -n 65536 2>/dev/null || true

"$BIN" keygen --out "$WORK" --name su --user-id superuser >/dev/null 2>&1
t0=$(date +%s%N)
"$BIN" start --listen "127.0.0.1:$PORT" --peer-listen 127.0.0.1:0 --data-dir "$WORK/data" --superuser "$WORK/su.pub" 2>"$WORK/master.log" &
MASTER=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.002; done
t1=$(date +%s%N)
echo "start_to_ready_ms $(( (t1 - t0) / 1000000 ))"
sleep 1
echo "idle_rss_kib $(awk '/VmRSS/ {print $2}' /proc/$MASTER/status)"

RESULTS="$WORK/results.jsonl"
show() { tee -a "$WORK/all.out" | grep -v '^JSON'; }
b() { "$BIN" bench --url "$URL" --key "$WORK/su.priv" "$@" | show; }
b --mode rpc --serializer cbor --inflight 100 --count 300000 --label "rpc-cbor-100"
b --mode rpc --serializer cbor --inflight 1 --count 20000 --label "rpc-cbor-sequential"
b --mode rpc --serializer msgpack --inflight 100 --count 200000 --label "rpc-msgpack-100"
b --mode rpc --serializer json --inflight 100 --count 200000 --label "rpc-json-100"
b --mode rpc --serializer cbor --batched --inflight 100 --count 300000 --label "rpc-cbor.batched-100"
b --mode pubsub --serializer cbor --subscribers 10 --count 100000 --inflight 1000 --label "pubsub-cbor-10subs"
b --mode call --procedure wamp.session.count --serializer cbor --inflight 100 --count 200000 --label "meta-call-cbor-100"

SESSIONS=${SESSIONS:-10000}
before=$(awk '/VmRSS/ {print $2}' /proc/$MASTER/status)
"$BIN" bench --url "$URL" --key "$WORK/su.priv" --mode sessions --count "$SESSIONS" --inflight 50 --hold-seconds 6 --label sessions > "$WORK/sessions.out" &
HOLDER=$!
until grep -q holding "$WORK/sessions.out" 2>/dev/null; do sleep 0.2; done
sleep 2
after=$(awk '/VmRSS/ {print $2}' /proc/$MASTER/status)
echo "sessions_open $(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^fabric_sessions/ {print $2}')"
echo "rss_kib_before $before rss_kib_with_${SESSIONS}_sessions $after per_session_bytes $(( (after - before) * 1024 / SESSIONS ))"
wait "$HOLDER"; grep -v '^JSON' "$WORK/sessions.out"

if [ -n "${REF_URL:-}" ]; then
  echo "--- reference master at $REF_URL (same load generator, same run)"
  r() { "$BIN" bench --url "$REF_URL" --key "$REF_KEY" --serializer json "$@" | show; }
  r --mode call --procedure crossbarfabriccenter.mrealm.list_mrealms --inflight 100 --count 5000 --label ref-list_mrealms-100
  r --mode call --procedure crossbarfabriccenter.mrealm.list_mrealms --inflight 1 --count 2000 --label ref-list_mrealms-sequential
  r --mode rpc --inflight 100 --count 5000 --label ref-rpc-echo-100
  if [ -n "${REF_NODE_OID:-}" ]; then
    r --mode call --realm "${REF_REALM:-mrealm1}" --procedure crossbarfabriccenter.remote.node.get_status \
      --args "[\"$REF_NODE_OID\"]" --inflight 100 --count 3000 --label ref-remote.node.get_status-100
  fi
  echo "reference_rss_kib $(pgrep -f "crossbar-(controller|worker)" | xargs -r ps -o rss= -p | awk "{s+=\$1} END {print s}") (all crossbar processes: master and edge)"
fi

# Ratios of ours to the reference, from the JSON lines of this run.
grep '^JSON ' "$WORK/all.out" | cut -c6- > "$RESULTS"
python3 - "$RESULTS" <<'PY'
import json, sys
r = {j["label"]: j for j in map(json.loads, open(sys.argv[1]))}
pairs = [("meta-call-cbor-100", "ref-list_mrealms-100", "router-answered call vs reference list_mrealms, 100 in flight"),
         ("rpc-json-100", "ref-rpc-echo-100", "echo RPC through the router, JSON, 100 in flight"),
         ("rpc-cbor-100", "ref-rpc-echo-100", "echo RPC, ours CBOR vs reference JSON, 100 in flight")]
for ours, ref, what in pairs:
    if ours in r and ref in r:
        a, b = r[ours], r[ref]
        print(f"ratio {what}: {a['rate'] / b['rate']:.1f}x calls/s, p50 {b['p50_us'] / max(a['p50_us'], 1):.1f}x lower")
PY
