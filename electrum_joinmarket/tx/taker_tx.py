"""The taker's coinjoin transaction: plan, build, check maker signatures, check, sign.

Built on Electrum's own :class:`~electrum.transaction.PartialTransaction` and signing (and
``electrum_ecc`` through it); no other bitcoin library.  The maker side lives in
:mod:`electrum_joinmarket.tx.maker_tx`, the fee/size model and amount solvers in
:mod:`electrum_joinmarket.market.feemodel`.

Flow (docs/protocol.md §8.3–§8.5)::

    plan = plan_coinjoin(cj_amount=..., my_coins=wallet coins, makers=[MakerInput...], ...)
    tx = build_coinjoin(plan, my_coins, prev_txs, tip_height, wallet=wallet)
    wire = tx_to_wire(tx)                                   # the !tx plaintext (base64)
    for each !sig: verify_and_add_maker_sig(tx, sig_b64, that_maker.utxos)
    sign_our_inputs(wallet, tx, password, plan)              # runs check_before_signing first
    tx.serialize()                                           # network hex, broadcast

Money-safety invariant 1 (docs/architecture.md) is enforced by
:func:`~electrum_joinmarket.tx.checks.check_before_signing` (one function per invariant in
:mod:`electrum_joinmarket.tx.checks`), which :func:`sign_our_inputs` always runs immediately
before the wallet is asked to sign:

* every output we expect is present **exactly once**: our coinjoin output with at least
  ``cj_amount``, our change (if planned) with at least the planned change, each maker's coinjoin
  output and change with exactly the agreed amounts; no other output exists;
* the inputs are exactly our chosen coins plus the makers' verified utxos — nothing missing,
  nothing extra, no duplicates, none of ours already carrying a signature; if the wallet is
  given, no other coin of the wallet is spent;
* every maker input is one of the verified :class:`UtxoInfo` records (confirmed, unspent) and
  its previous transaction (which fixes the txid) agrees with the chain on value and script;
* what we pay — our inputs minus our outputs — is at most the user's limits: per maker
  ``max(max_cj_fee_abs, max_cj_fee_rel·amount)`` plus the size-model miner fee at the planned
  rate (plus the dropped-dust allowance); each maker's gain is within the limits as in the
  reference filter; the miner fee is positive and its rate below ``absurd_fee_per_kb``.

Anything else raises :class:`UnsafeTransaction` and nothing is signed. The exceptions live in
:mod:`electrum_joinmarket.tx.errors`, the coin helpers in :mod:`electrum_joinmarket.tx.coins`;
both are re-exported here.
"""
from __future__ import annotations

import base64
import binascii
import copy
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

from electrum_joinmarket.chain.utxo import UtxoInfo
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.market.feemodel import (
    CoinjoinAmounts,
    estimate_tx_fee,
    estimate_tx_vsize,
    normalize_script_type,
    script_type_of_scriptpubkey,
    solve_non_sweep,
    solve_sweep,
)
from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.tx.checks import check_before_signing, check_prevout_matches, cost_allowance
from electrum_joinmarket.tx.coins import (
    coin_outpoint,
    coin_value,
    input_type_from_spk,
    is_signed,
    script_for_address,
    wallet_script_type,
)
from electrum_joinmarket.tx.errors import BadMakerSignature, FeeLimitExceeded, TxBuildError, UnsafeTransaction
from jmcore.constants import MAX_MAKER_INPUTS
from jmcore.offers import Offer

__all__ = [
    "TxBuildError", "UnsafeTransaction", "BadMakerSignature", "FeeLimitExceeded",
    "SEQUENCE", "MAX_MAKER_INPUTS", "MakerInput", "CoinjoinPlan",
    "plan_coinjoin", "build_coinjoin", "compute_locktime", "tx_to_wire", "wire_to_tx_bytes",
    "encode_sig_payload", "decode_sig_payload", "verify_and_add_maker_sig",
    "check_before_signing", "sign_our_inputs", "coin_outpoint", "coin_value",
    "wallet_script_type",
]

