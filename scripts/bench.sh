#!/usr/bin/env bash
# Benchmark (not a test): send throughput, sync fan-out wake-up latency, initial sync, idle
# memory, and the restart time after a crash on ~100 000 events, of a release build on SQLite,
# with the shared load tool (../shared/bench).
# usage: bash scripts/bench.sh [OUT.jsonl]     (loopback only; stops the server it started)
#        bash scripts/bench.sh cluster [OUT.jsonl]   1, 2 and 3 nodes on PostgreSQL (bench-cluster.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = cluster ]; then shift; exec bash scripts/bench-cluster.sh "$@"; fi
OUT=${1:-target/bench.jsonl}
BENCH_SRC=../shared/bench
cargo build --release
CARGO_TARGET_DIR="$PWD/target/mxbench" cargo build --release --manifest-path "$BENCH_SRC/Cargo.toml"
MXBENCH="$PWD/target/mxbench/release/mxbench"

DATA=$(mktemp -d /tmp/palabre-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PALABRE_DATA_DIR="$DATA" PALABRE_LISTEN="127.0.0.1:$PORT" PALABRE_REGISTRATION=open \
  PALABRE_RATE_LIMITS=off PALABRE_LOG=warn ./target/release/palabre serve > "$DATA/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

run() { "$MXBENCH" --base-url "http://127.0.0.1:$PORT" --server-pid "$PID" --label palabre "$@" >> "$OUT"; }
run idle --seconds 5
run send --users 10 --messages 5000
run sync-fanout --receivers 50 --messages 200 --rate 20
run initial-sync --rooms 50 --events 100 --repeat 3
run e2ee-keys --devices 50 --otks 50 --claims-per-device 5 --query-users 10

# Restart after a crash on a database of 100 000 events: a second send run of 90 000 messages
# brings the events past 100 000 (the runs above stored ~11 000), then SIGKILL and the time from
# the new process's start to the first answered /sync of a user holding a token.
run send --users 10 --messages 90000
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$PORT/_matrix/client/v3/register" \
  -d '{"username":"restart-probe","password":"restart probe password","auth":{"type":"m.login.dummy"}}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
kill -9 "$PID"; wait "$PID" 2>/dev/null || true
START_NS=$(date +%s%N)
PALABRE_DATA_DIR="$DATA" PALABRE_LISTEN="127.0.0.1:$PORT" PALABRE_REGISTRATION=open \
  PALABRE_RATE_LIMITS=off PALABRE_LOG=warn ./target/release/palabre serve >> "$DATA/server.log" 2>&1 &
PID=$!
until curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/_matrix/client/v3/sync?timeout=0" >/dev/null; do
  sleep 0.005
done
END_NS=$(date +%s%N)
echo "{\"scenario\": \"restart\", \"label\": \"palabre\", \"events_at_least\": 100000, \"first_sync_ms\": $(( (END_NS - START_NS) / 1000000 ))}" >> "$OUT"
echo "results appended to $OUT"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    s = d["scenario"]
    if s == "idle": print("idle RSS MB:", d["resources"]["servers"][0]["rss_end_mb"])
    if s == "send": print("send events/s:", d.get("events_per_s"), "p99 ms:", d.get("send_latency_ms", {}).get("p99"))
    if s == "sync-fanout": print("fan-out delivery ms:", d.get("delivery_latency_ms"), "lost:", d.get("lost"), "dup:", d.get("duplicates"))
    if s == "initial-sync": print("initial sync first ms:", d.get("first_ms"))
    if s == "restart": print("restart to first /sync ms:", d.get("first_sync_ms"))
    if s == "e2ee-keys": print("keys ops/s:", {k: d.get(k, {}).get("ops_per_s") for k in ("upload", "claim", "query")}, "verification failures:", d.get("verification_failures"))
PY
