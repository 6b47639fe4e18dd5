#!/usr/bin/env bash
# Start the DISCO server on its embedded defaults (127.0.0.1:8080, data in ./disco-data).
# Extra arguments go to disco-server (see `disco-server --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh" server
exec "$root/.venv/bin/disco-server" "$@"
