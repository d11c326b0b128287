#!/usr/bin/env bash
# Stops what cluster/compose-up.sh started in DIR: haproxy, and the containers, network and
# volumes of its compose project (`--keep-data` keeps the volumes).
#
#   bash cluster/compose-down.sh --dir DIR [--keep-data]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=cluster/lib.sh
. "$HERE/lib.sh"
DIR="" VOLUMES=(-v)
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --keep-data) VOLUMES=(); shift ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$DIR" ] || die "--dir DIR is required"
DIR=$(cd "$DIR" && pwd)
[ -f "$DIR/cluster.env" ] || die "no cluster in $DIR"
# shellcheck disable=SC1091
. "$DIR/cluster.env"
if kill -0 "$HAPROXY_PID" 2>/dev/null; then kill -TERM "$HAPROXY_PID"; fi
FABRIC_PKI=$DIR/pki docker-compose -p "$COMPOSE_PROJECT" -f "$HERE/compose.yaml" \
  -f "$DIR/compose.override.yaml" down -t 30 "${VOLUMES[@]}" >/dev/null 2>&1
mv "$DIR/cluster.env" "$DIR/cluster.env.down"
echo "compose project $COMPOSE_PROJECT stopped"
