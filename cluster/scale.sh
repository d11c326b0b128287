#!/usr/bin/env bash
# Adds or removes replicas of a cluster made by cluster/up.sh, and updates haproxy through its
# runtime API (no reload: the load balancer's other connections stay up) and DIR/cluster.env.
#
#   bash cluster/scale.sh --dir DIR --replicas M
#
# Scale-out: each new replica joins (a voter while there are fewer than --voters, else a
# learner), and enters the load balancer once ready. Scale-in: learners go first, newest
# first; each gets SIGTERM, drains its sessions (they reconnect through the load balancer)
# and leaves the membership itself. A voter is only taken when no learner is left: after it
# has stopped, it is removed from the membership explicitly (`fabric-master cluster remove`).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=cluster/lib.sh
. "$HERE/lib.sh"
DIR="" TARGET=""
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --replicas) TARGET=$2; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$DIR" ] || die "--dir DIR is required"
[ "$TARGET" -ge 1 ] 2>/dev/null || die "--replicas M (M >= 1) is required"
DIR=$(cd "$DIR" && pwd)
load_env

count() { echo $#; }
peers() {
  local i out=""
  for i in $MEMBERS; do out=${out:+$out,}127.0.0.1:$(eval echo "\$REPLICA_${i}_PEERPORT"); done
  echo "$out"
}

# Voter ids, from any member that answers.
voters() {
  local i
  for i in $MEMBERS; do
    if cluster_cli cluster --peer "127.0.0.1:$(eval echo "\$REPLICA_${i}_PEERPORT")" status 2>/dev/null |
      python3 -c 'import json,sys; print(" ".join(str(v) for v in json.load(sys.stdin)["voters"]))'; then
      return 0
    fi
  done
  die "no replica answers cluster status"
}

while [ "$(count $MEMBERS)" -lt "$TARGET" ]; do
  i=$NEXT_ID
  start_replica "$i" "$(peers)"
  ws=$(eval echo "\$REPLICA_${i}_WS")
  wait_ready "http://127.0.0.1:$ws" 120 || { tail -20 "$DIR/r$i.log" >&2; die "replica $i did not get ready (log: $DIR/r$i.log)"; }
  lb_add "$i"
  MEMBERS="$MEMBERS $i"
  NEXT_ID=$((i + 1))
  write_env
  echo "replica $i joined ($(eval echo "\$REPLICA_${i}_PEERPORT" | sed 's/^/peer 127.0.0.1:/'))"
done

while [ "$(count $MEMBERS)" -gt "$TARGET" ]; do
  VOTER_IDS=" $(voters) "
  victim=""
  for i in $MEMBERS; do
    case $VOTER_IDS in *" $i "*) ;; *) victim=$i ;; esac
  done
  was_voter=0
  if [ -z "$victim" ]; then
    for i in $MEMBERS; do victim=$i; done
    was_voter=1
  fi
  stop_replica "$victim"
  lb_remove "$victim"
  rest=""
  for i in $MEMBERS; do [ "$i" = "$victim" ] || rest="$rest $i"; done
  MEMBERS=${rest# }
  rm -f "$DIR/r$victim.pid"
  if [ $was_voter = 1 ]; then
    first=${MEMBERS%% *}
    cluster_cli cluster --peer "127.0.0.1:$(eval echo "\$REPLICA_${first}_PEERPORT")" \
      remove --node-id "$victim" >/dev/null
    echo "voter $victim stopped and removed from the membership"
  else
    echo "learner $victim stopped (it left the membership itself)"
  fi
  write_env
done
