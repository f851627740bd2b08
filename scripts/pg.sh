# Sourced by scripts/test.sh and scripts/bench-cluster.sh. as_pg runs a PostgreSQL server
# command as a user it accepts (initdb and postgres refuse to run as root); the directory named
# by PG_OWNED_DIR (the throwaway cluster's) is given to that user first.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_OWNED_DIR"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
