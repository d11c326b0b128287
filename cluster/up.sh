#!/usr/bin/env bash
# Starts a fabric-master cluster on this machine: N replicas on loopback (mutual TLS on the
# peer port, one superuser key for all) and haproxy in front of their WebSocket ports.
# Returns once the cluster answers through the load balancer; writes DIR/cluster.env.
#
#   bash cluster/up.sh --dir DIR [--replicas N] [--voters V] [--bin PATH] [--superuser FILE.pub]
#
# Replica 1 forms the cluster, the others join it: the first V (default 3) vote, the rest
# serve as learners. Extra `fabric-master start` flags for every replica: REPLICA_ARGS.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=cluster/lib.sh
. "$HERE/lib.sh"

DIR="" REPLICAS=3 VOTERS=3 BIN="" SUPERUSER="" SLOTS=${SLOTS:-64}
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --replicas) REPLICAS=$2; shift 2 ;;
    --voters) VOTERS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --superuser) SUPERUSER=$2; shift 2 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$DIR" ] || die "--dir DIR is required"
[ "$REPLICAS" -ge 1 ] 2>/dev/null || die "--replicas must be a number >= 1"
command -v haproxy >/dev/null || die "haproxy is not installed (Debian: apt-get install haproxy)"
if [ -z "$BIN" ]; then
  BIN=$(command -v fabric-master || true)
  [ -n "$BIN" ] || die "no fabric-master on PATH; give --bin PATH (e.g. target/release/fabric-master)"
fi
[ -x "$BIN" ] || die "--bin $BIN is not an executable"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
[ ! -f "$DIR/cluster.env" ] || die "$DIR already holds a cluster (cluster.env); run cluster/down.sh first"

# Credentials: the peer CA and certificates, and the superuser key.
mkdir -p "$DIR/tls"
[ -f "$DIR/tls/ca.pem" ] || "$BIN" certs ca --dir "$DIR/tls" >/dev/null 2>&1 || die "cannot make the cluster CA"
issue_cert operator
if [ -z "$SUPERUSER" ]; then
  [ -f "$DIR/superuser.pub" ] || "$BIN" keygen --out "$DIR" --name superuser --user-id superuser >/dev/null 2>&1 || die "cannot make the superuser key"
  SUPERUSER=$DIR/superuser.pub
fi
SUPERUSER=$(cd "$(dirname "$SUPERUSER")" && pwd)/$(basename "$SUPERUSER")

# haproxy first (all slots in maintenance), so the ports it holds are known.
start_haproxy

MEMBERS="" JOIN=""
for i in $(seq 1 "$REPLICAS"); do
  start_replica "$i" "$JOIN"
  MEMBERS="$MEMBERS $i"
  peer=127.0.0.1:$(eval echo "\$REPLICA_${i}_PEERPORT")
  JOIN=${JOIN:+$JOIN,}$peer
  NEXT_ID=$((i + 1))
  # Each replica is ready before the next joins: joins are serialized on the leader anyway,
  # and a failing start is reported here, with its log.
  ws=$(eval echo "\$REPLICA_${i}_WS")
  wait_ready "http://127.0.0.1:$ws" 60 || { tail -20 "$DIR/r$i.log" >&2; die "replica $i did not get ready (log: $DIR/r$i.log)"; }
  lb_add "$i"
done
MEMBERS=${MEMBERS# }
write_env
wait_ready "http://127.0.0.1:$LB_PORT" 30 || die "the load balancer on 127.0.0.1:$LB_PORT does not answer"
echo "cluster of $REPLICAS replicas ready behind ws://127.0.0.1:$LB_PORT/ws ($DIR/cluster.env)"
