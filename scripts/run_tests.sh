#!/usr/bin/env bash
# Run the pytest suite in the project venv; pytest's "no tests collected" (exit 5) is a failure.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export QT_QPA_PLATFORM=offscreen
export PYTHONDONTWRITEBYTECODE=1
"${EJM_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests — failing on purpose" >&2
  exit 1
fi
exit "$rc"
