"""The maker's side of the coinjoin transaction: verify the taker's ``!tx``, sign our inputs.

docs/protocol.md §9 "Maker tx verification (must)" and §13 "Taker stealing from maker". A maker
never signs unless :func:`verify_taker_tx` passed, and :func:`maker_sign` re-checks the part
that decides *what* gets signed.  Invariants (money-safety invariant 5; one function per case in
:mod:`electrum_joinmarket.tx.checks`):

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

from electrum_joinmarket.tx.checks import (
    check_change_output,
    check_coinjoin_output,
    check_maker_inputs,
    check_offer_fee,
)
from electrum_joinmarket.tx.coins import coin_outpoint, coin_value
from electrum_joinmarket.tx.errors import TakerTxRejected, TxBuildError
from electrum_joinmarket.tx.taker_tx import encode_sig_payload
from jmcore.offers import Offer, maker_change

__all__ = ["TakerTxRejected", "verify_taker_tx", "maker_sign", "coinjoin_txid"]



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


def verify_taker_tx(tx_bytes: Any, my_utxos: Sequence[Any], my_cj_addr: str,
                    my_change_addr: str, cj_amount: int, offer: Offer, *,
                    wallet: Any) -> Any:
    """Check a taker's unsigned ``!tx`` (raw bytes, e.g. from
    :func:`txbuild.wire_to_tx_bytes`) against what this maker agreed; return it as an Electrum
    ``PartialTransaction`` ready for :func:`maker_sign`.

    ``my_utxos`` are the coins we declared in ``!ioauth`` (wallet ``PartialTxInput`` s or
    :class:`UtxoInfo` s); ``wallet`` is our Electrum wallet, needed to see that no *other* coin
    of ours is spent (T4).  Raises :class:`TakerTxRejected` with the case id."""
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
    # the checks of invariant 5, in this order (tx.checks)
    real_cjfee = check_offer_fee(offer, cj_amount)                           # T9
    check_maker_inputs(tx, my_ops, wallet)                                   # T4
    check_coinjoin_output(tx, my_cj_addr, cj_amount)                         # T1, T2
    check_change_output(tx, my_change_addr,                                  # T3
                        maker_change(my_total, cj_amount, offer.txfee, real_cjfee))
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
    check_maker_inputs(tx, set(my_ops), wallet)          # T4 again: what decides what we sign
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
