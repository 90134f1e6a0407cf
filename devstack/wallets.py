"""The one wallet factory of the dev stack, and the one signing spy.

Electrum wallets on the regtest stack, funded by bitcoind's ``miner`` wallet with coins that
Electrum has seen (and SPV-verified) with the requested number of confirmations. Used by the
tests (``make_wallet`` fixture), ``scripts/demo.py`` and ``benchmarks/``.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from .procs import StackError

if TYPE_CHECKING:
    from .bitcoind import Bitcoind
    from .electrum_env import ElectrumNode

_names = itertools.count()


def fund_wallets(node: ElectrumNode, bitcoind: Bitcoind,
                 plan: Sequence[tuple[Any, Sequence[int]]], *, confirmations: int = 1,
                 timeout: float = 60) -> list[list[str]]:
    """Pay each ``(wallet, amounts)`` of ``plan`` one coin per amount, to the wallet's unused
    receiving addresses in order; mine ``confirmations`` blocks once for all of them (0: leave
    the payments in the mempool) and wait until every wallet sees every payment with that many
    confirmations. Returns the ``txid:n`` outpoints, per wallet, in the order of the amounts."""
    payments: list[tuple[Any, str, str]] = []
    outpoints: list[list[str]] = []
    for wallet, amounts in plan:
        addresses = [a for a in wallet.get_receiving_addresses() if not wallet.adb.is_used(a)]
        if len(addresses) < len(amounts):
            raise ValueError(f"{wallet} has {len(addresses)} unused receiving addresses, "
                             f"{len(amounts)} coins asked")
        ops = []
        for address, sats in zip(addresses, amounts, strict=False):
            txid = bitcoind.fund(address, sats, confirm=False)
            # the miner wallet's own record: getrawtransaction would depend on the txindex,
            # which lags when another test mines the payment at once (RPC error -5)
            raw = bitcoind.rpc("gettransaction", txid, True, True, wallet="miner")["decoded"]
            vout = next(o["n"] for o in raw["vout"] if o["scriptPubKey"].get("address") == address)
            ops.append(f"{txid}:{vout}")
            payments.append((wallet, txid, address))
        outpoints.append(ops)
    if payments and confirmations > 0:
        bitcoind.mine(confirmations)
    for wallet, txid, address in payments:
        try:
            node.wait_tx(wallet, txid, confirmations=confirmations, timeout=min(20, timeout))
        except StackError:
            # seen in CI under load, rarely: the wallet up to date without this payment, its
            # address's notification never handled (cause not found); hand it the server's status
            status = node.renotify(wallet, address)
            logging.getLogger(__name__).warning(
                "%s did not see %s after 20 s; renotified %s (server status %s)",
                wallet, txid, address, status)
            node.wait_tx(wallet, txid, confirmations=confirmations, timeout=timeout)
    for wallet, _ in plan:
        node.wait_synced(wallet)
    return outpoints


def fund_wallet(node: ElectrumNode, bitcoind: Bitcoind, wallet: Any, amounts: Sequence[int], *,
                confirmations: int = 1) -> list[str]:
    """:func:`fund_wallets` for one wallet; returns its new outpoints."""
    return fund_wallets(node, bitcoind, [(wallet, amounts)], confirmations=confirmations)[0]


def new_wallet(node: ElectrumNode, bitcoind: Optional[Bitcoind] = None, amounts: Sequence[int] = (),
               *, name: Optional[str] = None, password: Optional[str] = None,
               seed: Optional[str] = None, seed_type: str = "segwit",
               confirmations: int = 1) -> Any:
    """A new Electrum wallet loaded into ``node`` (restored from ``seed`` if given: a seed phrase
    or an xprv), funded with one coin per amount (see :func:`fund_wallets`)."""
    wallet = node.create_wallet(name or f"w{next(_names)}", password=password, seed=seed,
                                seed_type=seed_type)
    if amounts:
        if bitcoind is None:
            raise ValueError("funding a wallet needs bitcoind")
        fund_wallet(node, bitcoind, wallet, amounts, confirmations=confirmations)
    return wallet


def confirmed_balance(wallet: Any) -> int:
    """The wallet's confirmed balance; fails if anything is unconfirmed or unmatured."""
    confirmed, unconfirmed, unmatured = wallet.get_balance()[:3]
    assert unconfirmed == 0 and unmatured == 0, \
        f"unconfirmed/unmatured coins in {wallet}: {unconfirmed} {unmatured}"
    return int(confirmed)


class SignSpy:
    """Records every call to ``wallet.sign_transaction`` and lets it through.

    Money tests use it to show that a refusing side never even asked its wallet to sign. With a
    pytest ``monkeypatch`` the original method comes back at the end of the test; otherwise call
    :meth:`remove`."""

    def __init__(self, wallet: Any, monkeypatch: Any = None) -> None:
        self.wallet = wallet
        self.calls: list[Any] = []                # the transactions it was asked to sign
        self._real = wallet.sign_transaction
        self._monkeypatch = monkeypatch

        def sign_transaction(tx: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(tx)
            return self._real(tx, *args, **kwargs)
        if monkeypatch is not None:
            monkeypatch.setattr(wallet, "sign_transaction", sign_transaction)
        else:
            wallet.sign_transaction = sign_transaction

    def __len__(self) -> int:
        return len(self.calls)

    @property
    def count(self) -> int:
        return len(self.calls)

    def remove(self) -> None:
        if self._monkeypatch is None:
            del self.wallet.sign_transaction         # the class's method again
