#!/usr/bin/env bash
# Runs the whole test suite: tests/client_api on SQLite and PostgreSQL, and federation-tests
# (Palabre processes and one Synapse on loopback, see federation-tests/README.md).
# Starts a throwaway PostgreSQL cluster (initdb in a temp dir, random port) and stops it at exit.
# Makes the Synapse virtualenv (once, kept under target/) in the background while cargo builds;
# PALABRE_FEDTESTS_NO_SYNAPSE=1 skips it and the Synapse scenarios (refused when CI is set).
# Installs HAProxy from Debian's packages when missing (the rolling-restart test uses it).
set -euo pipefail
cd "$(dirname "$0")/.."

PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
if [ ! -x "$PGBIN/initdb" ]; then
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$found" ] && [ -x "$found/initdb" ]; then PGBIN="$found"; else
    echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; fi
fi

# The high-availability tests put HAProxy (Debian's package) in front of several nodes.
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  SUDO=
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  echo "installing haproxy (Debian package) for the high-availability tests" >&2
  $SUDO apt-get install -y --no-install-recommends haproxy >/dev/null 2>&1 \
    || { $SUDO apt-get update >/dev/null 2>&1 && $SUDO apt-get install -y --no-install-recommends haproxy >/dev/null 2>&1; } \
    || echo "could not install haproxy: the rolling-restart test will fail (apt-get install haproxy)" >&2
fi

PGDIR=$(mktemp -d /tmp/palabre-pg.XXXXXX)
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PG_OWNED_DIR="$PGDIR"
source scripts/pg.sh
VENV_PID=
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR"
  # A Synapse install still running (tests filtered out): let it finish, it is reused next time.
  if [ -n "$VENV_PID" ]; then wait "$VENV_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

# The Synapse of federation-tests, installed from PyPI while cargo compiles. The tests run the
# same script, which waits for this one (flock) and reports its errors if it failed.
if [ -z "${PALABRE_FEDTESTS_NO_SYNAPSE:-}" ] || [ "${PALABRE_FEDTESTS_NO_SYNAPSE}" = 0 ]; then
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  export PALABRE_FEDTESTS_SYNAPSE_VENV="${PALABRE_FEDTESTS_SYNAPSE_VENV:-$TARGET_DIR/tmp/synapse-venv}"
  mkdir -p "$TARGET_DIR/tmp"
  bash federation-tests/synapse-venv.sh "$PALABRE_FEDTESTS_SYNAPSE_VENV" \
    >"$TARGET_DIR/tmp/synapse-venv.log" 2>&1 &
  VENV_PID=$!
fi

as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust --no-sync -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-h 127.0.0.1 -p $PGPORT -k $PGDIR -c fsync=off -c max_connections=400 -c shared_buffers=64MB" start >/dev/null
export PALABRE_TEST_PG="postgres://postgres@127.0.0.1:$PGPORT"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
