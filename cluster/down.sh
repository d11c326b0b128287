#!/usr/bin/env bash
# Stops everything cluster/up.sh and cluster/scale.sh started in DIR, by PID: the replicas
# (SIGTERM, then SIGKILL after STOP_TIMEOUT s) and haproxy. Keeps the data for a look.
#
#   bash cluster/down.sh --dir DIR [--fast]     (--fast: SIGKILL the replicas, no drain)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=cluster/lib.sh
. "$HERE/lib.sh"
DIR="" FAST=0
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --fast) FAST=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$DIR" ] || die "--dir DIR is required"
DIR=$(cd "$DIR" && pwd)
load_env
# Every replica ever started here (a replica that died is simply gone).
for f in "$DIR"/r*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    if [ $FAST = 1 ]; then kill -KILL "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
  fi
done
for f in "$DIR"/r*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  wait_exit "$pid" "${STOP_TIMEOUT:-60}" || kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
done
if [ -n "${HAPROXY_PID:-}" ] && kill -0 "$HAPROXY_PID" 2>/dev/null; then
  kill -TERM "$HAPROXY_PID"
  wait_exit "$HAPROXY_PID" 10 || kill -KILL "$HAPROXY_PID" 2>/dev/null || true
fi
mv "$DIR/cluster.env" "$DIR/cluster.env.down"
echo "cluster in $DIR stopped"
