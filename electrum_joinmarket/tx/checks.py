"""The pre-signing checks: one small function per invariant, for both roles.

Nothing is signed unless these pass. Each function raises on the first violation and names the
case it guards (docs/testing.md ids; invariants of docs/architecture.md):

Taker — money-safety invariant 1, run by :func:`check_before_signing`, which
:func:`electrum_joinmarket.tx.taker_tx.sign_our_inputs` calls immediately before the wallet signs
(:class:`UnsafeTransaction`, :class:`FeeLimitExceeded` for M12):

* inputs: none twice (M8); ours unsigned with a known value; each maker input one of the
  chain-verified utxos, still confirmed and unspent (M1–M3), its previous transaction agreeing
  with the chain; nothing unexpected; no other coin of our wallet; nothing missing; our total as
  planned;
* outputs: each expected output exactly once with its amount (ours at least, the makers'
  exactly); no other output; no maker change below dust (M7);
* fees (M12): the miner fee positive; each maker's gain within the limits; the miner-fee rate
  below ``absurd_fee_per_kb``; what we pay within the limits and not above the plan.

Maker — money-safety invariant 5 (docs/protocol.md §9), run by
:func:`electrum_joinmarket.tx.maker_tx.verify_taker_tx` (:class:`TakerTxRejected` with the case):
a non-negative net fee (T9); no input twice; every offered utxo spent and no other coin of our
wallet (T4); our coinjoin output exactly once and at least the amount (T1, T2); our change
exactly once and at least the agreed change (T3).

The order of the checks is part of their behaviour (which refusal a transaction with several
faults gets) and is the order of the calls in the two entry points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from electrum_joinmarket.chain.utxo import UtxoInfo
from electrum_joinmarket.market.feemodel import estimate_tx_vsize, script_type_of_scriptpubkey
from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.tx.coins import input_type_from_spk, is_signed
from electrum_joinmarket.tx.errors import FeeLimitExceeded, TakerTxRejected, UnsafeTransaction
from jmcore.constants import BITCOIN_DUST_THRESHOLD, DUST_THRESHOLD
from jmcore.offers import Offer

if TYPE_CHECKING:  # pragma: no cover
    from electrum_joinmarket.tx.taker_tx import CoinjoinPlan, MakerInput

__all__ = [
    "check_before_signing", "cost_allowance", "check_prevout_matches",
    # taker, inputs
    "check_input_not_repeated", "check_input_known", "check_our_input", "check_maker_input",
    "check_not_another_wallet_coin", "check_no_input_missing", "check_our_input_total",
    # taker, outputs
    "check_expected_output", "check_no_extra_output", "check_maker_change_not_dust",
    # taker, fees
    "check_miner_fee_positive", "check_maker_gains", "check_miner_fee_rate", "check_taker_cost",
    # maker
    "check_offer_fee", "check_no_repeated_input", "check_offered_inputs_spent",
    "check_no_unoffered_coin", "check_maker_inputs", "check_coinjoin_output",
    "check_change_output",
]


# =============================================================================================
# shared
# =============================================================================================

def check_prevout_matches(txin: Any, u: UtxoInfo) -> None:
    """The previous transaction set on a maker input (which fixes the txid the signatures commit
    to) agrees with the chain record on value and script (invariant 1; M1–M3 were checked on
    that record)."""
    if txin.value_sats() != u.value or txin.scriptpubkey != u.script_pubkey:
        raise UnsafeTransaction(f"previous transaction of {u.outpoint} disagrees with the chain "
                                f"(value {txin.value_sats()} vs {u.value})")


def cost_allowance(limits: FeeLimits, n_makers: int, vsize: int, feerate: int, sweep: bool,
                   base: int) -> int:
    """The most the taker may pay in total (M12): each maker's allowance plus the size-model miner
    fee at the planned rate (sweeps: times ``1 + max_sweep_fee_change``; otherwise plus the
    dust change that may be dropped to the miners)."""
    miner = vsize * feerate // 1000
    if sweep:
        miner = int(miner * (1 + limits.max_sweep_fee_change))
    else:
        miner += BITCOIN_DUST_THRESHOLD
    return miner + n_makers * limits.per_maker_allowance(base)


# =============================================================================================
# taker: inputs (invariant 1)
# =============================================================================================

def check_input_not_repeated(op: str, seen: set[str]) -> None:
    """No outpoint is spent twice (M8: a utxo declared twice must not reach the signature)."""
    if op in seen:
        raise UnsafeTransaction(f"input {op} spent twice")
    seen.add(op)


def check_our_input(txin: Any, op: str) -> int:
    """One of our chosen coins: not already signed, its value known; returns the value
    (invariant 1: our inputs are exactly the ones we chose, signed only now)."""
    if is_signed(txin):
        raise UnsafeTransaction(f"our input {op} already carries a signature")
    v = txin.value_sats()
    if v is None:
        raise UnsafeTransaction(f"value of our input {op} unknown")
    return int(v)


def check_maker_input(txin: Any, op: str, u: UtxoInfo) -> int:
    """A maker input is a chain-verified utxo that is still confirmed and unspent (M1–M3) and
    carries its previous transaction, which agrees with the chain; returns its value."""
    if not u.unspent or u.confirmations < 1:
        raise UnsafeTransaction(f"maker input {op} is not confirmed and unspent")
    if txin.utxo is None:
        raise UnsafeTransaction(f"maker input {op} has no previous transaction")
    check_prevout_matches(txin, u)
    return u.value


def check_input_known(op: str, mine: set[str], maker_utxos: Mapping[str, Any]) -> None:
    """Every input is one of our chosen coins or a verified maker utxo (invariant 1)."""
    if op not in mine and op not in maker_utxos:
        raise UnsafeTransaction(f"unexpected input {op}")


def check_not_another_wallet_coin(wallet: Any, txin: Any, op: str, mine: set[str]) -> None:
    """No coin of our wallet other than the chosen ones is spent (invariant 1: a maker must not
    get our signature over a coin we did not put in)."""
    if wallet is not None and op not in mine:
        addr = wallet.adb.get_txin_address(txin)
        if addr is not None and wallet.is_mine(addr):
            raise UnsafeTransaction(f"input {op} is ours but was not chosen")


def check_no_input_missing(expected: set[str], seen: set[str]) -> None:
    """Every chosen coin and every verified maker utxo is an input (invariant 1)."""
    missing = expected - seen
    if missing:
        raise UnsafeTransaction(f"inputs missing: {sorted(missing)}")


def check_our_input_total(total: int, plan: "CoinjoinPlan") -> None:
    """Our inputs are worth what the plan's amounts were solved for (invariant 1)."""
    if total != plan.amounts.my_input_total:
        raise UnsafeTransaction(f"our inputs total {total}, planned "
                                f"{plan.amounts.my_input_total}")


