"""Daemon tests: report how many hypothesis examples each fuzz test ran (and, separately, the
size of the bulk hostile-input loops)."""
import pytest

from .counting import BULK, EXAMPLES


def pytest_terminal_summary(terminalreporter):
    if EXAMPLES:
        terminalreporter.section("hypothesis examples run (jmdaemon parsers)")
        for name, n in sorted(EXAMPLES.items()):
            terminalreporter.write_line("%-48s %6d" % (name, n))
        terminalreporter.write_line("%-48s %6d" % ("TOTAL", sum(EXAMPLES.values())))
    if BULK:
        terminalreporter.section("bulk hostile inputs (non-hypothesis loops)")
        for name, n in sorted(BULK.items()):
            terminalreporter.write_line("%-48s %8d" % (name, n))


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
