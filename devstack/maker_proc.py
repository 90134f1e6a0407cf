"""A maker in its own process — its own Electrum (network, server connection, event loop) and its
own jmdaemon — as makers are on a real network. In one process all makers would share one
Electrum connection and one event loop, so their chain checks and signatures would queue behind
each other (and, with the Electrum protocol's padding hold on, their requests would wait for each
other's padding windows).

The parent drives it with one JSON object per line on stdin/stdout:

    child  -> {"addresses": [...]}                         wallet created
    parent -> {"cmd": "start", "cjfee_r": "0.0002"}         after funding those addresses
    child  -> {"nick": "J5..."}                              offers announced
    parent -> {"cmd": "stop"} (or EOF)                       child stops everything and exits

    python -m devstack.maker_proc --workdir DIR --server HOST:PORT:t --channels JSON [--name m0]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from devstack.procs import require_services

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _child(args: argparse.Namespace) -> int:
    from devstack.daemons import start_daemon
    from devstack.electrum_env import ElectrumNode, stop_electrum_loop
    from electrum_joinmarket.maker.maker import Maker, MakerSettings
    work = pathlib.Path(args.workdir)
    node = ElectrumNode(work / "el", args.server)
    daemon = None
    maker = None
    try:
        wallet = node.create_wallet(args.name)
        _send({"addresses": wallet.get_receiving_addresses()[:args.addresses]})
        for line in sys.stdin:
            msg = json.loads(line)
            if msg.get("cmd") == "start":
                node.wait(lambda: wallet.is_up_to_date() and wallet.get_balance()[1] == 0
                          and wallet.get_balance()[0] > 0, 60, "funding")
                daemon = start_daemon(work, "daemon")
                ms = MakerSettings(ordertype="sw0reloffer", cjfee_r=msg.get("cjfee_r", "0.0002"),
                                   txfee=0, minsize=100_000, poll_interval=0.5)
                maker = Maker(wallet, ms, password=None, electrum_network=node.network)
                node.run(maker.start("127.0.0.1", daemon.port, json.loads(args.channels),
                                     network="regtest"), timeout=120)
                _send({"nick": maker.nick})
            elif msg.get("cmd") == "stop":
                break
        return 0
    finally:
        if maker is not None:
            try:
                maker.stop()
            except Exception:
                pass
        if daemon is not None:
            daemon.stop()
        node.stop()
        stop_electrum_loop()


@dataclass
class MakerProcess:
    """The parent's handle on a maker process."""
    proc: subprocess.Popen
    addresses: list[str]
    nick: Optional[str] = None
    log: Any = field(default=None, repr=False)

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"maker process exited (code {self.proc.poll()}); see {self.log}")
        return json.loads(line)

    def start(self, cjfee_r: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": "start", "cjfee_r": cjfee_r}) + "\n")
        self.proc.stdin.flush()
        self.nick = self._read()["nick"]
        return self.nick

    def stop(self, timeout: float = 60) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
            self.proc.stdin.flush()
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def spawn_maker(workdir: pathlib.Path, server: str, chan_configs: list[dict], *,
                name: str = "maker", addresses: int = 10) -> MakerProcess:
    """Start a maker process; returns once its wallet exists (fund ``.addresses``, then call
    ``.start(cjfee_r)``)."""
    require_services(f"maker process {name!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "maker_proc.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.maker_proc", "--workdir", str(workdir), "--server",
         server, "--channels", json.dumps(chan_configs), "--name", name,
         "--addresses", str(addresses)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
        env=env, cwd=str(ROOT))
    mp = MakerProcess(proc, [], log=log)
    mp.addresses = mp._read()["addresses"]
    return mp


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--channels", required=True)
    ap.add_argument("--name", default="maker")
    ap.add_argument("--addresses", type=int, default=10)
    return _child(ap.parse_args())


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
