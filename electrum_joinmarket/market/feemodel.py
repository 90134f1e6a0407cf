"""The coinjoin miner-fee model and amount solvers (docs/protocol.md §8.1, §8.3).

Everything here is pure integer arithmetic except :func:`fetch_feerate`, which asks Electrum's
network for a fee estimate.  It imports Electrum only lazily (for the network and the regtest
switch), so the arithmetic can be tested without a network.

Invariants (each pinned by ``tests/plugin/test_txbuild.py``):

* **Size model = the reference's** (``jmbitcoin.estimate_tx_size``): inputs p2wpkh 41 non-witness
  + 108 witness bytes, p2sh-p2wpkh 64 + 108, p2pkh 148 + 0; outputs p2wpkh 31, p2sh(-p2wpkh) 32,
  p2pkh 34, p2wsh/p2tr 43; plus 10 non-witness bytes (version, counts, locktime) and 2 witness
  bytes (marker, flag) when any input is segwit.  ``vsize = ceil(nw + w/4)`` and
  ``fee = floor(vsize * rate / 1000)`` (the reference's ``int(...)``), rate in sat/kvB.
* **Fee rates are bounded**: a rate is never below Electrum's relay floor (1 000 sat/kvB) and a
  rate above ``absurd_fee_per_kb`` (default 350 000) raises :class:`AbsurdFeeError` instead of
  being used — a lying server must not make us burn coins.
* **Amount split = the reference's** (both sides compute the same numbers, or the maker refuses):
  maker change = Σmaker_in − cj_amount − txfee + real_cjfee; taker's miner-fee share
  ``my_txfee = max(total_fee − Σmaker txfee, 0)``; taker change = Σmy_in − cj_amount −
  Σreal_cjfee − my_txfee, dropped to the miners when ≤ 2 730 (bitcoin dust); a maker change
  below 27 300 (JoinMarket dust) is an error naming that maker (M7), never silently accepted.
* Sweeps use :func:`jmcore.offers.calc_zero_change_cj_amount` and leave no taker change.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping, Optional, Sequence

from electrum_joinmarket.errors import Failure, JoinMarketError
from jmcore.constants import (
    ABSURD_FEE_PER_KB,
    BITCOIN_DUST_THRESHOLD,
    DUST_THRESHOLD,
    MAX_SWEEP_FEE_CHANGE,
    TX_FEES_BLOCKS,
    TX_FEES_FACTOR,
)
from jmcore.offers import Offer, calc_zero_change_cj_amount, maker_change

__all__ = [
    "INPUT_SIZES", "OUTPUT_SIZES", "MIN_RELAY_FEERATE", "FeeError", "AbsurdFeeError",
    "FeeRateAboveCap", "DEFAULT_MAX_FEERATE",
    "NotEnoughFunds", "DustMakerChange", "SweepFeeChanged", "normalize_script_type",
    "script_type_of_scriptpubkey", "estimate_tx_size", "estimate_tx_vsize", "estimate_tx_fee",
    "initial_fee_estimate", "sweep_fee_estimate", "randomise_feerate", "check_feerate",
    "feerate_from_estimates", "fetch_feerate", "MakerAmounts", "CoinjoinAmounts",
    "solve_non_sweep", "solve_sweep_cj_amount", "solve_sweep",
]

#: per input type: (non-witness bytes, witness bytes)  — reference ``estimate_tx_size``
INPUT_SIZES: Mapping[str, tuple[int, int]] = {
    "p2wpkh": (41, 108),
    "p2sh-p2wpkh": (64, 108),
    "p2pkh": (148, 0),
}
#: per output type: bytes
OUTPUT_SIZES: Mapping[str, int] = {
    "p2wpkh": 31,
    "p2sh-p2wpkh": 32,
    "p2sh": 32,
    "p2pkh": 34,
    "p2wsh": 43,
    "p2tr": 43,
}
_BASE_NONWITNESS = 10   # version 4, input count 1, output count 1, locktime 4
_SEGWIT_MARKER_FLAG = 2

MIN_RELAY_FEERATE = 1000  # sat/kvB: Electrum's FEERATE_DEFAULT_RELAY, the relay floor

_ALIASES = {
    "p2wpkh-p2sh": "p2sh-p2wpkh",   # Electrum's txin_type name
    "p2sh_p2wpkh": "p2sh-p2wpkh",
    "segwit": "p2wpkh",
}


class FeeError(JoinMarketError, ValueError):
    """A fee or amount computation cannot produce a safe coinjoin."""


class AbsurdFeeError(FeeError):
    """The fee rate is above ``absurd_fee_per_kb``: abort rather than overpay."""


class FeeRateAboveCap(FeeError):
    """The fee rate the coinjoin would use is above the user's cap (``max_feerate``)."""

    failure = Failure.FEE_LIMITS

    def __init__(self, feerate: int, cap: int):
        super().__init__(f"fee rate {feerate} sat/kvB is above the cap {cap} sat/kvB")
        self.feerate, self.cap = int(feerate), int(cap)


