#!/usr/bin/env python3
"""Save screenshots of the JoinMarket tab's Depths and Multiple join views after a real
schedule ran.

Runs the Qt test tests/qt/test_depths_gui.py::test_multiple_join_panel_runs_a_schedule (real
bitcoind -regtest, ElectrumX, Electrum 4.8's main window offscreen, three Electrum makers over
a local IRC server, jmdaemons) with EJM_SCREENSHOT_DIR set, so the pictures show a real 3-step
schedule, not a mock-up.

    scripts/screenshot_depths.py [DIR]     # default: docs/ (joinmarket-depths.png,
                                           #          joinmarket-multiple-join.png)

Needs the test stack installed (scripts/install.sh); uses scripts/run_tests.sh (the project venv).
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("joinmarket-depths.png", "joinmarket-multiple-join.png")


def main() -> int:
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs"))
    env = dict(os.environ, EJM_SCREENSHOT_DIR=out,
               QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    for name in NAMES:
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    with tempfile.TemporaryDirectory(prefix="ejm-shots-") as tmp:
        rc = subprocess.call([os.path.join(ROOT, "scripts", "run_tests.sh"),
                              "tests/qt/test_depths_gui.py::test_multiple_join_panel_runs_a_schedule",
                              "-q", "-p", "no:logging", "-p", "no:cacheprovider",
                              f"--basetemp={tmp}/pt"], cwd=ROOT, env=env)
    missing = [n for n in NAMES if not os.path.exists(os.path.join(out, n))]
    if rc != 0 or missing:
        print(f"screenshot_depths: the schedule test failed (rc={rc}); missing {missing}",
              file=sys.stderr)
        return rc or 1
    for n in NAMES:
        print(f"screenshot_depths: wrote {os.path.join(out, n)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
