#!/usr/bin/env bash
# Run the pytest suite in the project venv; pytest's "no tests collected" (exit 5) is a failure.
# EJM_TEST_WORKERS=N (N > 0) runs the tests in N parallel worker processes (pytest-xdist), whole
# groups at a time (tests/conftest.py: a module, the Tor tests, the packaging tests), then the
# tests marked `serial` alone in one process; unset or 0: everything in one process. `make test`
# sets it (Makefile).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export QT_QPA_PLATFORM=offscreen
export PYTHONDONTWRITEBYTECODE=1
PY="${EJM_VENV:-$ROOT/.venv}/bin/python"
workers=${EJM_TEST_WORKERS:-0}
if ! [[ "$workers" =~ ^[0-9]+$ ]]; then
  echo "run_tests: EJM_TEST_WORKERS must be a number of worker processes (0 = none), not '$workers'" >&2
  exit 2
fi
if [ "$workers" -eq 0 ]; then
  "$PY" -m pytest "$@"
  rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "run_tests: pytest collected no tests — failing on purpose" >&2
    exit 1
  fi
  exit "$rc"
fi
serial_ids=$(mktemp)
trap 'rm -f "$serial_ids"' EXIT
EJM_SERIAL_IDS=$serial_ids EJM_TEST_PHASE=parallel \
  "$PY" -m pytest -n "$workers" --dist loadgroup --no-loadscope-reorder "$@"
rc1=$?
echo "run_tests: now the tests that need the machine to themselves (marker serial), one process"
if [ "$#" -eq 0 ] && [ -s "$serial_ids" ]; then
  # the whole suite: the ids the parallel phase set aside (no second collection of everything)
  mapfile -t ids < "$serial_ids"
  EJM_TEST_PHASE=serial "$PY" -m pytest "${ids[@]}"
else
  EJM_TEST_PHASE=serial "$PY" -m pytest "$@"
fi
rc2=$?
for rc in "$rc1" "$rc2"; do
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
    exit "$rc"
  fi
done
if [ "$rc1" -eq 5 ] && [ "$rc2" -eq 5 ]; then
  echo "run_tests: pytest collected no tests — failing on purpose" >&2
  exit 1
fi
exit 0
