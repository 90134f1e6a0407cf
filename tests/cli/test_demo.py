"""`make demo` as a user runs it (issue 14): the output states the fee limits, the anonymity set
and that the demo mined the confirming block; ``--keep`` prints how to attach your own Electrum;
SIGTERM (a closed terminal) stops every process the demo started and removes its temp dir."""
from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc/*/stat parent links)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out.update(kids)
        todo.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_demo_keep_then_signal_stops_everything_and_removes_its_dir(sig, tmp_path):
    out_path = tmp_path / "demo.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo.py"), "--keep"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    kids: set[int] = set()
    try:
        deadline = time.monotonic() + 400
        while "Ctrl-C here stops" not in out_path.read_text():
            assert proc.poll() is None, out_path.read_text()[-3000:]
            assert time.monotonic() < deadline, out_path.read_text()[-3000:]
            time.sleep(1)
        text = out_path.read_text()
        workdir = pathlib.Path(re.search(r"datadir (/\S+)/bitcoind", text).group(1))
        assert workdir.is_dir()
        kids = _descendants(proc.pid)
        # bitcoind, ElectrumX, ngircd, 3 maker daemons and the taker's daemon
        assert len(kids) >= 7, (kids, text[-2000:])
        # what the run reports
        assert re.search(r"fee limits: a maker is refused only if its fee is above BOTH 50000 sat "
                         r"and 0\.01 of the amount \(125000 sat\)", text), text
        assert re.search(r"anonymity set: 4 equal outputs of 12500000 sat among \d+ outputs", text), text
        assert "in a block the demo mined itself" in text
        assert re.search(r"\d+\.\d sat/vB", text)
        # how to attach your own Electrum: ports, RPC credentials, channels, wallet paths
        assert re.search(r"BCLI='\S+bitcoin-cli -regtest -rpcconnect=127\.0\.0\.1 -rpcport=\d+ "
                         r"-rpcuser=regtest -rpcpassword=regtest-password -rpcwallet=miner'", text)
        assert "setconfig plugins.joinmarket.channels '[{\"type\": \"irc\"" in text
        assert re.search(r"taker +" + re.escape(str(workdir)) + r"/electrum/regtest/wallets/taker", text)
        assert "joinmarket_coinjoin $($EL getunusedaddress) 0.1" in text

        proc.send_signal(sig)
        proc.wait(90)
        text = out_path.read_text()
        assert proc.returncode == 0, text[-2000:]
        assert f"stopping ({sig.name})" in text
        assert f"removed {workdir}" in text
        left = [p for p in kids if _alive(p)]
        assert left == [], f"processes left running after {sig.name}: {left}"
        assert not workdir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in kids:            # a failed run must not leave the stack behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
