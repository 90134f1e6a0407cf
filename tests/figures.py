"""Figures measured by tests and printed at the end of the session (tests/conftest.py's
``pytest_terminal_summary``): timings over the private Tor network, as ``key=value``."""
from __future__ import annotations

from typing import Any

TOR_FIGURES: dict[str, Any] = {}
