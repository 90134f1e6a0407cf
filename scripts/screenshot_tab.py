#!/usr/bin/env python3
"""Save a screenshot of Electrum's JoinMarket tab after a finished coinjoin.

Runs the end-to-end Qt test (real bitcoind -regtest, ElectrumX, Electrum 4.8's main window
offscreen, three Electrum makers over a local IRC server, jmdaemons) with EJM_SCREENSHOT set, so
the picture shows a real coinjoin, not a mock-up.

    scripts/screenshot_tab.py [OUTPUT.png]        # default: docs/joinmarket-tab.png

Needs the test stack installed (scripts/install.sh); uses scripts/run_tests.sh (the project venv).
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                          os.path.join(ROOT, "docs", "joinmarket-tab.png"))
    env = dict(os.environ, EJM_SCREENSHOT=out, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    if os.path.exists(out):
        os.remove(out)
    rc = subprocess.call([os.path.join(ROOT, "scripts", "run_tests.sh"),
                          "tests/qt/test_coinjoin_gui.py::test_coinjoin_from_the_form",
                          "-q", "-p", "no:logging"], cwd=ROOT, env=env)
    if rc != 0 or not os.path.exists(out):
        print(f"screenshot_tab: the coinjoin test failed (rc={rc}); no screenshot", file=sys.stderr)
        return rc or 1
    print(f"screenshot_tab: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
