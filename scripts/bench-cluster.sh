#!/usr/bin/env bash
# Benchmark (not a test) of a cluster: 1, 2 and 3 nodes of a release build on one throwaway
# PostgreSQL, behind HAProxy (round robin), with the shared load tool (../shared/bench): send
# throughput and sync fan-out delivery across the nodes (receivers and the sender land on
# different nodes, so most deliveries are cross-node wake-ups). On one machine the figures show
# the cluster's overhead, not its gain (docs/high-availability.md).
# usage: bash scripts/bench.sh cluster [OUT.jsonl]     (loopback only; stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/bench-cluster.jsonl}
BENCH_SRC=../shared/bench
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
cargo build --release
CARGO_TARGET_DIR="$PWD/target/mxbench" cargo build --release --manifest-path "$BENCH_SRC/Cargo.toml"
MXBENCH="$PWD/target/mxbench/release/mxbench"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d /tmp/palabre-bench-cluster.XXXXXX)
PGPORT=$(free_port)
PG_OWNED_DIR="$WORK"
source scripts/pg.sh
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-h 127.0.0.1 -p $PGPORT -k $WORK -c max_connections=300 -c shared_buffers=128MB" start >/dev/null

for N in 1 2 3; do
  DB="bench_$N"
  psql -h 127.0.0.1 -p "$PGPORT" -U postgres -q -c "CREATE DATABASE $DB" postgres
  DATA="$WORK/data$N"; mkdir -p "$DATA"
  NODE_PIDS=(); SERVERS=""
  for i in $(seq 1 "$N"); do
    PORT=$(free_port)
    PALABRE_DATA_DIR="$DATA" PALABRE_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$DB" \
      PALABRE_LISTEN="127.0.0.1:$PORT" PALABRE_REGISTRATION=open PALABRE_RATE_LIMITS=off \
      PALABRE_LOG=warn ./target/release/palabre serve > "$DATA/node$i.log" 2>&1 &
    NODE_PIDS+=($!); PIDS+=($!)
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.1; done
    SERVERS="$SERVERS    server n$i 127.0.0.1:$PORT check inter 500ms
"
  done
  LB=$(free_port)
  cat > "$WORK/haproxy$N.cfg" <<CFG
global
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    timeout client 70s
    timeout server 70s
    timeout http-keep-alive 10s
frontend matrix
    bind 127.0.0.1:$LB
    default_backend palabre
backend palabre
    balance roundrobin
    option httpchk GET /health/ready
$SERVERS
CFG
  "$HAPROXY" -db -f "$WORK/haproxy$N.cfg" > "$WORK/haproxy$N.log" 2>&1 &
  HA_PID=$!; PIDS+=($HA_PID)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$LB/health/ready" >/dev/null && break; sleep 0.1; done
  PID_ARGS=(); for p in "${NODE_PIDS[@]}"; do PID_ARGS+=(--server-pid "$p"); done
  run() { "$MXBENCH" --base-url "http://127.0.0.1:$LB" "${PID_ARGS[@]}" --label "palabre-${N}node" "$@" >> "$OUT"; }
  run send --users 10 --messages 3000
  run sync-fanout --receivers 50 --messages 200 --rate 20
  kill "$HA_PID" "${NODE_PIDS[@]}" 2>/dev/null || true
  for p in "$HA_PID" "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
done
echo "results appended to $OUT"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    s, l = d["scenario"], d.get("label")
    cpu = sum(x.get("cpu_s", 0) for x in d.get("resources", {}).get("servers", []))
    if s == "send": print(l, "send events/s:", d.get("events_per_s"), "p99 ms:", d.get("send_latency_ms", {}).get("p99"), "server CPU s:", round(cpu, 2))
    if s == "sync-fanout": print(l, "fan-out delivery ms:", d.get("delivery_latency_ms"), "lost:", d.get("lost"), "dup:", d.get("duplicates"), "server CPU s:", round(cpu, 2))
PY