# =============================================================================================
# taker: outputs (invariant 1, M7)
# =============================================================================================

def check_expected_output(tx: Any, by_spk: Mapping[bytes, list[int]], expected: Any) -> int:
    """One expected output is present exactly once: ours with at least the planned value, a
    maker's with exactly the agreed value (invariant 1); returns its index."""
    from electrum import bitcoin
    idxs = by_spk.get(bitcoin.address_to_script(expected.address), [])
    if len(idxs) != 1:
        raise UnsafeTransaction(f"{expected.label} appears {len(idxs)} times (expected once)")
    value = tx.outputs()[idxs[0]].value
    if expected.ours:
        if value < expected.value:
            raise UnsafeTransaction(f"{expected.label} is {value}, short of {expected.value}")
    elif value != expected.value:
        raise UnsafeTransaction(f"{expected.label} is {value}, agreed {expected.value}")
    return idxs[0]


def check_no_extra_output(tx: Any, used: set[int]) -> None:
    """No output beyond the expected ones (invariant 1: nothing else is paid)."""
    if len(used) != len(tx.outputs()):
        raise UnsafeTransaction(f"{len(tx.outputs()) - len(used)} unexpected output(s)")


def check_maker_change_not_dust(plan: "CoinjoinPlan") -> None:
    """No maker's change is below JoinMarket dust (M7)."""
    for m, a in zip(plan.makers, plan.amounts.makers, strict=True):
        if a.change < DUST_THRESHOLD:
            raise UnsafeTransaction(f"maker {m.nick} change {a.change} below dust")


# =============================================================================================
# taker: fees (M12)
# =============================================================================================

def check_miner_fee_positive(miner_fee: int) -> None:
    """The transaction pays a positive miner fee (a non-positive one means the amounts do not
    add up; invariant 1)."""
    if miner_fee <= 0:
        raise UnsafeTransaction(f"miner fee {miner_fee} is not positive")