_log = get_logger(__name__)

SEQUENCE = 0xfffffffe           # final-but-locktime-enabled, no RBF (reference)
SIGHASH_ALL = 0x01

if TYPE_CHECKING:  # pragma: no cover
    from electrum.transaction import PartialTransaction


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MakerInput:
    """One maker's part after a checked ``!ioauth``: its offer and its chain-verified utxos."""
    nick: str
    offer: Offer
    utxos: tuple[UtxoInfo, ...]
    cj_addr: str
    change_addr: str

    @property
    def input_total(self) -> int:
        return sum(u.value for u in self.utxos)


@dataclass(frozen=True)
class ExpectedOutput:
    address: str
    value: int
    ours: bool
    label: str


@dataclass(frozen=True)
class CoinjoinPlan:
    """Everything agreed for one coinjoin: the ``expected`` of :func:`check_before_signing`."""
    amounts: CoinjoinAmounts
    my_inputs: tuple[str, ...]            # outpoints "txid:n" of our chosen coins
    my_cj_addr: str
    my_change_addr: Optional[str]         # None when there is no change output
    makers: tuple[MakerInput, ...]
    feerate: int                          # sat/kvB the split was made for
    limits: FeeLimits
    script_type: str                      # our inputs' type (size model key)

    @property
    def cj_amount(self) -> int:
        return self.amounts.cj_amount

    @property
    def sweep(self) -> bool:
        return self.amounts.sweep

    def maker_utxos(self) -> list[UtxoInfo]:
        return [u for m in self.makers for u in m.utxos]

    def expected_outputs(self) -> list[ExpectedOutput]:
        outs = [ExpectedOutput(self.my_cj_addr, self.cj_amount, True, "our coinjoin output")]
        if self.my_change_addr is not None:
            outs.append(ExpectedOutput(self.my_change_addr, self.amounts.my_change, True,
                                       "our change"))
        for m, a in zip(self.makers, self.amounts.makers, strict=True):
            outs.append(ExpectedOutput(m.cj_addr, self.cj_amount, False,
                                       f"maker {m.nick} coinjoin output"))
            outs.append(ExpectedOutput(m.change_addr, a.change, False, f"maker {m.nick} change"))
        return outs


# ----------------------------------------------------------------------------------------
# planning
# ----------------------------------------------------------------------------------------

