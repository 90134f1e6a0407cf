#!/usr/bin/env bash
# Run the pytest suite in the project venv; pytest's "no tests collected" (exit 5) is a failure.
# EJM_TEST_WORKERS=N (N > 0) runs the tests in N parallel worker processes (pytest-xdist), whole
# groups at a time (tests/conftest.py: a module, the Tor tests, the packaging tests); unset or 0:
# one process, as before. `make test` sets it (Makefile).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export QT_QPA_PLATFORM=offscreen
export PYTHONDONTWRITEBYTECODE=1
workers=${EJM_TEST_WORKERS:-0}
parallel=()
if [[ "$workers" =~ ^[0-9]+$ ]] && [ "$workers" -gt 0 ]; then
  parallel=(-n "$workers" --dist loadgroup)
elif ! [[ "$workers" =~ ^[0-9]+$ ]]; then
  echo "run_tests: EJM_TEST_WORKERS must be a number of worker processes (0 = none), not '$workers'" >&2
  exit 2
fi
"${EJM_VENV:-$ROOT/.venv}/bin/python" -m pytest "${parallel[@]}" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests — failing on purpose" >&2
  exit 1
fi
exit "$rc"