def check_maker_gains(plan: "CoinjoinPlan", maker_in: Mapping[str, int],
                      maker_out: Mapping[str, int], base: int) -> None:
    """What each maker gains (its outputs minus its inputs) is within the user's limits, by the
    reference rule (M12)."""
    for m in plan.makers:
        gain = maker_out[m.nick] - maker_in[m.nick]
        if not plan.limits.allows(gain, base):
            raise FeeLimitExceeded(f"maker {m.nick} earns {gain}: above the limits", m.nick)


def check_miner_fee_rate(tx: Any, plan: "CoinjoinPlan", maker_utxos: Iterable[UtxoInfo],
                         n_ours: int, miner_fee: int) -> int:
    """The miner fee's rate over the size model of the real transaction is below
    ``absurd_fee_per_kb`` (M12: absurd txfees end up with the miners); returns the vsize."""
    ins: dict[str, int] = {plan.script_type: n_ours}
    for u in maker_utxos:
        t = input_type_from_spk(u.script_pubkey)
        ins[t] = ins.get(t, 0) + 1
    outs: dict[str, int] = {}
    for o in tx.outputs():
        t = script_type_of_scriptpubkey(o.scriptpubkey)
        outs[t] = outs.get(t, 0) + 1
    vsize = estimate_tx_vsize(ins, outs)
    if miner_fee * 1000 > vsize * plan.limits.absurd_fee_per_kb:
        raise FeeLimitExceeded(f"miner fee {miner_fee} for ~{vsize} vB is above the absurd rate")
    return vsize


def check_taker_cost(plan: "CoinjoinPlan", cost: int, vsize: int, base: int) -> None:
    """What we pay (our inputs minus our outputs) is within the user's limits and not above
    what the plan said (M12)."""
    allowed = cost_allowance(plan.limits, len(plan.makers), vsize, plan.feerate, plan.sweep, base)
    if cost > allowed:
        raise FeeLimitExceeded(f"we would pay {cost} sats in fees, limit {allowed}")
    if cost > plan.amounts.taker_cost:
        raise UnsafeTransaction(f"we would pay {cost}, planned {plan.amounts.taker_cost}")


# =============================================================================================
# taker: the whole check
# =============================================================================================

@dataclass
class _Inputs:
    my_total: int
    maker_in: dict[str, int]
    maker_infos: dict[str, tuple[UtxoInfo, "MakerInput"]]
    mine: set[str]


def _check_inputs(tx: Any, plan: "CoinjoinPlan", wallet: Any) -> _Inputs:
    maker_infos: dict[str, tuple[UtxoInfo, MakerInput]] = {}
    for m in plan.makers:
        for u in m.utxos:
            maker_infos[u.outpoint] = (u, m)
    mine = set(plan.my_inputs)
    seen: set[str] = set()
    my_total = 0
    maker_in: dict[str, int] = {m.nick: 0 for m in plan.makers}
    for txin in tx.inputs():
        op = txin.prevout.to_str()
        check_input_not_repeated(op, seen)
        check_input_known(op, mine, maker_infos)
        if op in mine:
            my_total += check_our_input(txin, op)
        else:
            u, m = maker_infos[op]
            maker_in[m.nick] += check_maker_input(txin, op, u)
        check_not_another_wallet_coin(wallet, txin, op, mine)
    check_no_input_missing(mine | set(maker_infos), seen)
    check_our_input_total(my_total, plan)
    return _Inputs(my_total, maker_in, maker_infos, mine)


def _check_outputs(tx: Any, plan: "CoinjoinPlan") -> tuple[int, dict[str, int]]:
    by_spk: dict[bytes, list[int]] = {}
    for idx, o in enumerate(tx.outputs()):
        by_spk.setdefault(o.scriptpubkey, []).append(idx)
    used: set[int] = set()
    my_out_total = 0
    maker_out: dict[str, int] = {m.nick: 0 for m in plan.makers}
    maker_for_addr = {a: m for m in plan.makers for a in (m.cj_addr, m.change_addr)}
    for e in plan.expected_outputs():
        idx = check_expected_output(tx, by_spk, e)
        value = tx.outputs()[idx].value
        if e.ours:
            my_out_total += value
        else:
            maker_out[maker_for_addr[e.address].nick] += value
        used.add(idx)
    check_no_extra_output(tx, used)
    check_maker_change_not_dust(plan)
    return my_out_total, maker_out