def plan_coinjoin(*, cj_amount: int, my_coins: Sequence[Any], makers: Sequence[MakerInput],
                  my_cj_addr: str, my_change_addr: Optional[str], feerate: int,
                  limits: FeeLimits, script_type: str = "p2wpkh",
                  sweep: bool = False, sweep_est_fee: Optional[int] = None) -> CoinjoinPlan:
    """Solve the amounts for the real inputs and outputs, after the makers' ``!ioauth``.

    ``cj_amount`` is the amount sent in ``!fill`` (for a sweep: the zero-change amount solved
    with :func:`feemodel.solve_sweep_cj_amount` for ``sweep_est_fee``).  The miner fee is the
    size model for the real counts (inputs of each type, ``2·#makers + 2`` outputs; sweep
    ``+1``) at ``feerate``.

    Checks (raising before anything is built): utxos distinct across everybody (M8), at most
    ``limits.max_inputs_per_maker`` per maker (M11), maker utxos confirmed and unspent, every
    address valid for the network and used once, maker change ≥ 27 300 (M7,
    :class:`feemodel.DustMakerChange`), each maker's net fee within the limits and an offer
    ``txfee`` not above the whole transaction's fee (M12, :class:`FeeLimitExceeded`), the rate
    below ``absurd_fee_per_kb``.
    """
    if not makers:
        raise TxBuildError("a coinjoin needs at least one maker")
    if sweep and my_change_addr is not None:
        raise TxBuildError("a sweep has no change output")
    if not sweep and my_change_addr is None:
        raise TxBuildError("a non-sweep coinjoin needs a change address (dust change is "
                           "dropped automatically)")
    if feerate > limits.absurd_fee_per_kb:
        raise FeeLimitExceeded(f"fee rate {feerate} above absurd limit {limits.absurd_fee_per_kb}")
    script_type = normalize_script_type(script_type)
    my_outpoints = [coin_outpoint(c) for c in my_coins]
    if not my_outpoints:
        raise TxBuildError("no taker inputs")
    seen: set[str] = set()
    for op in my_outpoints:
        if op in seen:
            raise TxBuildError(f"our coin {op} listed twice")
        seen.add(op)
    ins: dict[str, int] = {script_type: len(my_outpoints)}
    for m in makers:
        if not m.utxos:
            raise UnsafeTransaction(f"maker {m.nick} has no inputs")
        if len(m.utxos) > limits.max_inputs_per_maker:
            raise UnsafeTransaction(f"maker {m.nick} declared {len(m.utxos)} inputs "
                                    f"(cap {limits.max_inputs_per_maker})")
        for u in m.utxos:
            if u.outpoint in seen:
                raise UnsafeTransaction(f"utxo {u.outpoint} declared twice (maker {m.nick})")
            seen.add(u.outpoint)
            if not u.unspent or u.confirmations < 1:
                raise UnsafeTransaction(f"maker {m.nick} utxo {u.outpoint} is not confirmed "
                                        f"and unspent")
            t = input_type_from_spk(u.script_pubkey)
            ins[t] = ins.get(t, 0) + 1
    addrs = [my_cj_addr] + ([my_change_addr] if my_change_addr else []) + \
        [a for m in makers for a in (m.cj_addr, m.change_addr)]
    if len(set(addrs)) != len(addrs):
        raise UnsafeTransaction("an output address is used twice")
    outs: dict[str, int] = {}      # (non-sweep: our change counted, as in the reference)
    for a in addrs:
        t = script_type_of_scriptpubkey(script_for_address(a))
        outs[t] = outs.get(t, 0) + 1
    if not sweep:
        pass  # our change address is already counted (reference: #maker outputs + 2)
    total_txfee = estimate_tx_fee(ins, outs, feerate)
    my_total = sum(coin_value(c) for c in my_coins)
    pairs = [(m.offer, m.input_total) for m in makers]
    for m in makers:
        net = m.offer.net_fee(cj_amount)
        base = my_total if sweep else cj_amount
        if not limits.allows(net, base):
            raise FeeLimitExceeded(f"maker {m.nick} fee {net} above the limits "
                                   f"({limits.describe()})",
                                   m.nick)
    if sweep:
        if sweep_est_fee is None:
            raise TxBuildError("sweep needs the fee estimate its amount was solved for")
        amounts = solve_sweep(cj_amount, my_total, pairs, sweep_est_fee, total_txfee,
                              limits.max_sweep_fee_change)
    else:
        amounts = solve_non_sweep(cj_amount, my_total, pairs, total_txfee)
    vsize = estimate_tx_vsize(ins, outs)
    if amounts.miner_fee * 1000 > vsize * limits.absurd_fee_per_kb:
        # e.g. offers with absurd txfees: the excess over our fee goes to the miners
        raise FeeLimitExceeded(f"miner fee {amounts.miner_fee} for ~{vsize} vB is absurd")
    allowed = cost_allowance(limits, len(makers), vsize, feerate, sweep,
                              my_total if sweep else cj_amount)
    if amounts.taker_cost > allowed:
        raise FeeLimitExceeded(f"we would pay {amounts.taker_cost} sats in fees, limit {allowed}")
    change_addr = my_change_addr if amounts.my_change > 0 else None
    return CoinjoinPlan(amounts, tuple(my_outpoints), my_cj_addr, change_addr, tuple(makers),
                        int(feerate), limits, script_type)


