"""Daemon tests: processes a failed test started are stopped (the hypothesis example counts
are printed by tests/conftest.py)."""
import pytest


@pytest.fixture(autouse=True)
def _stop_processes_of_failed_tests():
    """Daemons/directories a test started are stopped when it ends, even if it failed before
    stopping them (a passing test stops them itself and checks their exit status)."""
    from devstack.daemons import _STARTED
    first = len(_STARTED)
    yield
    for proc in _STARTED[first:]:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except Exception:
                proc.kill()