def check_before_signing(tx: Any, expected: "CoinjoinPlan", *, wallet: Any = None) -> None:
    """Money-safety invariant 1: raise :class:`UnsafeTransaction` unless signing ``tx`` is
    exactly what ``expected`` agreed (see the module docstring for the list).  Reads only the
    transaction and the plan (plus ``wallet.is_mine`` when a wallet is given)."""
    plan = expected
    ins = _check_inputs(tx, plan, wallet)
    my_out_total, maker_out = _check_outputs(tx, plan)
    total_in = ins.my_total + sum(ins.maker_in.values())
    miner_fee = total_in - sum(o.value for o in tx.outputs())
    check_miner_fee_positive(miner_fee)
    base = plan.amounts.my_input_total if plan.sweep else plan.cj_amount
    check_maker_gains(plan, ins.maker_in, maker_out, base)
    vsize = check_miner_fee_rate(tx, plan, (u for u, _m in ins.maker_infos.values()),
                                 len(ins.mine), miner_fee)
    check_taker_cost(plan, ins.my_total - my_out_total, vsize, base)


# =============================================================================================
# maker (invariant 5)
# =============================================================================================

def check_offer_fee(offer: Offer, cj_amount: int) -> int:
    """Our offer earns a non-negative net fee at this amount (T9; the reference rejects only a
    negative one); returns ``real_cjfee``."""
    real_cjfee = offer.real_cjfee(cj_amount)
    if real_cjfee - offer.txfee < 0:
        raise TakerTxRejected("T9", f"net fee {real_cjfee - offer.txfee} < 0 at amount "
                                    f"{cj_amount}")
    return real_cjfee


def check_no_repeated_input(tx: Any) -> set[str]:
    """No outpoint is spent twice (an invalid transaction, refused as ``malformed`` before the
    T4 checks count our inputs; invariant 5); returns the outpoints."""
    seen: dict[str, int] = {}
    for txin in tx.inputs():
        op = txin.prevout.to_str()
        seen[op] = seen.get(op, 0) + 1
    dup = [op for op, n in seen.items() if n > 1]
    if dup:
        raise TakerTxRejected("malformed", f"input {dup[0]} spent twice")
    return set(seen)


def check_offered_inputs_spent(spent: set[str], my_ops: set[str]) -> None:
    """Every utxo we offered in ``!ioauth`` is an input (T4)."""
    missing = my_ops - spent
    if missing:
        raise TakerTxRejected("T4", f"our offered utxo(s) not spent: {sorted(missing)}")


def check_no_unoffered_coin(tx: Any, my_ops: set[str], wallet: Any) -> None:
    """No other coin of our wallet is an input (T4: a taker must not get a signature over coins
    we never offered)."""
    for txin in tx.inputs():
        op = txin.prevout.to_str()
        if op not in my_ops:
            addr = wallet.adb.get_txin_address(txin)
            if addr is not None and wallet.is_mine(addr):
                raise TakerTxRejected("T4", f"the tx spends our coin {op}, which we did not offer")


def check_maker_inputs(tx: Any, my_ops: set[str], wallet: Any) -> None:
    """The maker's input checks in their order: no input twice, every offered utxo spent, no
    unoffered coin of ours (T4)."""
    spent = check_no_repeated_input(tx)
    check_offered_inputs_spent(spent, my_ops)
    check_no_unoffered_coin(tx, my_ops, wallet)


def check_coinjoin_output(tx: Any, cj_addr: str, cj_amount: int) -> None:
    """Our coinjoin address receives exactly one output (T1) worth at least the amount (T2)."""
    from electrum import bitcoin
    spk = bitcoin.address_to_script(cj_addr)
    outs = [o.value for o in tx.outputs() if o.scriptpubkey == spk]
    if len(outs) != 1:
        raise TakerTxRejected("T1", f"our coinjoin output appears {len(outs)} times")
    if outs[0] < cj_amount:
        raise TakerTxRejected("T2", f"our coinjoin output is {outs[0]} < {cj_amount}")


def check_change_output(tx: Any, change_addr: str, expected_change: int) -> None:
    """Our change address receives exactly one output worth at least
    ``Σour_in − cj_amount − txfee + real_cjfee`` (T3; both sides compute it with
    :func:`jmcore.offers.maker_change`)."""
    from electrum import bitcoin
    spk = bitcoin.address_to_script(change_addr)
    outs = [o.value for o in tx.outputs() if o.scriptpubkey == spk]
    if len(outs) != 1:
        raise TakerTxRejected("T3", f"our change output appears {len(outs)} times")
    if outs[0] < expected_change:
        raise TakerTxRejected("T3", f"our change is {outs[0]} < {expected_change}")
