#!/usr/bin/env bash
# Idempotent set-up shared by scripts/serve.sh and scripts/test.sh.
#   bootstrap.sh server  -> .venv with the server package (editable), the web app built
#   bootstrap.sh test    -> the same plus client + dev extras, the npm test client, chromium
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

# The slow installs (pip, the npm test client) run in the background, side by side with the
# web app's npm install and build and the apt steps: they wait on disks and the network more
# than on CPU. Each is waited for (and its failure fails this script) before the end.
background=()
trap 'for pid in "${background[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
finish_background() {
  local pid
  for pid in "${background[@]}"; do wait "$pid"; done
  background=()
}

py_hash="$(hash_of pyproject.toml)-$extras"
py_stamp="$venv/.disco-installed-${what}"
if ! stamp_ok "$py_stamp" "$py_hash"; then
  echo "[bootstrap] installing Python package .$extras" >&2
  (
    if ! "$venv/bin/python" -m pip install -e ".$extras" > "$venv/pip-install.log" 2>&1; then
      tail -n 40 "$venv/pip-install.log" >&2
      echo "[bootstrap] pip install failed (full log: .venv/pip-install.log)" >&2
      exit 1
    fi
    echo "$py_hash" > "$py_stamp"
  ) &
  background+=("$!")
fi

# The web app (engine disco.js + pages): npm dependencies, then the build, each redone only when
# its inputs changed. Without node/npm the server still runs, without its web app.
node_dir="$root/tests/interop/node"
npm_hash="$(hash_of "$node_dir/package.json")"
npm_stamp="$node_dir/node_modules/.disco-installed"
if [ "$what" = "test" ] && command -v npm >/dev/null 2>&1 && ! stamp_ok "$npm_stamp" "$npm_hash"
then
  echo "[bootstrap] installing the npm test client (@epfml/discojs-node@2.1.1)" >&2
  (
    cd "$node_dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >&2
    echo "$npm_hash" > "$npm_stamp"
  ) &
  background+=("$!")
fi

web="$root/web"
if command -v npm >/dev/null 2>&1; then
  web_npm_hash="$(hash_of "$web/package.json")"
  web_npm_stamp="$web/node_modules/.disco-installed"
  if ! stamp_ok "$web_npm_stamp" "$web_npm_hash"; then
    echo "[bootstrap] installing the web app's npm dependencies (web/)" >&2
    (cd "$web" && npm install --no-audit --no-fund --loglevel=error >&2)
    echo "$web_npm_hash" > "$web_npm_stamp"
  fi
  web_src_hash="$(cd "$root" && find web/src web/build.mjs web/package.json src/disco/__init__.py \
    -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
  web_stamp="$root/src/disco/web/static/.disco-built"
  if ! stamp_ok "$web_stamp" "$web_src_hash"; then
    echo "[bootstrap] building the web app (web/ -> src/disco/web/static/)" >&2
    (cd "$web" && node build.mjs --stamp "$web_src_hash")
    echo "$web_src_hash" > "$web_stamp"
  fi
elif [ "$what" = "test" ]; then
  echo "[bootstrap] node and npm are needed to build and test the web app" >&2
  exit 1
else
  echo "[bootstrap] npm not found: the server runs without its web app (/app/)" >&2
fi

if [ "$what" = "test" ]; then
  # Browser tests drive Debian's chromium through Playwright (its own browser download is not
  # used: executable_path points at this one).
  if [ ! -x /usr/lib/chromium/chromium ]; then
    echo "[bootstrap] installing Debian's chromium for the browser tests" >&2
    if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
    "${apt_get[@]}" update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq -o DPkg::Lock::Timeout=300 \
      chromium >&2
  fi
  # podman, runc and debootstrap for the container image test (apt, only when missing).
  "$root/scripts/container.sh" tools
fi
finish_background
