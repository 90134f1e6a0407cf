"""Small helpers over Electrum's coins, inputs and scripts, shared by the taker's and the maker's
transaction code and the pre-signing checks."""
from __future__ import annotations

from typing import Any

from electrum_joinmarket.chain.utxo import UtxoInfo
from electrum_joinmarket.market.feemodel import normalize_script_type, script_type_of_scriptpubkey
from electrum_joinmarket.tx.errors import TxBuildError, UnsafeTransaction

__all__ = ["coin_outpoint", "coin_value", "wallet_script_type", "script_for_address",
           "input_type_from_spk", "is_signed"]


def coin_outpoint(coin: Any) -> str:
    """``txid:n`` of a wallet coin (``PartialTxInput``) or a :class:`UtxoInfo`."""
    if isinstance(coin, UtxoInfo):
        return coin.outpoint
    if isinstance(coin, str):
        return coin
    return str(coin.prevout.to_str())


def coin_value(coin: Any) -> int:
    if isinstance(coin, UtxoInfo):
        return coin.value
    v = coin.value_sats()
    if v is None:
        raise TxBuildError(f"coin {coin_outpoint(coin)} has no known value")
    return int(v)


def wallet_script_type(wallet: Any) -> str:
    """Size-model type of an Electrum wallet's coins: ``p2wpkh`` or ``p2sh-p2wpkh``.  Other
    wallet types (legacy p2pkh, multisig) are not supported for coinjoins."""
    t = getattr(wallet, "txin_type", None)
    if t in ("p2wpkh", "p2wpkh-p2sh"):
        return normalize_script_type(t)
    raise TxBuildError(f"unsupported wallet script type {t!r} (need p2wpkh or p2wpkh-p2sh)")


def script_for_address(addr: str) -> bytes:
    """The output script of ``addr``; :class:`UnsafeTransaction` if it is not an address of the
    network Electrum runs on."""
    from electrum import bitcoin
    if not isinstance(addr, str) or not bitcoin.is_address(addr):
        raise UnsafeTransaction(f"invalid address for this network: {str(addr)[:100]!r}")
    return bytes(bitcoin.address_to_script(addr))


def input_type_from_spk(spk: bytes) -> str:
    """Size-model input type of a maker input from its chain script."""
    t = script_type_of_scriptpubkey(spk)
    if t == "p2sh":
        return "p2sh-p2wpkh"     # the only p2sh input JoinMarket uses
    if t not in ("p2wpkh", "p2pkh"):
        raise UnsafeTransaction(f"unsupported maker input script type {t}")
    return t


def is_signed(txin: Any) -> bool:
    """The input already carries a signature (witness, scriptSig or partial signatures)."""
    return bool(txin.witness not in (None, b"", b"\x00") or txin.script_sig or
                getattr(txin, "sigs_ecdsa", None))
