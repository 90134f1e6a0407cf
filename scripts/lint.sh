#!/usr/bin/env bash
# The static checks `make test` runs before pytest: the package rule (scripts/check_layers.py).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY="${EJM_VENV:-$ROOT/.venv}/bin/python"
"$PY" scripts/check_layers.py .
