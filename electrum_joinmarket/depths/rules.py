"""The depth rules, as pure functions (no Electrum objects): which depth each of our outputs of
one transaction belongs to, given the depths of our inputs.

JoinMarket's mixdepth rules, applied to a standard Electrum wallet:

* a coin that arrives from outside (no input of the transaction is ours) goes to the *deposit
  depth* (0 unless the user chose another);
* in a coinjoin, our output of the coinjoin amount goes to the *next* depth, wrapping from the
  last depth to 0 (Ref ``(mixdepth + 1) % (max_mixdepth + 1)``); every other output of ours
  (change) stays in the depth that paid;
* in any other spend of ours (an ordinary Electrum payment), our outputs (change) stay in the
  depth that paid;
* a transaction whose inputs come from several depths *merged* them: its outputs go to the
  lowest of those depths (the least mixed history they now carry) and the merge is reported.

A transaction is a coinjoin when the plugin recorded it as one (``known_cj_amount``), or,
without a record (wallet restored from seed), when it has inputs that are not ours and our
output's value appears at least twice among its outputs, once at least in an output that is not
ours (JoinMarket's equal-amount outputs).  An ordinary Electrum payment has no foreign input.

Invariant: the result depends only on the transaction, the input depths and the recorded
coinjoin amount — replaying the same history always gives the same depths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

__all__ = ["DEFAULT_DEPTH_COUNT", "MAX_DEPTH_COUNT", "CoinDepth", "TxFacts", "OutputDepth",
           "classify_outputs", "next_depth", "looks_like_coinjoin"]

DEFAULT_DEPTH_COUNT = 5
MAX_DEPTH_COUNT = 16

# why a coin is in its depth (shown to the user)
DEPOSIT = "deposit"          # arrived from outside
CJ_OUT = "coinjoin"          # the equal-amount output of a coinjoin
CJ_CHANGE = "cj-change"      # our change of a coinjoin
CHANGE = "change"            # change of an ordinary spend
MERGED = "merged"            # output of a transaction that merged depths
ADDRESS = "reserved"         # paid to an address the plugin reserved for the depth
USER = "user"                # the user put it there


@dataclass(frozen=True)
class CoinDepth:
    """Where one of our coins sits: its depth, how many coinjoins its history went through, and
    why (one of the kinds above)."""
    depth: int
    coinjoins: int = 0
    kind: str = DEPOSIT


@dataclass(frozen=True)
class TxFacts:
    """What the rules need to know about one transaction of the wallet.

    ``our_inputs``: outpoints ("txid:n") of our coins it spends; ``n_inputs``: all its inputs;
    ``our_outputs``: {output index: value} of outputs paying us; ``output_values``: every output's
    value, in order."""
    txid: str
    our_inputs: Sequence[str]
    n_inputs: int
    our_outputs: Mapping[int, int]
    output_values: Sequence[int]


@dataclass
class OutputDepth:
    """Result for one transaction: depth of each of our outputs, and the merge it made if any."""
    outputs: dict[int, CoinDepth] = field(default_factory=dict)
    merged_depths: tuple[int, ...] = ()
    cj_amount: Optional[int] = None       # the coinjoin amount if it is (recognised as) one


def next_depth(depth: int, count: int) -> int:
    """The depth a coinjoin output of ``depth`` goes to (wrapping to 0 after the last)."""
    return (depth + 1) % count


def looks_like_coinjoin(facts: TxFacts) -> Optional[int]:
    """The coinjoin amount if ``facts`` has the shape of a JoinMarket coinjoin we took part in
    (foreign inputs, one of our outputs equal in value to an output that is not ours), else
    None."""
    if facts.n_inputs <= len(facts.our_inputs) or not facts.our_inputs:
        return None
    values = list(facts.output_values)
    for _n, value in sorted(facts.our_outputs.items(), key=lambda kv: -kv[1]):
        others = sum(1 for i, v in enumerate(values) if v == value and i not in facts.our_outputs)
        if others >= 1:
            return value
    return None


def classify_outputs(facts: TxFacts, inputs: Mapping[str, CoinDepth], *, count: int,
                     deposit_depth: int = 0,
                     known_cj_amount: Optional[int] = None) -> OutputDepth:
    """Depths of the outputs of ``facts`` that pay us (see module docstring).

    ``inputs`` maps our spent outpoints to their depth; an input of ours with no known depth
    (history before the wallet's first transaction we saw) counts as a deposit."""
    if count < 1:
        raise ValueError("depth count must be at least 1")
    result = OutputDepth()
    if not facts.our_inputs:
        for n in facts.our_outputs:
            result.outputs[n] = CoinDepth(deposit_depth % count, 0, DEPOSIT)
        return result
    spent = [inputs.get(op) or CoinDepth(deposit_depth % count, 0, DEPOSIT)
             for op in facts.our_inputs]
    depths = sorted({c.depth for c in spent})
    depth = depths[0]
    history = max(c.coinjoins for c in spent)
    if len(depths) > 1:
        result.merged_depths = tuple(depths)
    cj_amount = known_cj_amount if known_cj_amount else looks_like_coinjoin(facts)
    result.cj_amount = cj_amount
    cj_out_taken = False
    for n, value in sorted(facts.our_outputs.items()):
        if cj_amount is not None and value == cj_amount and not cj_out_taken:
            # one equal output per party: a second one of ours at the same value is change
            cj_out_taken = True
            result.outputs[n] = CoinDepth(next_depth(depth, count), history + 1,
                                          MERGED if result.merged_depths else CJ_OUT)
        elif result.merged_depths:
            result.outputs[n] = CoinDepth(depth, history, MERGED)
        else:
            result.outputs[n] = CoinDepth(depth, history,
                                          CJ_CHANGE if cj_amount is not None else CHANGE)
    return result
