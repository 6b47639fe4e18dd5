#!/usr/bin/env bash
# Idempotent set-up shared by scripts/serve.sh and scripts/test.sh.
#   bootstrap.sh server  -> .venv with the server package (editable)
#   bootstrap.sh test    -> .venv with server + client + dev extras, and the npm test client
# Re-runs are cheap: each step is skipped while its inputs (hashed) are unchanged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
what="${1:-server}"
venv="$root/.venv"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating virtualenv in .venv" >&2
  "$python" -m venv "$venv"
fi

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

case "$what" in
  server) extras="" ;;
  test) extras="[client,dev,ray]" ;;
  *) echo "usage: bootstrap.sh server|test" >&2; exit 2 ;;
esac

py_hash="$(hash_of pyproject.toml)-$extras"
py_stamp="$venv/.disco-installed-${what}"
if ! stamp_ok "$py_stamp" "$py_hash"; then
  echo "[bootstrap] installing Python package .$extras" >&2
  if ! "$venv/bin/python" -m pip install -e ".$extras" > "$venv/pip-install.log" 2>&1; then
    tail -n 40 "$venv/pip-install.log" >&2
    echo "[bootstrap] pip install failed (full log: .venv/pip-install.log)" >&2
    exit 1
  fi
  echo "$py_hash" > "$py_stamp"
fi

if [ "$what" = "test" ]; then
  node_dir="$root/tests/interop/node"
  npm_hash="$(hash_of "$node_dir/package.json")"
  npm_stamp="$node_dir/node_modules/.disco-installed"
  if ! stamp_ok "$npm_stamp" "$npm_hash"; then
    echo "[bootstrap] installing the npm test client (@epfml/discojs-node@2.1.1)" >&2
    (cd "$node_dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    echo "$npm_hash" > "$npm_stamp"
  fi
fi
