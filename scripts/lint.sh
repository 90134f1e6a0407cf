#!/usr/bin/env bash
# The static checks `make test` and `make test-fast` run before pytest, each failing the run:
# the package rule (scripts/check_layers.py), ruff and mypy (configured in pyproject.toml).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN="${EJM_VENV:-$ROOT/.venv}/bin"
"$BIN/python" scripts/check_layers.py .
echo "ruff: $("$BIN/ruff" --version)"
"$BIN/ruff" check .
echo "mypy: $("$BIN/mypy" --version)"
"$BIN/mypy"
