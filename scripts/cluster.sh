#!/usr/bin/env bash
# A three-node prism-broker cluster on this host, on loopback, from config/cluster/node{1,2,3}.yaml:
# each node is a broker supervising its own clustered nats-server (fixed ports 809N, 423N,
# 823N, 623N; data under data/cluster/nodeN/).
#
#   scripts/cluster.sh start    start the three brokers and wait until every one is ready
#   scripts/cluster.sh status   each node's readiness, the meta leader, the peers it sees and
#                               the MARKET_DATA leader and replicas
#   scripts/cluster.sh stop     SIGTERM each broker (it stops its nats-server), wait, and make
#                               sure no process is left behind
#
# BIN=path/to/prism-broker picks the binary (default target/release/prism-broker, then
# target/debug/prism-broker); READY_TIMEOUT=seconds bounds the start (default 90).
set -euo pipefail

cd "$(dirname "$0")/.."
NODES=(1 2 3)
READY_TIMEOUT="${READY_TIMEOUT:-90}"

if [ -z "${BIN:-}" ]; then
  if [ -x target/release/prism-broker ]; then BIN=target/release/prism-broker
  elif [ -x target/debug/prism-broker ]; then BIN=target/debug/prism-broker
  else echo "no prism-broker binary: run 'cargo build --release' (or set BIN)" >&2; exit 1; fi
fi

dir() { echo "data/cluster/node$1"; }
config() { echo "config/cluster/node$1.yaml"; }
api() { echo "http://127.0.0.1:809$1"; }
pid_of() { cat "$(dir "$1")/broker.pid" 2>/dev/null || true; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(api "$1")/ready" || true)" = 200 ]; }

start() {
  for n in "${NODES[@]}"; do
    if alive "$(pid_of "$n")"; then
      echo "node$n is already running (pid $(pid_of "$n")); 'scripts/cluster.sh stop' first" >&2
      exit 1
    fi
    if curl -s -o /dev/null --max-time 1 "$(api "$n")/health"; then
      echo "something already answers on $(api "$n"); stop it first" >&2
      exit 1
    fi
  done
  "$BIN" --config "$(config 1)" check >/dev/null
  for n in "${NODES[@]}"; do
    mkdir -p "$(dir "$n")"
    # Own session: a Ctrl-C in this terminal does not reach the brokers; 'stop' does.
    setsid "$BIN" --config "$(config "$n")" serve >>"$(dir "$n")/broker.log" 2>&1 </dev/null &
    echo $! >"$(dir "$n")/broker.pid"
    echo "node$n started (pid $!, api $(api "$n"), log $(dir "$n")/broker.log)"
  done
  local deadline=$((SECONDS + READY_TIMEOUT))
  for n in "${NODES[@]}"; do
    until ready "$n"; do
      if ! alive "$(pid_of "$n")"; then
        echo "node$n exited during start-up; last log lines:" >&2
        tail -n 20 "$(dir "$n")/broker.log" >&2
        stop
        exit 1
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "node$n not ready within ${READY_TIMEOUT}s: $(curl -s --max-time 2 "$(api "$n")/ready")" >&2
        stop
        exit 1
      fi
      sleep 0.2
    done
    echo "node$n ready"
  done
  status
}

stop() {
  local pids=()
  for n in "${NODES[@]}"; do
    local pid
    pid="$(pid_of "$n")"
    if alive "$pid"; then
      kill -TERM "$pid"
      pids+=("$n:$pid")
    fi
  done
  for entry in "${pids[@]+"${pids[@]}"}"; do
    local n="${entry%%:*}" pid="${entry#*:}" waited=0
    while alive "$pid" && [ "$waited" -lt 150 ]; do sleep 0.1; waited=$((waited + 1)); done
    if alive "$pid"; then
      echo "node$n (pid $pid) did not stop within 15s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "node$n stopped"
  done
  # The broker stops its nats-server (and the child dies with a killed broker); make sure.
  for n in "${NODES[@]}"; do
    local nats_pid
    nats_pid="$(cat "$(dir "$n")/nats/nats-server.pid" 2>/dev/null || true)"
    if alive "$nats_pid" && grep -q "nats-server" "/proc/$nats_pid/cmdline" 2>/dev/null; then
      echo "node$n: nats-server $nats_pid still running; stopping it" >&2
      kill -TERM "$nats_pid" 2>/dev/null || true
      sleep 1
      kill -KILL "$nats_pid" 2>/dev/null || true
    fi
    rm -f "$(dir "$n")/broker.pid"
  done
}

status() {
  local failing=0
  for n in "${NODES[@]}"; do
    local pid state
    pid="$(pid_of "$n")"
    if ! alive "$pid"; then
      echo "node$n: not running"
      failing=1
      continue
    fi
    if ready "$n"; then state=ready; else state="not ready"; failing=1; fi
    local body
    body="$(curl -s --max-time 3 "$(api "$n")/api/v1/broker/status" || true)"
    if command -v jq >/dev/null 2>&1 && [ -n "$body" ]; then
      echo "node$n: pid $pid, $state, $(echo "$body" | jq -r '.data.cluster |
        "meta leader \(.meta_leader // "none"), peers seen \(.peers_seen), " +
        ((.streams // []) | map(select(.name == "MARKET_DATA")) | first |
          if . then "MARKET_DATA leader \(.leader // "none") \(.replicas_current)/\(.replicas) current (\(.status))"
          else "MARKET_DATA not listed" end)' 2>/dev/null || echo "no cluster section")"
    else
      echo "node$n: pid $pid, $state"
    fi
  done
  return "$failing"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
