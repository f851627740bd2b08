#!/usr/bin/env bash
# Makes the virtualenv with Synapse that federation-tests starts, once: later calls find it
# ready and return at once; concurrent calls wait for each other (flock).
# usage: synapse-venv.sh VENV_DIR
# PALABRE_FEDTESTS_SYNAPSE_VERSION chooses the Synapse release (default below).
set -euo pipefail
VENV=${1:?usage: synapse-venv.sh VENV_DIR}
VERSION=${PALABRE_FEDTESTS_SYNAPSE_VERSION:-1.163.2}
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
MARK="$VENV/.ready-matrix-synapse-$VERSION"
if [ -f "$MARK" ] && "$VENV/bin/python" -c 'import synapse' 2>/dev/null; then
  exit 0
fi
if ! python3 -c 'import ensurepip' 2>/dev/null; then
  # Debian splits venv support out of python3.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq python3-venv >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
  else
    echo "python3 cannot make virtualenvs: install python3-venv" >&2; exit 1
  fi
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --disable-pip-version-check --no-input -q --retries 5 --timeout 60 \
  "matrix-synapse==$VERSION"
"$VENV/bin/python" -c 'import synapse; print("synapse", synapse.__version__, "ready in", "'"$VENV"'")'
touch "$MARK"
