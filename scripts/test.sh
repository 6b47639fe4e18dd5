#!/usr/bin/env bash
# Run the whole test suite: ruff, mypy --strict and the import contracts on the package,
# tsc --strict and eslint on the web app, pytest (interop, headless-browser, packaging and other
# slow tests included).
# pytest runs on DISCO_TEST_WORKERS xdist workers (default 4: most tests wait on servers, clients
# and subprocesses rather than compute, so two cores serve four workers); extra arguments go to
# pytest (`-n 0` runs in one process).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh" test
cd "$root"
bin="$root/.venv/bin"
echo "== ruff" && "$bin/ruff" check src tests bench
echo "== mypy --strict" && "$bin/mypy" --strict src/disco
echo "== lint-imports (layers and light server: pyproject.toml)" && "$bin/lint-imports" --no-cache
echo "== web: tsc --strict, eslint" && (cd web && npx --no-install tsc --noEmit -p . \
  && npx --no-install eslint --cache --cache-location node_modules/.cache/eslint .)
echo "== pytest" && "$bin/pytest" -q -p no:cacheprovider -n "${DISCO_TEST_WORKERS:-4}" \
  --dist loadgroup --no-loadscope-reorder "$@"
