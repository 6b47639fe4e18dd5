#!/usr/bin/env bash
# Run the whole test suite: ruff, mypy --strict on the package, pytest (interop tests included).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh" test
cd "$root"
bin="$root/.venv/bin"
echo "== ruff" && "$bin/ruff" check src tests bench
echo "== mypy --strict" && "$bin/mypy" --strict src/disco
echo "== pytest" && "$bin/pytest" -q -p no:cacheprovider "$@"
