"""Real Electrum 4.8 in-process on regtest: one config, one network talking only to our ElectrumX,
any number of wallets loaded into one Electrum ``Daemon`` (as the plugin will see them).

Electrum's asyncio loop runs in its own thread (``EventLoop``) and exists once per process; the
constants switch to regtest once per process too.
"""
from __future__ import annotations

import asyncio
import pathlib
import threading
from typing import Any, Callable, Coroutine, Optional, TypeVar

from .procs import StackError, wait_for

T = TypeVar("T")

_loop_lock = threading.Lock()
_loop: Optional[asyncio.AbstractEventLoop] = None
_stopping: Optional[asyncio.Future] = None
_thread: Optional[threading.Thread] = None

REGTEST_FEERATE = 2000  # sat/kvB: regtest has no fee estimates


def electrum_loop() -> asyncio.AbstractEventLoop:
    """Electrum's event loop for this process (created on first use), with regtest constants."""
    global _loop, _stopping, _thread
    with _loop_lock:
        if _loop is None:
            from electrum import constants, util

            from .padding import disable_electrum_hold
            constants.BitcoinRegtest.set_as_network()
            disable_electrum_hold()
            _loop, _stopping, _thread = util.create_and_start_event_loop()
        return _loop


def new_seed(seed_type: str = "segwit", entropy: Optional[int] = None) -> str:
    """A new Electrum seed: exactly ``Mnemonic('en').make_seed(seed_type=...)`` (same random
    entropy, same nonce search, same conditions, so the same seed for the same entropy), with
    the one condition that rejects all but 1 in 4096 candidates (the version prefix: HMAC of
    the words, which are lower-case ASCII and so already normalized) tested first. Electrum
    tests it last, after the old-seed and BIP39 checks that scan word lists, which makes every
    new test wallet cost 1-6 s of CPU on this 2-core machine."""
    import hashlib
    import math

    from electrum import crandom, version
    from electrum.crypto import hmac_oneshot
    from electrum.keystore import bip39_is_checksum_valid
    from electrum.mnemonic import Mnemonic, calc_seed_type, is_new_seed, is_old_seed
    m = Mnemonic("en")
    prefix = version.seed_prefix(seed_type)
    bpw = math.log(len(m.wordlist), 2)
    num_bits = int(math.ceil(132 / bpw) * bpw)
    if entropy is None:
        entropy = 1
        while entropy < pow(2, num_bits - bpw):
            entropy = crandom.get_rand_below(pow(2, num_bits))
    nonce = 0
    while True:
        nonce += 1
        i = entropy + nonce
        seed = m.mnemonic_encode(i)
        if not hmac_oneshot(b"Seed version", seed.encode("ascii"),
                            hashlib.sha512).hex().startswith(prefix):
            continue
        if i != m.mnemonic_decode(seed):
            raise StackError("cannot extract the same entropy from the mnemonic")
        if is_old_seed(seed):
            continue
        if bip39_is_checksum_valid(seed, wordlist=m.wordlist) == (True, True):
            continue
        if is_new_seed(seed, prefix):
            if calc_seed_type(seed) != seed_type:
                raise StackError(f"made a {calc_seed_type(seed)!r} seed, not {seed_type!r}")
            return seed