# ----------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------

def compute_locktime(tip_height: int, rng: Optional[random.Random] = None) -> int:
    """Reference anti-fee-sniping locktime: the tip height; with probability 1/10, minus a
    uniform 0–99 (at least 1)."""
    r = rng if rng is not None else random.SystemRandom()
    locktime = int(tip_height)
    if r.randint(0, 9) == 0:
        locktime = max(1, locktime - r.randint(0, 99))
    return locktime


def build_coinjoin(plan: CoinjoinPlan, my_coins: Sequence[Any], prev_txs: Mapping[str, Any],
                   tip_height: int, *, wallet: Any = None,
                   rng: Optional[random.Random] = None) -> "PartialTransaction":
    """Build the unsigned coinjoin for ``plan``.

    ``my_coins`` are the wallet's ``PartialTxInput`` s named in the plan (copied, never
    mutated); ``prev_txs`` maps each maker utxo's txid to its previous transaction (an
    Electrum ``Transaction`` or raw hex), which is set as ``txin.utxo`` so the txid is final
    before any signature.  Each previous output must match the chain record (value, script).
    Inputs and outputs are shuffled with ``rng``; version 2, ``nSequence`` 0xfffffffe,
    ``nLockTime`` from :func:`compute_locktime`.  If ``wallet`` is given, Electrum's wallet
    info (prev txs, descriptors) is added to our inputs.
    """
    from electrum.transaction import (
        PartialTransaction,
        PartialTxInput,
        PartialTxOutput,
        Transaction,
        TxOutpoint,
    )
    r = rng if rng is not None else random.SystemRandom()
    by_op = {coin_outpoint(c): c for c in my_coins}
    if set(by_op) != set(plan.my_inputs) or len(by_op) != len(my_coins):
        raise TxBuildError("my_coins are not exactly the plan's inputs")
    if sum(coin_value(c) for c in my_coins) != plan.amounts.my_input_total:
        raise TxBuildError("my_coins' values differ from the plan")
    inputs = []
    for op in plan.my_inputs:
        txin = copy.deepcopy(by_op[op])
        if not isinstance(txin, PartialTxInput):
            raise TxBuildError("our coins must be Electrum PartialTxInputs from the wallet")
        txin.nsequence = SEQUENCE
        inputs.append(txin)
    for m in plan.makers:
        for u in m.utxos:
            prev = prev_txs.get(u.txid)
            if prev is None:
                raise TxBuildError(f"missing previous transaction {u.txid}")
            if not isinstance(prev, Transaction):
                prev = Transaction(prev)
            txin = PartialTxInput(prevout=TxOutpoint.from_str(u.outpoint), nsequence=SEQUENCE)
            txin.utxo = prev          # validates sha256d(prev) == prevout txid
            if txin.utxo is None:
                raise TxBuildError(f"previous transaction {u.txid} is not a complete tx")
            check_prevout_matches(txin, u)
            inputs.append(txin)
    outputs = [PartialTxOutput.from_address_and_value(o.address, o.value)
               for o in plan.expected_outputs()]
    r.shuffle(inputs)
    r.shuffle(outputs)
    tx = PartialTransaction.from_io(inputs, outputs, locktime=compute_locktime(tip_height, r),
                                    version=2, BIP69_sort=False)
    if wallet is not None:
        tx.add_info_from_wallet(wallet)
    return tx


def tx_to_wire(tx: Any) -> str:
    """The ``!tx`` plaintext: base64 of the network serialization without signatures (the
    reference sends ``b64(raw unsigned tx)``, §4.2)."""
    return base64.b64encode(bytes.fromhex(tx.serialize_to_network(include_sigs=False))).decode()


def wire_to_tx_bytes(b64: str) -> bytes:
    """Strict base64 decode of a ``!tx`` body."""
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise TxBuildError(f"!tx is not base64: {exc}") from None


