"""The maker's side of the coinjoin transaction: verify the taker's ``!tx``, sign our inputs.

docs/protocol.md §9 "Maker tx verification (must)" and §13 "Taker stealing from maker". A maker
never signs unless :func:`verify_taker_tx` passed, and :func:`maker_sign` re-checks the part
that decides *what* gets signed.  Invariants:

* every utxo we offered in ``!ioauth`` is an input exactly once; no other coin of our wallet
  is an input (T4 — a taker must not get a signature over coins we never offered);
* our coinjoin address receives exactly one output, worth at least ``cj_amount`` (T1, T2);
* our change address receives exactly one output, worth at least
  ``Σour_in − cj_amount − txfee + real_cjfee`` (T3) — both sides compute that number with
  :func:`jmcore.offers.maker_change`;
* the offer earns us ``real_cjfee − txfee ≥ 0`` at this amount (T9; the reference rejects
  only a negative fee);
* we sign with SIGHASH_ALL only and only our offered inputs; every signature commits (BIP143)
  to our input's amount and to all outputs, so the checks above cannot be undone later.

Other inputs and outputs are the taker's business and are ignored, as in the reference.
"""
from __future__ import annotations

import copy
from typing import Any, Optional, Sequence

from jmcore.offers import Offer, maker_change

from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.tx.taker_tx import (TxBuildError, UnsafeTransaction, coin_outpoint, coin_value,
                      encode_sig_payload)

__all__ = ["TakerTxRejected", "verify_taker_tx", "maker_sign", "coinjoin_txid"]

_log = get_logger(__name__)


class TakerTxRejected(UnsafeTransaction):
    """The taker's ``!tx`` breaks our agreement; we send no ``!sig``. ``case`` names the
    docs/testing.md case (T1, T2, T3, T4, T9) or ``malformed``."""

    def __init__(self, case: str, reason: str):
        super().__init__(f"{case}: {reason}")
        self.case = case
        _log.warning("refusing the taker's transaction: %s: %s", case, reason)


def _parse_tx(tx_bytes: Any) -> Any:
    from electrum.transaction import PartialTransaction, Transaction
    if isinstance(tx_bytes, PartialTransaction):
        return tx_bytes
    if not isinstance(tx_bytes, (bytes, bytearray)) or not tx_bytes or len(tx_bytes) > 400_000:
        raise TakerTxRejected("malformed", "transaction bytes missing or too large")
    try:
        tx = Transaction(bytes(tx_bytes))
        tx.deserialize()
        ptx = PartialTransaction.from_tx(tx)
    except Exception as exc:      # SerializationError and anything a parser may raise
        raise TakerTxRejected("malformed", f"cannot parse the transaction: {exc!r}"[:200]) \
            from None
    return ptx


def _wallet_owns_input(wallet: Any, txin: Any) -> bool:
    addr = wallet.adb.get_txin_address(txin)
    return addr is not None and wallet.is_mine(addr)


def _check_inputs(tx: Any, my_ops: set[str], wallet: Any) -> None:
    seen: dict[str, int] = {}
    for txin in tx.inputs():
        op = txin.prevout.to_str()
        seen[op] = seen.get(op, 0) + 1
    dup = [op for op, n in seen.items() if n > 1]
    if dup:
        raise TakerTxRejected("malformed", f"input {dup[0]} spent twice")
    missing = my_ops - set(seen)
    if missing:
        raise TakerTxRejected("T4", f"our offered utxo(s) not spent: {sorted(missing)}")
    for txin in tx.inputs():
        op = txin.prevout.to_str()
        if op not in my_ops and _wallet_owns_input(wallet, txin):
            raise TakerTxRejected("T4", f"the tx spends our coin {op}, which we did not offer")


