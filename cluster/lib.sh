# Shared by up.sh, scale.sh and down.sh: starting and stopping replicas, haproxy's runtime
# API, and DIR/cluster.env. Sourced, not run.

die() { echo "cluster: $*" >&2; exit 1; }

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# HTTP status of a URL, or 000 when nothing answers (bounded to 2 s).
http_status() {
  python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
}

# wait_ready URL SECONDS: waits (bounded) for 200 on URL/readyz.
wait_ready() {
  local url=$1 deadline=$((SECONDS + $2))
  until [ "$(http_status "$url/readyz")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

# wait_exit PID SECONDS: waits (bounded) for a process to end.
wait_exit() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# One command on haproxy's runtime API (admin socket); prints its answer.
haproxy_cmd() {
  python3 - "$HAPROXY_SOCK" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode())
PY
}

# The certificate of replica I for the peer port (mutual TLS among replicas).
issue_cert() {
  local name=$1
  [ -f "$DIR/tls/$name.pem" ] || "$BIN" certs issue --ca-dir "$DIR/tls" --out "$DIR/tls" --name "$name" >/dev/null 2>&1 || die "cannot issue certificate $name"
}

# start_replica I [JOIN_PEERS]: starts replica I in the background, records its ports and PID.
# Without JOIN_PEERS it forms a new cluster. A replica started before keeps its ports (its
# peer address is in the membership). Extra flags come from $REPLICA_ARGS.
start_replica() {
  local i=$1 join=${2:-}
  local ws peer formation
  ws=$(eval echo "\${REPLICA_${i}_WS:-}")
  peer=$(eval echo "\${REPLICA_${i}_PEERPORT:-}")
  [ -n "$ws" ] || ws=$(free_port)
  [ -n "$peer" ] || peer=$(free_port)
  issue_cert "replica-$i"
  if [ -z "$join" ]; then formation=(--bootstrap); else formation=(--join "$join"); fi
  # shellcheck disable=SC2086
  nohup "$BIN" start \
    --listen "127.0.0.1:$ws" --peer-listen "127.0.0.1:$peer" --node-id "$i" \
    --data-dir "$DIR/r$i" --superuser "$SUPERUSER" --node-name "replica-$i" \
    --voters "$VOTERS" \
    --peer-tls-ca "$DIR/tls/ca.pem" --peer-tls-cert "$DIR/tls/replica-$i.pem" \
    --peer-tls-key "$DIR/tls/replica-$i.key" \
    "${formation[@]}" ${REPLICA_ARGS:-} >>"$DIR/r$i.log" 2>&1 </dev/null &
  local pid=$!
  eval "REPLICA_${i}_PID=$pid REPLICA_${i}_WS=$ws REPLICA_${i}_PEERPORT=$peer"
  echo "$pid" >"$DIR/r$i.pid"
}

# The haproxy slot (server name) that carries replica I.
slot() { echo "r$1"; }

# lb_add I: points slot rI at replica I's WebSocket port and lets health checks bring it in.
lb_add() {
  local i=$1 port
  port=$(eval echo "\$REPLICA_${i}_WS")
  haproxy_cmd "set server fabric/$(slot "$i") addr 127.0.0.1 port $port" >/dev/null
  haproxy_cmd "set server fabric/$(slot "$i") state ready" >/dev/null
}

# lb_remove I: takes slot rI out (maintenance): no new connections; existing ones were
# already closed by the replica's drain.
lb_remove() {
  haproxy_cmd "set server fabric/$(slot "$1") state maint" >/dev/null
}

# Writes DIR/cluster.env from the REPLICA_* variables of the replicas in $MEMBERS.
write_env() {
  local env="$DIR/cluster.env" tmp="$DIR/cluster.env.tmp" n=0 i first=""
  {
    echo "# Written by cluster/up.sh and cluster/scale.sh: source it."
    echo "export FABRIC_URL=ws://127.0.0.1:$LB_PORT/ws"
    echo "export FABRIC_HTTP=http://127.0.0.1:$LB_PORT"
    echo "export FABRIC_BIN=$BIN"
    echo "export FABRIC_VOTERS=$VOTERS"
    echo "export CROSSBAR_FABRIC_SUPERUSER=$SUPERUSER"
    echo "export FABRIC_PEER_TLS_CA=$DIR/tls/ca.pem"
    echo "export FABRIC_PEER_TLS_CERT=$DIR/tls/operator.pem"
    echo "export FABRIC_PEER_TLS_KEY=$DIR/tls/operator.key"
    echo "export HAPROXY_PID=$HAPROXY_PID"
    echo "export HAPROXY_SOCK=$HAPROXY_SOCK"
    echo "export LB_PORT=$LB_PORT"
    echo "export SLOTS=$SLOTS"
    echo "export NEXT_ID=$NEXT_ID"
    echo "export MEMBERS=\"$MEMBERS\""
    for i in $MEMBERS; do
      n=$((n + 1))
      [ -n "$first" ] || first=$i
      local pid ws peer
      pid=$(eval echo "\$REPLICA_${i}_PID")
      ws=$(eval echo "\$REPLICA_${i}_WS")
      peer=$(eval echo "\$REPLICA_${i}_PEERPORT")
      echo "export REPLICA_${n}_ID=$i"
      echo "export REPLICA_${n}_PID=$pid"
      echo "export REPLICA_${n}_URL=ws://127.0.0.1:$ws/ws"
      echo "export REPLICA_${n}_HTTP=http://127.0.0.1:$ws"
      echo "export REPLICA_${n}_PEER=127.0.0.1:$peer"
      echo "export REPLICA_${n}_LOG=$DIR/r$i.log"
      # By replica id too, for scale.sh.
      echo "export REPLICA_${i}_PID_BY_ID=$pid"
      echo "export REPLICA_${i}_WS_BY_ID=$ws"
      echo "export REPLICA_${i}_PEER_BY_ID=$peer"
    done
    echo "export REPLICAS=$n"
    echo "export FABRIC_PEER=127.0.0.1:$(eval echo "\$REPLICA_${first}_PEERPORT")"
  } >"$tmp"
  mv "$tmp" "$env"
}

# Loads DIR/cluster.env back into the variables start_replica and write_env use.
load_env() {
  [ -f "$DIR/cluster.env" ] || die "no cluster in $DIR (cluster.env missing); run cluster/up.sh"
  # shellcheck disable=SC1091
  . "$DIR/cluster.env"
  BIN=$FABRIC_BIN VOTERS=$FABRIC_VOTERS SUPERUSER=$CROSSBAR_FABRIC_SUPERUSER
  local i
  for i in $MEMBERS; do
    eval "REPLICA_${i}_PID=\$REPLICA_${i}_PID_BY_ID REPLICA_${i}_WS=\$REPLICA_${i}_WS_BY_ID"
    eval "REPLICA_${i}_PEERPORT=\${REPLICA_${i}_PEER_BY_ID#127.0.0.1:}"
  done
}

# The cluster CLI against a running replica, with the operator's certificate.
cluster_cli() {
  FABRIC_PEER_TLS_CA="$DIR/tls/ca.pem" FABRIC_PEER_TLS_CERT="$DIR/tls/operator.pem" \
    FABRIC_PEER_TLS_KEY="$DIR/tls/operator.key" "$BIN" "$@"
}

# stop_replica I: SIGTERM (the replica drains, a learner leaves), bounded wait, then SIGKILL.
stop_replica() {
  local i=$1 pid
  pid=$(eval echo "\$REPLICA_${i}_PID")
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_exit "$pid" "${STOP_TIMEOUT:-60}"; then
    echo "cluster: replica $i did not stop within ${STOP_TIMEOUT:-60} s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

# start_haproxy: haproxy in front of up to $SLOTS replicas (slot rI for replica I, all in
# maintenance until lb_add); sets LB_PORT, HAPROXY_SOCK, HAPROXY_PID.
start_haproxy() {
  LB_PORT=$(free_port)
  # Two descriptors per proxied connection, within this shell's limit.
  FD_LIMIT=$(ulimit -n)
  [ "$FD_LIMIT" = unlimited ] && FD_LIMIT=1048576
  MAXCONN=$(((FD_LIMIT - 200) / 2))
  [ "$MAXCONN" -le 50000 ] || MAXCONN=50000
  HAPROXY_SOCK=$DIR/haproxy.sock
  cat >"$DIR/haproxy.cfg" <<CFG
global
    stats socket $HAPROXY_SOCK mode 600 level admin
    maxconn $MAXCONN

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # An upgraded WebSocket connection lives under the tunnel timeout.
    timeout tunnel 1h
    timeout client-fin 5s

frontend fabric_ws
    bind 127.0.0.1:$LB_PORT
    default_backend fabric

backend fabric
    # Sessions are long: the replica with the fewest goes next.
    balance leastconn
    # A replica that stopped listening between two checks: try another one.
    option redispatch
    retries 3
    option httpchk GET /readyz
    http-check expect status 200
    # A draining replica answers 503: out within ~1 s; a new one comes in gently.
    default-server inter 500ms fall 2 rise 2 slowstart 3s
    server-template r 1-$SLOTS 127.0.0.1:1 check disabled
CFG
  haproxy -c -q -f "$DIR/haproxy.cfg" || die "haproxy refused $DIR/haproxy.cfg"
  haproxy -D -f "$DIR/haproxy.cfg" -p "$DIR/haproxy.pid"
  HAPROXY_PID=$(cat "$DIR/haproxy.pid")

}