def stop_electrum_loop(timeout: float = 15) -> None:
    """Stop Electrum's loop thread (it is not a daemon thread: a process that started it would
    otherwise never exit)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            return
        loop, stopping, thread = _loop, _stopping, _thread
        _loop = None
    assert stopping is not None and thread is not None     # set together with _loop
    def stop() -> None:
        if not stopping.done():
            stopping.set_result(1)
    loop.call_soon_threadsafe(stop)
    thread.join(timeout)


class ElectrumNode:
    """An Electrum daemon object with its network on one server (``--oneserver``) and its wallets.

    Electrum's ``Network`` is a per-process singleton: one ElectrumNode per process."""

    def __init__(self, datadir: pathlib.Path, server: str, extra_config: Optional[dict] = None):
        from electrum.daemon import Daemon
        from electrum.simple_config import SimpleConfig
        self.loop = electrum_loop()
        self.datadir = datadir
        datadir.mkdir(parents=True, exist_ok=True)
        options = {
            "electrum_path": str(datadir), "regtest": True, "cmd": "daemon",
            "server": server, "oneserver": True, "auto_connect": False,
            "use_exchange_rate": False, "check_updates": False, "dont_show_testnet_warning": True,
            "fee_policy.default": f"feerate:{REGTEST_FEERATE}",
        }
        options.update(extra_config or {})
        self.config = SimpleConfig(options)
        self.daemon = Daemon(self.config, listen_jsonrpc=False)
        self.network = self.daemon.network
        self.wait(lambda: self.network.is_connected(), 30, "Electrum to connect to ElectrumX")

    # --- loop plumbing -------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on Electrum's loop from this (non-loop) thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def commands(self):
        """Electrum's ``Commands`` on this daemon, as its JSON-RPC server would run them
        (plugin commands included, once the plugin is loaded)."""
        from electrum.commands import Commands
        return Commands(config=self.config, network=self.network, daemon=self.daemon)

    @staticmethod
    def wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
        """:func:`devstack.procs.wait_for` (kept as a method: callers hold a node anyway)."""
        return wait_for(pred, timeout, what)

    # --- wallets -------------------------------------------------------------------------
    def create_wallet(self, name: str, password: Optional[str] = None, seed: Optional[str] = None,
                      seed_type: str = "segwit"):
        """Create (or restore from ``seed``) a wallet file in the datadir and load it into the daemon."""
        from electrum.wallet import restore_wallet_from_text
        path = self.datadir / "regtest" / "wallets" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            raise StackError(f"wallet {path} exists already")
        # what create_new_wallet does, with the seed from new_seed (the same seed for the same
        # entropy, found in ~0.1 s instead of Electrum's 1-6 s on this machine)
        restore_wallet_from_text(seed or new_seed(seed_type), path=str(path), config=self.config,
                                 password=password, encrypt_file=password is not None)
        return self.load_wallet(path, password)

    def load_wallet(self, path: pathlib.Path, password: Optional[str] = None):
        wallet = self.daemon.load_wallet(str(path), password)
        if wallet is None:
            raise StackError(f"Electrum could not load wallet {path}")
        self.wait_synced(wallet)
        return wallet

    def close_wallet(self, wallet) -> None:
        self.daemon.stop_wallet(wallet.storage.path)

    def wait_synced(self, wallet, timeout: float = 30) -> None:
        self.wait(lambda: wallet.is_up_to_date(), timeout, f"wallet {wallet} to sync")

    def wait_tx(self, wallet, txid: str, confirmations: int = 0, timeout: float = 30) -> int:
        """Wait until ``wallet`` knows ``txid`` with at least ``confirmations`` (SPV-verified when
        > 0: Electrum counts a confirmation only after checking the merkle proof); return them."""
        def seen() -> Optional[int]:
            if wallet.adb.get_transaction(txid) is None:
                return None
            conf = wallet.adb.get_tx_height(txid).conf
            return conf if conf >= confirmations else None
        return self.wait(lambda: seen() is not None and (seen(),), timeout,
                         f"{txid} with {confirmations} confirmation(s) in {wallet}")[0]

    def renotify(self, wallet, address: str) -> Optional[str]:
        """Hand ``wallet``'s synchronizer the server's current status of ``address``, as a
        ``blockchain.scripthash.subscribe`` notification would (asked on a fresh connection).

        For a notification the wallet never got: under load a freshly funded wallet has been
        seen to miss one payment for good (up to date, the payment absent; the server's history
        of the address has it). The synchronizer then takes its normal path (history, missing
        transactions, SPV). Returns the status handed over."""
        from electrum.bitcoin import address_to_scripthash

        from .electrumx import electrum_rpc
        host, port = self.config.get("server").split(":")[:2]
        sh = address_to_scripthash(address)
        status = electrum_rpc(int(port), "blockchain.scripthash.subscribe", [sh], host=host)
        sync = wallet.adb.synchronizer
        self.run(sync.status_queue.put((sh, status)))
        return status

    def wait_height(self, height: int, timeout: float = 30) -> None:
        self.wait(lambda: self.network.get_local_height() >= height, timeout,
                  f"Electrum to reach height {height}")

    def pay(self, wallet, address: str, sats: int, password: Optional[str] = None,
            feerate: int = REGTEST_FEERATE):
        """Pay ``sats`` to ``address`` with Electrum's own coin selection, signing and broadcast."""
        from electrum.fee_policy import FeePolicy
        from electrum.transaction import PartialTxOutput
        tx = wallet.make_unsigned_transaction(
            outputs=[PartialTxOutput.from_address_and_value(address, sats)],
            fee_policy=FeePolicy(f"feerate:{feerate}"))
        wallet.sign_transaction(tx, password)
        if not tx.is_complete():
            raise StackError("Electrum did not complete the signature")
        self.run(self.network.broadcast_transaction(tx))
        return tx

    def stop(self) -> None:
        try:
            self.run(self.daemon.stop(), timeout=30)
        except Exception:
            pass
