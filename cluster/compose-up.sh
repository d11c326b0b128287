#!/usr/bin/env bash
# The cluster of cluster/up.sh, from containers: makes the peer certificates and a superuser
# key with the image itself (DIR/pki), starts cluster/compose.yaml (3 replicas on a private
# network, WebSocket and peer ports published on 127.0.0.1) under the project name PROJECT,
# puts haproxy in front, and writes DIR/cluster.env (FABRIC_URL, REPLICA_i_URL/_PEER/_CONTAINER,
# the operator certificate). Needs the image (bash docker/build.sh), docker-compose and haproxy.
#
#   bash cluster/compose-up.sh --dir DIR [--project NAME]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=cluster/lib.sh
. "$HERE/lib.sh"
DIR="" PROJECT="" SLOTS=3
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --project) PROJECT=$2; shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$DIR" ] || die "--dir DIR is required"
command -v docker-compose >/dev/null || die "docker-compose is not installed"
command -v haproxy >/dev/null || die "haproxy is not installed (Debian: apt-get install haproxy)"
docker image inspect fabric-master:latest >/dev/null 2>&1 || die "no image fabric-master:latest: run docker/build.sh"
mkdir -p "$DIR/pki"
DIR=$(cd "$DIR" && pwd)
PROJECT=${PROJECT:-fabric-$(basename "$DIR" | tr -c 'a-z0-9\n' '-')}
[ ! -f "$DIR/cluster.env" ] || die "$DIR already holds a cluster (cluster.env); run cluster/compose-down.sh first"

# The image makes its own credentials, as the host user; the containers' user (10001) must
# read them, so they are made readable (a local cluster: keep DIR private).
in_image() {
  docker run --rm --user "$(id -u):$(id -g)" -v "$DIR/pki:/pki" --entrypoint /fabric-master \
    fabric-master:latest "$@" >/dev/null 2>&1
}
[ -f "$DIR/pki/ca.pem" ] || in_image certs ca --dir /pki || die "cannot make the CA"
for name in replica operator; do
  [ -f "$DIR/pki/$name.pem" ] || in_image certs issue --ca-dir /pki --out /pki --name "$name" || die "cannot issue $name"
done
[ -f "$DIR/pki/superuser.pub" ] || in_image keygen --out /pki --name superuser --user-id superuser || die "cannot make the superuser key"
chmod 0755 "$DIR/pki"
chmod 0644 "$DIR/pki"/*

export FABRIC_PKI=$DIR/pki
for i in 1 2 3; do export "FM${i}_PORT=$(free_port)"; done
# Peer ports too, for the operator's `cluster`/`state` commands from this host (mutual TLS).
cat >"$DIR/compose.override.yaml" <<YAML
version: "3.7"
services:
  fm1: { ports: ["127.0.0.1:$(free_port):9401"] }
  fm2: { ports: ["127.0.0.1:$(free_port):9401"] }
  fm3: { ports: ["127.0.0.1:$(free_port):9401"] }
YAML
compose() { docker-compose -p "$PROJECT" -f "$HERE/compose.yaml" -f "$DIR/compose.override.yaml" "$@"; }
compose up -d >"$DIR/compose.log" 2>&1 || { cat "$DIR/compose.log" >&2; die "docker-compose up failed"; }

start_haproxy
BIN=$(command -v fabric-master || echo fabric-master) VOTERS=3 SUPERUSER=$DIR/pki/superuser.pub NEXT_ID=4
MEMBERS="1 2 3"
for i in 1 2 3; do
  ws=$(eval echo "\$FM${i}_PORT")
  wait_ready "http://127.0.0.1:$ws" 90 || { compose logs --tail 20 "fm$i" >&2; die "fm$i did not get ready"; }
  eval "REPLICA_${i}_WS=$ws"
  eval "REPLICA_${i}_PEERPORT=$(compose port "fm$i" 9401 | sed 's/.*://')"
  eval "REPLICA_${i}_PID=$(docker inspect -f '{{.State.Pid}}' "$(compose ps -q "fm$i")")"
  lb_add "$i"
done
# The operator's certificate is in pki/, not tls/.
ln -sfn "$DIR/pki" "$DIR/tls"
write_env
{
  echo "export COMPOSE_PROJECT=$PROJECT"
  echo "export FABRIC_PKI=$DIR/pki"
  for i in 1 2 3; do echo "export REPLICA_${i}_CONTAINER=$(compose ps -q "fm$i")"; done
} >>"$DIR/cluster.env"
wait_ready "http://127.0.0.1:$LB_PORT" 30 || die "the load balancer on 127.0.0.1:$LB_PORT does not answer"
echo "containers of $PROJECT ready behind ws://127.0.0.1:$LB_PORT/ws ($DIR/cluster.env)"
