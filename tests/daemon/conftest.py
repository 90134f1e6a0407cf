"""Daemon tests: report how many hypothesis examples each fuzz test ran."""
import collections

EXAMPLES = collections.Counter()


def count_example(name, n=1):
    EXAMPLES[name] += n


def pytest_terminal_summary(terminalreporter):
    if not EXAMPLES:
        return
    terminalreporter.section("hypothesis examples run (jmdaemon parsers)")
    for name, n in sorted(EXAMPLES.items()):
        terminalreporter.write_line("%-48s %6d" % (name, n))
    terminalreporter.write_line("%-48s %6d" % ("TOTAL", sum(EXAMPLES.values())))