#: the default user cap on a coinjoin's fee rate, sat/kvB (100 sat/vB; the absurd limit is 350)
DEFAULT_MAX_FEERATE = 100_000


class NotEnoughFunds(FeeError):
    """The taker's inputs do not cover the coinjoin amount plus fees."""

    failure = Failure.COINS


class DustMakerChange(FeeError):
    """A maker's change would be below JoinMarket dust (27 300 sats): drop that maker (M7)."""

    failure = Failure.MAKERS

    def __init__(self, nick: Optional[str], change: int):
        super().__init__(f"maker {nick!r} would get change {change} < {DUST_THRESHOLD}")
        self.nick = nick
        self.change = change


class SweepFeeChanged(FeeError):
    """The real-size sweep fee left the ``1 ± max_sweep_fee_change`` band of the estimate."""

    failure = Failure.MAKERS


def normalize_script_type(script_type: str) -> str:
    """Map Electrum/JoinMarket spellings to the size model's keys (``p2wpkh-p2sh`` →
    ``p2sh-p2wpkh``)."""
    t = _ALIASES.get(script_type, script_type)
    if t not in INPUT_SIZES and t not in OUTPUT_SIZES:
        raise FeeError(f"unknown script type {script_type!r}")
    return t


def script_type_of_scriptpubkey(spk: bytes) -> str:
    """Output type of a scriptPubKey for the size model (p2sh is counted as 32 bytes, the size
    of any p2sh output).  Pure byte matching, no Electrum import."""
    n = len(spk)
    if n == 22 and spk[0] == 0x00 and spk[1] == 0x14:
        return "p2wpkh"
    if n == 34 and spk[0] == 0x00 and spk[1] == 0x20:
        return "p2wsh"
    if n == 34 and spk[0] == 0x51 and spk[1] == 0x20:
        return "p2tr"
    if n == 23 and spk[0] == 0xa9 and spk[1] == 0x14 and spk[22] == 0x87:
        return "p2sh"
    if n == 25 and spk[:3] == b"\x76\xa9\x14" and spk[23:] == b"\x88\xac":
        return "p2pkh"
    raise FeeError(f"unsupported output script {spk.hex()[:80]}")


