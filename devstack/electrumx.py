"""ElectrumX (PyPI ``e-x==1.20.0``, its own venv) indexing our regtest bitcoind."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any, Optional

from .bitcoind import RPC_PASSWORD, RPC_USER, Bitcoind
from .padding import electrumx_command
from .procs import installed_env, require_services, terminate, wait_for


def electrum_rpc(port: int, method: str, params: list, host: str = "127.0.0.1",
                 timeout: float = 5.0) -> Any:
    """One Electrum-protocol request on a fresh TCP connection (newline-delimited JSON-RPC)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        reqs = [{"jsonrpc": "2.0", "id": 0, "method": "server.version", "params": ["ejm-test", "1.4"]},
                {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}]
        s.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("ElectrumX closed the connection")
            buf += chunk
            for line in buf.split(b"\n")[:-1]:
                msg = json.loads(line)
                if msg.get("id") == 1:
                    if msg.get("error"):
                        raise RuntimeError(f"ElectrumX error: {msg['error']}")
                    return msg["result"]


@dataclass
class ElectrumX:
    datadir: pathlib.Path
    port: int = 0
    rpc_port: int = 0
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)
    node: Optional[Bitcoind] = field(default=None, repr=False)      # for start() after stop()
    env: dict = field(default_factory=dict, repr=False)

    @property
    def log(self) -> pathlib.Path:
        return self.datadir / "electrumx.log"

    @property
    def server_string(self) -> str:
        """Electrum's ``--server`` form: host:port:t (plain TCP)."""
        return f"127.0.0.1:{self.port}:t"

    def height(self) -> int:
        return electrum_rpc(self.port, "blockchain.headers.subscribe", [])["height"]

    def wait_synced(self, node: Bitcoind, timeout: float = 60) -> int:
        """Wait until ElectrumX's tip equals bitcoind's; return the height."""
        target = node.height()
        return wait_for(lambda: self.height() >= target and target, timeout,
                        f"ElectrumX to reach height {target}", proc=self.proc, log=self.log,
                        errors_mean_not_yet=True)

    def stop(self) -> None:
        terminate(self.proc, timeout=30)

    def start(self) -> None:
        """(Re)start this server on the same ports and database (after :meth:`stop`: a restart
        as an operator would do it); return once it serves the node's tip."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("ElectrumX is already running")
        exe = installed_env()["EJM_ELECTRUMX"]
        self.proc = subprocess.Popen(electrumx_command(exe), env=self.env,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        assert self.node is not None
        self.wait_synced(self.node)


def start_electrumx(datadir: pathlib.Path, node: Bitcoind, port: int = 0) -> ElectrumX:
    """Start ElectrumX on 127.0.0.1 against ``node``; return once it serves the node's tip."""
    from .procs import free_port
    require_services("ElectrumX")
    datadir.mkdir(parents=True, exist_ok=True)
    ex = ElectrumX(datadir=datadir, port=port or free_port(), rpc_port=free_port())
    (datadir / "db").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update({
        "COIN": "Bitcoin", "NET": "regtest", "DB_ENGINE": "leveldb",
        "DB_DIRECTORY": str(datadir / "db"),
        "DAEMON_URL": f"http://{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{node.rpc_port}/",
        "SERVICES": f"tcp://127.0.0.1:{ex.port},rpc://127.0.0.1:{ex.rpc_port}",
        "PEER_DISCOVERY": "off", "PEER_ANNOUNCE": "", "LOG_LEVEL": "info",
        "CACHE_MB": "100", "MAX_SEND": "10000000", "COST_SOFT_LIMIT": "0", "COST_HARD_LIMIT": "0",
        "INITIAL_CONCURRENT": "1000", "DAEMON_POLL_INTERVAL_BLOCKS": "200",
        "DAEMON_POLL_INTERVAL_MEMPOOL": "200", "BANDWIDTH_UNIT_COST": "100000000",
    })
    if os.geteuid() == 0:
        env["ALLOW_ROOT"] = "1"
    ex.node, ex.env = node, env
    ex.start()
    return ex