# ----------------------------------------------------------------------------------------
# !sig payloads
# ----------------------------------------------------------------------------------------

def encode_sig_payload(sig: bytes, pubkey: bytes, redeem_script: Optional[bytes] = None) -> str:
    """``b64(push(sig) push(pub) [push(0014<h160>)])`` (§8.5, §9.5)."""
    from electrum.bitcoin import construct_script
    items = [sig, pubkey] + ([redeem_script] if redeem_script is not None else [])
    return base64.b64encode(construct_script(items)).decode()


def decode_sig_payload(sig_b64: str) -> tuple[bytes, bytes, Optional[bytes]]:
    """Parse a ``!sig`` payload strictly into ``(sig_with_hashtype, pubkey, redeem_script)``.

    Accepted: canonical base64 of a script of exactly 2 or 3 minimal data pushes; the
    signature is strict-DER, low-S, with hash type SIGHASH_ALL; the pubkey compressed
    (segwit policy); the third push, if any, a p2wpkh program ``0014<20 bytes>``.
    Raises :class:`BadMakerSignature`."""
    from electrum.bitcoin import construct_script
    from electrum.transaction import MalformedBitcoinScript, script_GetOp
    from electrum_ecc import ecdsa_der_sig_from_ecdsa_sig64, ecdsa_sig64_from_der_sig
    if not isinstance(sig_b64, str) or len(sig_b64) > 400:
        raise BadMakerSignature("!sig payload missing or too long")
    try:
        raw = base64.b64decode(sig_b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadMakerSignature("!sig payload is not base64") from None
    try:
        ops = list(script_GetOp(raw))
    except MalformedBitcoinScript:
        raise BadMakerSignature("!sig payload is not a script") from None
    if len(ops) not in (2, 3) or any(vch is None for _, vch, _ in ops):
        raise BadMakerSignature(f"!sig payload must be 2 or 3 pushes, got {len(ops)} items")
    items = [vch for _, vch, _ in ops]
    if construct_script(items) != raw:
        raise BadMakerSignature("!sig payload pushes are not minimal")
    sig, pub = items[0], items[1]
    redeem = items[2] if len(items) == 3 else None
    if len(sig) < 9 or sig[-1] != SIGHASH_ALL:
        raise BadMakerSignature("maker signature is not SIGHASH_ALL")
    try:
        canonical = ecdsa_der_sig_from_ecdsa_sig64(ecdsa_sig64_from_der_sig(sig[:-1]))
    except Exception:
        raise BadMakerSignature("maker signature is not DER") from None
    if canonical != sig[:-1]:
        raise BadMakerSignature("maker signature is not strict low-S DER")
    if len(pub) != 33 or pub[0] not in (2, 3):
        raise BadMakerSignature("maker pubkey is not a compressed key")
    if redeem is not None and (len(redeem) != 22 or redeem[:2] != b"\x00\x14"):
        raise BadMakerSignature("third push is not a p2wpkh program")
    return sig, pub, redeem


def verify_and_add_maker_sig(tx: Any, sig_b64: str, maker_utxos: Iterable[UtxoInfo]) -> int:
    """Check a ``!sig`` against every still-unsigned input of ``tx`` that spends one of
    ``maker_utxos`` (the chain-verified utxos of the maker that sent it), and insert it into the
    first input it validly signs; return that input's index.

    For each candidate the pubkey must own the input's script **from the chain record**
    (p2wpkh: ``0014 h160(pub)``; p2sh-p2wpkh: the third push is ``0014 h160(pub)`` and the
    script is its p2sh), and the signature must verify against the BIP143 sighash computed by
    Electrum's ``serialize_preimage`` with the chain's amount — so a signature for another
    input, another amount or another transaction fits nothing.  Raises
    :class:`BadMakerSignature` (M9) when it fits no input; ``tx`` is then unchanged."""
    from electrum.bitcoin import construct_script, construct_witness
    from electrum.descriptor import get_singlesig_descriptor_from_legacy_leaf
    from electrum.transaction import PartialTransaction, SighashCache, Transaction, TxOutput
    sig, pub, redeem = decode_sig_payload(sig_b64)
    infos = {u.outpoint: u for u in maker_utxos}
    leaf_type = "p2wpkh-p2sh" if redeem is not None else "p2wpkh"
    desc = get_singlesig_descriptor_from_legacy_leaf(pubkey=pub.hex(), script_type=leaf_type)
    desc_spk = desc.expand().output_script
    if redeem is not None and desc.expand().redeem_script != redeem:
        raise BadMakerSignature("p2sh-p2wpkh scriptCode does not belong to the pubkey")
    # an unsigned plain copy to verify on, so a failure leaves ``tx`` untouched
    vtx = PartialTransaction.from_tx(Transaction(tx.serialize_to_network(include_sigs=False)))
    cache = SighashCache()
    for i, txin in enumerate(tx.inputs()):
        info = infos.get(txin.prevout.to_str())
        if info is None or is_signed(txin):
            continue
        if txin.utxo is not None:
            check_prevout_matches(txin, info)
        if info.script_pubkey != desc_spk:
            continue            # this pubkey does not own that input
        vin = vtx.inputs()[i]
        vin.witness_utxo = TxOutput(scriptpubkey=info.script_pubkey, value=info.value)
        vin.script_descriptor = desc
        try:
            ok = vtx.verify_sig_for_txin(txin_index=i, pubkey_bytes=pub, sig=sig,
                                         sighash_cache=cache)
        except Exception:
            ok = False
        if not ok:
            continue
        txin.script_sig = construct_script([redeem]) if redeem is not None else b""
        txin.witness = construct_witness([sig, pub])
        tx.invalidate_ser_cache()
        return i
    raise BadMakerSignature("!sig is valid for none of the maker's unsigned inputs")


# ----------------------------------------------------------------------------------------
# the final check and our signature
# ----------------------------------------------------------------------------------------

def sign_our_inputs(wallet: Any, tx: Any, password: Optional[str],
                    expected: CoinjoinPlan) -> Any:
    """Sign exactly our inputs of ``tx`` with the Electrum wallet, after
    :func:`check_before_signing` passed, and finalize them.  Maker inputs are left exactly as
    they were (their inserted witnesses, or nothing yet); the transaction is complete once
    every maker signature is in.  Works for password-protected wallets (``password`` is passed
    to Electrum only, never logged).  Raises :class:`UnsafeTransaction` if the check fails or
    if the wallet did not sign all of our inputs (then the partial signatures are removed)."""
    try:
        check_before_signing(tx, expected, wallet=wallet)
    except UnsafeTransaction as exc:
        _log.warning("not signing the coinjoin: %s", exc.reason)
        raise
    mine = set(expected.my_inputs)
    before = {i: (txin.script_sig, txin.witness) for i, txin in enumerate(tx.inputs())
              if txin.prevout.to_str() not in mine}
    wallet.sign_transaction(tx, password)
    for i, txin in enumerate(tx.inputs()):
        if i in before:
            if (txin.script_sig, txin.witness) != before[i]:
                raise UnsafeTransaction(f"signing changed foreign input {i}")
            continue
        txin.finalize()
        if not txin.is_complete():
            for j, t in enumerate(tx.inputs()):
                if j not in before:
                    t.sigs_ecdsa = {}
                    t.script_sig = None
                    t.witness = None
            tx.invalidate_ser_cache()
            raise UnsafeTransaction(f"the wallet did not sign our input {txin.prevout.to_str()}")
    tx.invalidate_ser_cache()
    _log.info("signed our %d coinjoin input(s)", len(mine))
    return tx
