#!/usr/bin/env bash
# Restarts replica I of a cluster made by cluster/up.sh on its data dir and ports (a rolling
# restart, or bringing back a replica that was killed): SIGTERM if it runs (it drains), start,
# wait until ready, back into the load balancer. `--no-stop`: start one that is not running.
#
#   bash cluster/restart.sh --dir DIR --replica I
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=cluster/lib.sh
. "$HERE/lib.sh"
DIR="" ID=""
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --replica) ID=$2; shift 2 ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$DIR" ] && [ -n "$ID" ] || die "--dir DIR and --replica I are required"
DIR=$(cd "$DIR" && pwd)
load_env
case " $MEMBERS " in *" $ID "*) ;; *) die "replica $ID is not a member ($MEMBERS)" ;; esac
stop_replica "$ID"
others=""
for i in $MEMBERS; do
  [ "$i" = "$ID" ] || others=${others:+$others,}127.0.0.1:$(eval echo "\$REPLICA_${i}_PEERPORT")
done
start_replica "$ID" "$others"
ws=$(eval echo "\$REPLICA_${ID}_WS")
wait_ready "http://127.0.0.1:$ws" 120 || { tail -20 "$DIR/r$ID.log" >&2; die "replica $ID did not get ready (log: $DIR/r$ID.log)"; }
lb_add "$ID"
write_env
echo "replica $ID restarted"
