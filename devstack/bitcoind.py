"""bitcoind -regtest (Bitcoin Knots from Debian sid, see scripts/install.sh) with a JSON-RPC client."""
from __future__ import annotations

import base64
import itertools
import json
import pathlib
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional

from .procs import StackError, free_port, installed_env, require_services, terminate, wait_for

RPC_USER, RPC_PASSWORD = "regtest", "regtest-password"
COIN = 100_000_000


class RPCError(Exception):
    """An error answered by bitcoind's JSON-RPC (code and message as bitcoind sent them)."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def btc_to_sat(value: Any) -> int:
    return int((Decimal(str(value)) * COIN).to_integral_exact())


@dataclass
class Bitcoind:
    datadir: pathlib.Path
    rpc_port: int = 0
    p2p_port: int = 0
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)
    _ids: Any = field(default_factory=itertools.count, repr=False)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def log(self) -> pathlib.Path:
        return self.datadir / "regtest" / "debug.log"

    def rpc(self, method: str, *params: Any, wallet: Optional[str] = None, timeout: float = 60) -> Any:
        """Call bitcoind; raise RPCError with bitcoind's code and message on an error answer."""
        url = self.rpc_url + (f"/wallet/{wallet}" if wallet is not None else "")
        body = json.dumps({"jsonrpc": "1.0", "id": next(self._ids), "method": method,
                           "params": list(params)}).encode()
        auth = base64.b64encode(f"{RPC_USER}:{RPC_PASSWORD}".encode()).decode()
        req = urllib.request.Request(url, data=body, headers={"Authorization": f"Basic {auth}",
                                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                answer = json.loads(resp.read(), parse_float=Decimal)
        except urllib.error.HTTPError as exc:  # bitcoind answers errors with HTTP 500 + JSON body
            payload = exc.read()
            try:
                answer = json.loads(payload, parse_float=Decimal)
            except ValueError:
                raise RPCError(exc.code, payload.decode(errors="replace")) from None
        if answer.get("error"):
            raise RPCError(answer["error"]["code"], answer["error"]["message"])
        return answer["result"]

    # --- conveniences used by tests and the demo -------------------------------------------
    def mine(self, n: int = 1, address: Optional[str] = None) -> list[str]:
        address = address or self.rpc("getnewaddress", wallet="miner")
        return self.rpc("generatetoaddress", n, address, timeout=300)

    def fund(self, address: str, sats: int, confirm: bool = True) -> str:
        """Send ``sats`` from the miner wallet to ``address``; mine a block if ``confirm``."""
        txid = self.rpc("sendtoaddress", address, str(Decimal(sats) / COIN), wallet="miner")
        if confirm:
            self.mine(1)
        return txid

    def height(self) -> int:
        return self.rpc("getblockcount")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.rpc("stop", timeout=10)
                self.proc.wait(30)
            except Exception:
                terminate(self.proc)


def start_bitcoind(datadir: pathlib.Path, mature_blocks: int = 110) -> Bitcoind:
    """Start bitcoind -regtest, create the ``miner`` wallet and mine ``mature_blocks`` blocks so
    that it has spendable coinbase outputs."""
    require_services("bitcoind")
    datadir.mkdir(parents=True, exist_ok=True)
    node = Bitcoind(datadir=datadir, rpc_port=free_port(), p2p_port=free_port())
    (datadir / "bitcoin.conf").write_text(
        "regtest=1\nserver=1\ntxindex=1\nlisten=0\ndnsseed=0\nupnp=0\nnatpmp=0\n"
        "fallbackfee=0.0002\nprinttoconsole=0\n"
        f"[regtest]\nrpcbind=127.0.0.1\nrpcallowip=127.0.0.1\nrpcport={node.rpc_port}\n"
        f"port={node.p2p_port}\n"
        f"rpcuser={RPC_USER}\nrpcpassword={RPC_PASSWORD}\n")
    exe = installed_env()["EJM_BITCOIND"]
    node.proc = subprocess.Popen([exe, f"-datadir={datadir}"], stdout=subprocess.DEVNULL,
                                 stderr=(datadir / "stderr.log").open("ab"), stdin=subprocess.DEVNULL)
    wait_for(lambda: node.rpc("getblockcount", timeout=5) is not None, 60, "bitcoind RPC",
             proc=node.proc, log=datadir / "stderr.log", errors_mean_not_yet=True)
    try:
        node.rpc("createwallet", "miner")
    except RPCError as exc:
        raise StackError(f"bitcoind could not create the miner wallet: {exc}") from exc
    if mature_blocks:
        node.mine(mature_blocks)
    return node