def verify_taker_tx(tx_bytes: Any, my_utxos: Sequence[Any], my_cj_addr: str,
                    my_change_addr: str, cj_amount: int, offer: Offer, *,
                    wallet: Any) -> Any:
    """Check a taker's unsigned ``!tx`` (raw bytes, e.g. from
    :func:`txbuild.wire_to_tx_bytes`) against what this maker agreed; return it as an Electrum
    ``PartialTransaction`` ready for :func:`maker_sign`.

    ``my_utxos`` are the coins we declared in ``!ioauth`` (wallet ``PartialTxInput`` s or
    :class:`UtxoInfo` s); ``wallet`` is our Electrum wallet, needed to see that no *other* coin
    of ours is spent (T4).  Raises :class:`TakerTxRejected` with the case id."""
    from electrum import bitcoin
    if not isinstance(offer, Offer):
        raise TxBuildError("offer must be a jmcore.offers.Offer")
    if isinstance(cj_amount, bool) or not isinstance(cj_amount, int) or cj_amount <= 0:
        raise TxBuildError("cj_amount must be a positive int")
    if my_cj_addr == my_change_addr:
        raise TxBuildError("coinjoin and change address must differ")
    tx = _parse_tx(tx_bytes)
    my_ops = {coin_outpoint(c) for c in my_utxos}
    if not my_ops or len(my_ops) != len(my_utxos):
        raise TxBuildError("my_utxos empty or with duplicates")
    my_total = sum(coin_value(c) for c in my_utxos)
    real_cjfee = offer.real_cjfee(cj_amount)
    if real_cjfee - offer.txfee < 0:
        raise TakerTxRejected("T9", f"net fee {real_cjfee - offer.txfee} < 0 at amount "
                                    f"{cj_amount}")
    _check_inputs(tx, my_ops, wallet)
    cj_spk = bitcoin.address_to_script(my_cj_addr)
    ch_spk = bitcoin.address_to_script(my_change_addr)
    cj_outs = [o.value for o in tx.outputs() if o.scriptpubkey == cj_spk]
    ch_outs = [o.value for o in tx.outputs() if o.scriptpubkey == ch_spk]
    if len(cj_outs) != 1:
        raise TakerTxRejected("T1", f"our coinjoin output appears {len(cj_outs)} times")
    if cj_outs[0] < cj_amount:
        raise TakerTxRejected("T2", f"our coinjoin output is {cj_outs[0]} < {cj_amount}")
    expected_change = maker_change(my_total, cj_amount, offer.txfee, real_cjfee)
    if len(ch_outs) != 1:
        raise TakerTxRejected("T3", f"our change output appears {len(ch_outs)} times")
    if ch_outs[0] < expected_change:
        raise TakerTxRejected("T3", f"our change is {ch_outs[0]} < {expected_change}")
    return tx


def coinjoin_txid(tx: Any, my_script_type: str) -> Optional[str]:
    """The txid the coinjoin ``tx`` will have once everybody signed, or None if a scriptSig that
    only another party knows decides it.

    A txid covers every input's scriptSig but no witness. In a native-segwit coinjoin (``sw0``
    offers: the taker only fills offers of its own script type, so every party spends p2wpkh)
    every scriptSig is empty and the txid is fixed before any signature. With p2sh-p2wpkh inputs
    (``sw`` offers) each scriptSig is a push of its owner's redeem script: the txid is known only
    once the transaction is seen. ``my_script_type`` is our inputs' type (Electrum's
    ``wallet.txin_type``: ``p2wpkh`` or ``p2wpkh-p2sh``)."""
    from electrum.crypto import sha256d
    from electrum.transaction import PartialTransaction, Transaction
    if my_script_type != "p2wpkh":
        return None
    bare = PartialTransaction.from_tx(Transaction(tx.serialize_to_network(include_sigs=False)))
    for txin in bare.inputs():
        txin.script_sig, txin.witness = b"", None
    stripped = bytes.fromhex(bare.serialize_to_network(force_legacy=True))
    return sha256d(stripped)[::-1].hex()


def maker_sign(wallet: Any, tx: Any, my_utxos: Sequence[Any],
               password: Optional[str]) -> list[str]:
    """Sign our offered inputs of a verified taker transaction and return one ``!sig``
    payload per input (``b64(push(sig) push(pub))``, plus ``push(0014<h160>)`` for
    p2sh-p2wpkh), in the order of ``my_utxos``.

    Signs a private copy with Electrum's ``wallet.sign_transaction`` (``ignore_warnings``: the
    taker's input amounts are unknown to us by design; our own amounts and all outputs are
    committed by the BIP143 signature and were checked by :func:`verify_taker_tx`); only
    signatures of offered inputs leave this function.  Re-checks T4 first, so an unchecked
    transaction spending an unoffered coin of ours still gets no signature."""
    from electrum.transaction import MalformedBitcoinScript, Sighash, script_GetOp
    my_ops = [coin_outpoint(c) for c in my_utxos]
    _check_inputs(tx, set(my_ops), wallet)
    work = copy.deepcopy(tx)
    for txin in work.inputs():
        if txin.prevout.to_str() in my_ops:
            txin.sighash = None            # Electrum then uses SIGHASH_ALL
            txin.script_sig = None
            txin.witness = None
            txin.sigs_ecdsa = {}
    wallet.sign_transaction(work, password, ignore_warnings=True)
    by_op = {txin.prevout.to_str(): txin for txin in work.inputs()}
    payloads = []
    for op in my_ops:
        txin = by_op[op]
        txin.finalize()
        if not txin.is_complete():
            raise TxBuildError(f"the wallet could not sign our input {op}")
        elems = txin.witness_elements()
        if len(elems) != 2:
            raise TxBuildError(f"unexpected witness for {op}")
        sig, pub = elems
        if sig[-1] != Sighash.ALL:
            raise TxBuildError("refusing a non-SIGHASH_ALL signature")
        redeem = None
        if txin.script_sig:
            try:
                ops = list(script_GetOp(txin.script_sig))
            except MalformedBitcoinScript:
                raise TxBuildError("bad scriptSig from the wallet") from None
            if len(ops) != 1 or ops[0][1] is None:
                raise TxBuildError("unsupported input type (need p2wpkh or p2sh-p2wpkh)")
            redeem = ops[0][1]
        payloads.append(encode_sig_payload(sig, pub, redeem))
    return payloads
