#!/usr/bin/env python3
"""Save screenshots of Electrum's JoinMarket tab from real runs on the regtest stack.

Runs end-to-end Qt tests (real bitcoind -regtest, ElectrumX, Electrum 4.8's main window
offscreen, three Electrum makers over a local IRC server, jmdaemons) with environment variables
that make them save what they show, so the pictures are real coinjoins, not mock-ups:

* docs/joinmarket-tab.png      the tab after a coinjoin from the form (EJM_SCREENSHOT)
* docs/joinmarket-confirm.png  the confirmation before signing, with the anonymity set, the fee
                               rate and the warning for a destination that would stand out
                               (EJM_SCREENSHOT_CONFIRM)
* docs/joinmarket-maker.png    the maker panel after it earned a coinjoin's fee
                               (EJM_SCREENSHOT_MAKER)

    scripts/screenshot_tab.py [OUTPUT_DIR]        # default: docs/

Needs the test stack installed (scripts/install.sh); uses scripts/run_tests.sh (the project venv).
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = {
    "EJM_SCREENSHOT": ("joinmarket-tab.png", "test_coinjoin_from_the_form"),
    "EJM_SCREENSHOT_CONFIRM": ("joinmarket-confirm.png",
                               "test_legacy_destination_is_warned_then_anonymity_set_fee_rate_and_labels"),
    "EJM_SCREENSHOT_MAKER": ("joinmarket-maker.png", "test_maker_start_stop_from_the_tab"),
}


def main() -> int:
    out_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs"))
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    tests = []
    for var, (name, test) in SHOTS.items():
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            os.remove(path)
        env[var] = path
        tests.append(f"tests/qt/test_coinjoin_gui.py::{test}")
    rc = subprocess.call([os.path.join(ROOT, "scripts", "run_tests.sh"), *tests, "-q",
                          "-p", "no:logging", "-p", "no:cacheprovider",
                          f"--basetemp={os.environ.get('EJM_SCREENSHOT_TMP', '/tmp/ejm-screenshots')}"],
                         cwd=ROOT, env=env)
    missing = [env[v] for v in SHOTS if not os.path.exists(env[v])]
    if rc != 0 or missing:
        print(f"screenshot_tab: tests failed (rc={rc}); missing: {missing}", file=sys.stderr)
        return rc or 1
    for var in SHOTS:
        print(f"screenshot_tab: wrote {env[var]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
