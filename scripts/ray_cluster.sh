#!/usr/bin/env bash
# A private Ray cluster on this machine (head + N worker nodes), token auth on, for trying
# `ray job submit` and `memrl tune` against a real cluster. It never runs `ray stop` (which stops
# every Ray of the user): each node is a `ray start --block` in a session of its own, and `stop`
# signals those sessions only.
#
#   scripts/ray_cluster.sh start [WORKERS] [CPUS_PER_NODE]   # default: 1 worker, 1 CPU each
#   eval "$(scripts/ray_cluster.sh env)"                     # client settings for this shell
#   ray job submit --working-dir . -- python -m memrl.train demo/gru stop.iterations=2 \
#       output_dir=/abs/path/results
#   scripts/ray_cluster.sh stop
#
# Settings (environment): MEMRL_RAY_DIR (default /tmp/memrl-ray: short, Ray's socket paths must
# fit in 107 bytes), MEMRL_RAY_PORT (GCS, default 6380), MEMRL_DASHBOARD_PORT (default 8265),
# PYTHON (default .venv/bin/python: the nodes run jobs with its interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${MEMRL_RAY_DIR:-/tmp/memrl-ray}"
PORT="${MEMRL_RAY_PORT:-6380}"
DASH_PORT="${MEMRL_DASHBOARD_PORT:-8265}"
PY="${PYTHON:-.venv/bin/python}"
BIN="$(cd "$(dirname "$PY")" && pwd)"  # not realpath: a venv's python links outside the venv
PY="$BIN/$(basename "$PY")"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_node() {  # name, ray start args...
  local name="$1"; shift
  PATH="$BIN:$PATH" RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$DIR/auth_token" \
    RAY_USAGE_STATS_ENABLED=0 setsid "$BIN/ray" start --block --disable-usage-stats "$@" \
    >"$DIR/$name.log" 2>&1 < /dev/null &
  echo $! >"$DIR/$name.pid"
  for _ in $(seq 1 180); do
    if grep -qs "block forever" "$DIR/$name.log"; then echo "started $name (pid $(cat "$DIR/$name.pid"))"; return 0; fi
    if ! kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then cat "$DIR/$name.log" >&2; return 1; fi
    sleep 0.5
  done
  echo "$name did not start in 90 s; see $DIR/$name.log" >&2; return 1
}

cmd_start() {
  local workers="${1:-1}" cpus="${2:-1}"
  if ls "$DIR"/*.pid >/dev/null 2>&1; then echo "a cluster is running in $DIR: stop it first" >&2; exit 1; fi
  mkdir -p "$DIR"
  if [ ! -s "$DIR/auth_token" ]; then
    (umask 077; "$PY" -c 'import secrets; print(secrets.token_hex(32), end="")' >"$DIR/auth_token")
  fi
  start_node head --head --port="$PORT" --node-ip-address=127.0.0.1 --num-cpus="$cpus" \
    --dashboard-host=127.0.0.1 --dashboard-port="$DASH_PORT" \
    --ray-client-server-port="$(free_port)" --dashboard-agent-listen-port="$(free_port)" \
    --temp-dir="$DIR/head"
  for i in $(seq 1 "$workers"); do
    start_node "worker$i" --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 \
      --num-cpus="$cpus" --resources='{"worker_node": 1}' \
      --dashboard-agent-listen-port="$(free_port)" --temp-dir="$DIR/w$i"
  done
  echo "client settings: eval \"\$($0 env)\""
}

cmd_env() {
  echo "export RAY_AUTH_MODE=token"
  echo "export RAY_AUTH_TOKEN_PATH=$DIR/auth_token"
  echo "export RAY_API_SERVER_ADDRESS=http://127.0.0.1:$DASH_PORT"
}

cmd_stop() {
  local pidfile pid
  for pidfile in $(ls -r "$DIR"/*.pid 2>/dev/null); do  # workers before the head
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true  # whatever is left in that node's session
    rm -f "$pidfile"
    echo "stopped $(basename "$pidfile" .pid)"
  done
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  env) cmd_env ;;
  stop) cmd_stop ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