def _counts(d: Mapping[str, int], table: Mapping[str, Any], what: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, n in d.items():
        t = normalize_script_type(k)
        if t not in table:
            raise FeeError(f"no {what} size for {k!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise FeeError(f"bad {what} count {n!r} for {k!r}")
        out[t] = out.get(t, 0) + n
    return out


def estimate_tx_size(n_inputs_by_type: Mapping[str, int],
                     n_outputs_by_type: Mapping[str, int]) -> tuple[int, int]:
    """``(witness_bytes, nonwitness_bytes)`` of a transaction, by the reference size model."""
    ins = _counts(n_inputs_by_type, INPUT_SIZES, "input")
    outs = _counts(n_outputs_by_type, OUTPUT_SIZES, "output")
    nw = _BASE_NONWITNESS
    w = 0
    for t, n in ins.items():
        nw += INPUT_SIZES[t][0] * n
        w += INPUT_SIZES[t][1] * n
    if w:
        w += _SEGWIT_MARKER_FLAG
    for t, n in outs.items():
        nw += OUTPUT_SIZES[t] * n
    return w, nw


def estimate_tx_vsize(n_inputs_by_type: Mapping[str, int],
                      n_outputs_by_type: Mapping[str, int]) -> int:
    """``ceil(nonwitness + witness/4)`` (exact integer arithmetic)."""
    w, nw = estimate_tx_size(n_inputs_by_type, n_outputs_by_type)
    return nw + (w + 3) // 4


def estimate_tx_fee(n_inputs_by_type: Mapping[str, int], n_outputs_by_type: Mapping[str, int],
                    feerate_sat_per_kvb: int) -> int:
    """Miner fee in sats: ``floor(vsize * feerate / 1000)`` (reference ``estimate_tx_fee``)."""
    if isinstance(feerate_sat_per_kvb, bool) or not isinstance(feerate_sat_per_kvb, int) \
            or feerate_sat_per_kvb < 0:
        raise FeeError(f"fee rate must be a non-negative int sat/kvB, got {feerate_sat_per_kvb!r}")
    return estimate_tx_vsize(n_inputs_by_type, n_outputs_by_type) * feerate_sat_per_kvb // 1000


def initial_fee_estimate(n_makers: int, feerate: int, my_type: str = "p2wpkh",
                         cj_out_type: Optional[str] = None) -> int:
    """Non-sweep fee estimate used to select the taker's inputs before the makers answer
    (§8.3): ``fee(3 in, 2 out)·(n−1) + fee(3 in, 2 out with our cj output type)``."""
    if n_makers < 1:
        raise FeeError("need at least one maker")
    my_type = normalize_script_type(my_type)
    cj_out_type = normalize_script_type(cj_out_type or my_type)
    one = estimate_tx_fee({my_type: 3}, {my_type: 2}, feerate)
    outs: dict[str, int] = {my_type: 1}
    outs[cj_out_type] = outs.get(cj_out_type, 0) + 1
    last = estimate_tx_fee({my_type: 3}, outs, feerate)
    return one * (n_makers - 1) + last


def sweep_fee_estimate(n_my_inputs: int, n_makers: int, feerate: int,
                       my_type: str = "p2wpkh") -> int:
    """Sweep fee estimate before the makers answer (§8.3): ``fee(#mine + 3n in, 2n + 1 out)``."""
    my_type = normalize_script_type(my_type)
    return estimate_tx_fee({my_type: n_my_inputs + 3 * n_makers}, {my_type: 2 * n_makers + 1},
                           feerate)


# ----------------------------------------------------------------------------------------
# fee rate
# ----------------------------------------------------------------------------------------

def randomise_feerate(feerate: int, tx_fees_factor: float = TX_FEES_FACTOR,
                      rng: Optional[random.Random] = None) -> int:
    """Randomise a fee rate *upward* by up to ``tx_fees_factor`` (so that our fee does not
    fingerprint the taker; never below the estimate).  ``rng`` is injectable for tests."""
    if feerate < 0:
        raise FeeError("negative fee rate")
    factor = abs(float(tx_fees_factor))
    if factor == 0:
        return int(feerate)
    r = rng if rng is not None else random.SystemRandom()
    return int(r.uniform(feerate, feerate * (1 + factor)))


def check_feerate(feerate: int, absurd_fee_per_kb: int = ABSURD_FEE_PER_KB) -> int:
    """Return ``feerate`` lifted to the relay floor; raise :class:`AbsurdFeeError` above
    ``absurd_fee_per_kb``."""
    if feerate > absurd_fee_per_kb:
        raise AbsurdFeeError(f"fee rate {feerate} sat/kvB is above the absurd limit "
                             f"{absurd_fee_per_kb} sat/kvB: aborting")
    return max(int(feerate), MIN_RELAY_FEERATE)


def _is_regtest() -> bool:
    try:
        from electrum import constants
    except Exception:  # pragma: no cover - electrum always present in the plugin
        return False
    return constants.net is constants.BitcoinRegtest


def feerate_from_estimates(estimates: Mapping[int, int], tx_fees: int = TX_FEES_BLOCKS) -> \
        Optional[int]:
    """Pick a sat/kvB rate for a ``tx_fees``-block target from Electrum's ETA estimates
    (``{num_blocks: sat/kvB}``; Electrum only keeps targets 2, 5, 10, 25, 144, 1008).  Uses the
    largest target not above ``tx_fees`` (a faster, i.e. not cheaper, rate), else the nearest
    one above.  ``None`` when there are no estimates."""
    usable = {int(k): int(v) for k, v in estimates.items() if v is not None and int(v) > 0}
    if not usable:
        return None
    below = [k for k in usable if k <= tx_fees]
    k = max(below) if below else min(usable)
    return usable[k]


async def fetch_feerate(network: Any, *, tx_fees: int = TX_FEES_BLOCKS,
                        fallback_feerate: Optional[int] = None,
                        tx_fees_factor: float = TX_FEES_FACTOR,
                        absurd_fee_per_kb: int = ABSURD_FEE_PER_KB,
                        max_feerate: Optional[int] = None,
                        rng: Optional[random.Random] = None) -> int:
    """The fee rate (sat/kvB) for a coinjoin, as the reference computes it (§8.3).

    * ``tx_fees > 1000`` is itself a rate in sat/kvB (reference convention);
    * otherwise ask the server for ``estimatefee(tx_fees)`` (``network.interface.get_estimatefee``),
      then fall back to Electrum's cached ETA estimates, then to ``fallback_feerate`` (regtest has
      no estimates, and Electrum's own regtest fallback of 150 000 sat/kvB is never used);
    * ``max_feerate`` (the user's cap): a rate above it raises :class:`FeeRateAboveCap` — a
      server can claim any estimate, and it is never taken silently above what the user allows;
    * randomise upward by up to ``tx_fees_factor`` (never above ``max_feerate``); floor at the
      relay fee; abort with :class:`AbsurdFeeError` above ``absurd_fee_per_kb``.

    Raises :class:`FeeError` when no rate is available at all.
    """
    base: Optional[int] = None
    if tx_fees > 1000:
        base = int(tx_fees)
    else:
        if not _is_regtest() and network is not None:
            interface = getattr(network, "interface", None)
            if interface is not None:
                try:
                    got = await interface.get_estimatefee(tx_fees)
                    if got is not None and int(got) > 0:
                        base = int(got)
                except Exception:
                    base = None
            if base is None:
                fe = getattr(network, "fee_estimates", None)
                data = fe.get_data() if fe is not None else {}
                base = feerate_from_estimates(data, tx_fees)
        if base is None:
            base = fallback_feerate
    if base is None:
        raise FeeError("no fee estimate available and no fallback fee rate configured")
    check_feerate(int(base), absurd_fee_per_kb)
    if max_feerate is not None and int(base) > max_feerate:
        raise FeeRateAboveCap(int(base), max_feerate)
    rate = randomise_feerate(int(base), tx_fees_factor, rng)
    if max_feerate is not None:
        rate = min(rate, int(max_feerate))
    return check_feerate(rate, absurd_fee_per_kb)


# ----------------------------------------------------------------------------------------
# amount solvers
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MakerAmounts:
    """One maker's share: what both sides compute from the offer and the maker's inputs."""
    nick: Optional[str]
    input_total: int
    real_cjfee: int
    txfee: int
    change: int

    @property
    def net_fee(self) -> int:
        """What the maker earns (``real_cjfee − txfee``): its outputs minus its inputs."""
        return self.real_cjfee - self.txfee


@dataclass(frozen=True)
class CoinjoinAmounts:
    """The whole split, to the satoshi.

    ``my_change`` is 0 when there is no taker change output (sweep, or dropped dust; then
    ``dropped_change`` holds the sats given to the miners).  ``miner_fee`` is the fee the
    transaction really pays (Σin − Σout).
    """
    cj_amount: int
    my_input_total: int
    makers: tuple[MakerAmounts, ...]
    total_txfee: int           # the size-model estimate the split was made for
    maker_txfee_total: int
    total_cjfee: int
    my_txfee: int
    my_change: int
    dropped_change: int
    sweep: bool

    @property
    def miner_fee(self) -> int:
        inputs = self.my_input_total + sum(m.input_total for m in self.makers)
        outputs = self.cj_amount * (len(self.makers) + 1) + self.my_change + \
            sum(m.change for m in self.makers)
        return inputs - outputs

    @property
    def taker_cost(self) -> int:
        """What the taker's wallet balance drops by: Σreal_cjfee + its miner-fee share."""
        return self.my_input_total - self.cj_amount - self.my_change


def _maker_amounts(cj_amount: int, makers: Iterable[tuple[Offer, int]]) -> list[MakerAmounts]:
    out = []
    for offer, input_total in makers:
        if not isinstance(offer, Offer):
            raise FeeError("maker offer must be a jmcore.offers.Offer")
        real = offer.real_cjfee(cj_amount)
        change = maker_change(input_total, cj_amount, offer.txfee, real)
        if change < DUST_THRESHOLD:
            raise DustMakerChange(offer.counterparty, change)
        out.append(MakerAmounts(offer.counterparty, input_total, real, offer.txfee, change))
    return out


def solve_non_sweep(cj_amount: int, my_input_total: int,
                    makers: Sequence[tuple[Offer, int]], total_txfee: int) -> CoinjoinAmounts:
    """Non-sweep split (§8.3, reference ``Taker.receive_utxos``).

    ``makers`` is ``[(offer, Σmaker_inputs), ...]``; ``total_txfee`` the real-size estimate.
    Raises :class:`DustMakerChange` (M7) and :class:`NotEnoughFunds` (taker change < −1, the
    reference's tolerance; a change of −1 or more is dropped like dust)."""
    if cj_amount <= 0:
        raise FeeError("cj_amount must be positive")
    ms = _maker_amounts(cj_amount, makers)
    maker_txfee_total = sum(m.txfee for m in ms)
    total_cjfee = sum(m.real_cjfee for m in ms)
    my_txfee = max(total_txfee - maker_txfee_total, 0)
    my_change = my_input_total - cj_amount - total_cjfee - my_txfee
    if my_change < -1:
        raise NotEnoughFunds(f"our inputs ({my_input_total}) do not cover cj amount {cj_amount} "
                             f"+ coinjoin fees {total_cjfee} + our miner fee {my_txfee}")
    dropped = 0
    if my_change <= BITCOIN_DUST_THRESHOLD:
        dropped, my_change = my_change, 0
    return CoinjoinAmounts(cj_amount, my_input_total, tuple(ms), total_txfee, maker_txfee_total,
                           total_cjfee, my_txfee, my_change, dropped, False)


def solve_sweep_cj_amount(offers: Sequence[Offer], my_input_total: int,
                          est_total_txfee: int) -> int:
    """The sweep coinjoin amount sent in ``!fill`` (jmcore ``calc_zero_change_cj_amount``)."""
    cj_amount, _ = calc_zero_change_cj_amount(offers, my_input_total, est_total_txfee)
    if cj_amount <= 0:
        raise NotEnoughFunds("sweep amount would not be positive")
    return cj_amount


def solve_sweep(cj_amount: int, my_input_total: int, makers: Sequence[tuple[Offer, int]],
                est_total_txfee: int, real_total_txfee: int,
                max_sweep_fee_change: float = MAX_SWEEP_FEE_CHANGE) -> CoinjoinAmounts:
    """Sweep split after ``!ioauth``: ``cj_amount`` is fixed (it was in ``!fill``), the taker has
    no change, and its miner-fee share is what remains:
    ``my_txfee = Σmy_in − cj_amount − Σreal_cjfee``.

    The real-size fee (``real_total_txfee``) must stay within ``1 ± max_sweep_fee_change`` of
    the estimate the amount was solved for (reference), and the fee the transaction really
    pays must be positive.  Raises :class:`SweepFeeChanged`, :class:`NotEnoughFunds`,
    :class:`DustMakerChange`."""
    lo = (1 - max_sweep_fee_change) * est_total_txfee
    hi = (1 + max_sweep_fee_change) * est_total_txfee
    if not lo <= real_total_txfee <= hi:
        raise SweepFeeChanged(f"real fee {real_total_txfee} outside [{lo:.0f}, {hi:.0f}] of the "
                              f"estimate {est_total_txfee}")
    ms = _maker_amounts(cj_amount, makers)
    maker_txfee_total = sum(m.txfee for m in ms)
    total_cjfee = sum(m.real_cjfee for m in ms)
    my_txfee = my_input_total - cj_amount - total_cjfee
    if my_txfee < 0:
        raise NotEnoughFunds(f"sweep: inputs {my_input_total} < cj amount {cj_amount} + "
                             f"coinjoin fees {total_cjfee}")
    res = CoinjoinAmounts(cj_amount, my_input_total, tuple(ms), real_total_txfee,
                          maker_txfee_total, total_cjfee, my_txfee, 0, 0, True)
    if res.miner_fee <= 0:
        raise NotEnoughFunds(f"sweep would pay miner fee {res.miner_fee}")
    return res


def rel_limit(cj_amount: int, max_fee_rel: Any) -> Decimal:
    """``cj_amount * max_fee_rel`` as a Decimal (helper for limit messages)."""
    return Decimal(cj_amount) * Decimal(str(max_fee_rel))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def vsize_fee_ceiling(vsize: int, feerate: int) -> int:
    """Largest fee a ``vsize``-vbyte tx can pay at ``feerate`` sat/kvB (ceil)."""
    return _ceil_div(vsize * feerate, 1000)

