"""How many hypothesis examples and bulk hostile inputs the daemon tests ran (printed at the
end of the session by conftest.py)."""
from __future__ import annotations

import collections

EXAMPLES: collections.Counter[str] = collections.Counter()
BULK: collections.Counter[str] = collections.Counter()


def count_example(name: str, n: int = 1) -> None:
    EXAMPLES[name] += n


def count_bulk(name: str, n: int) -> None:
    BULK[name] += n
