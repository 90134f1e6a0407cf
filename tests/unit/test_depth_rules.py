"""The depth rules on hand-made transaction facts (no Electrum objects)."""
from __future__ import annotations

import pytest

from electrum_joinmarket.depths import rules
from electrum_joinmarket.depths.rules import CoinDepth, TxFacts, classify_outputs, looks_like_coinjoin


def facts(our_inputs=(), n_inputs=None, our_outputs=None, values=()):
    our_outputs = our_outputs or {}
    return TxFacts("aa" * 32, tuple(our_inputs),
                   len(our_inputs) if n_inputs is None else n_inputs, our_outputs, tuple(values))


def test_deposit_goes_to_deposit_depth():
    f = facts(our_outputs={1: 5000}, values=(7000, 5000))
    assert classify_outputs(f, {}, count=5).outputs == {1: CoinDepth(0, 0, rules.DEPOSIT)}
    assert classify_outputs(f, {}, count=5, deposit_depth=3).outputs[1].depth == 3


def test_ordinary_spend_change_stays_in_the_paying_depth():
    f = facts(our_inputs=["i:0"], our_outputs={0: 3000}, values=(3000, 9000))
    res = classify_outputs(f, {"i:0": CoinDepth(2, 1, rules.CJ_OUT)}, count=5)
    assert res.outputs == {0: CoinDepth(2, 1, rules.CHANGE)}
    assert res.cj_amount is None and res.merged_depths == ()


def test_coinjoin_output_moves_to_next_depth_and_change_stays():
    # 2 foreign inputs, three equal outputs of 1_000_000, our change 123_456
    f = facts(our_inputs=["i:0"], n_inputs=3, our_outputs={0: 1_000_000, 3: 123_456},
              values=(1_000_000, 1_000_000, 1_000_000, 123_456, 99_000))
    res = classify_outputs(f, {"i:0": CoinDepth(1, 2, rules.CJ_OUT)}, count=5)
    assert res.cj_amount == 1_000_000
    assert res.outputs == {0: CoinDepth(2, 3, rules.CJ_OUT), 3: CoinDepth(1, 2, rules.CJ_CHANGE)}


def test_coinjoin_output_of_the_last_depth_wraps_to_zero():
    f = facts(our_inputs=["i:0"], n_inputs=2, our_outputs={1: 500_000},
              values=(500_000, 500_000))
    res = classify_outputs(f, {"i:0": CoinDepth(4, 0, rules.DEPOSIT)}, count=5)
    assert res.outputs[1].depth == 0


def test_recorded_amount_wins_over_the_pattern():
    # our change happens to equal a foreign output; the recorded amount says which is the cj out
    f = facts(our_inputs=["i:0"], n_inputs=2, our_outputs={0: 700, 1: 400},
              values=(700, 400, 400, 700))
    res = classify_outputs(f, {"i:0": CoinDepth(0)}, count=5, known_cj_amount=400)
    assert res.outputs[1].depth == 1 and res.outputs[0].depth == 0


def test_no_foreign_input_is_not_a_coinjoin_even_with_equal_outputs():
    f = facts(our_inputs=["i:0"], our_outputs={0: 1000}, values=(1000, 1000))
    assert looks_like_coinjoin(f) is None
    assert classify_outputs(f, {"i:0": CoinDepth(3)}, count=5).outputs[0] == CoinDepth(3, 0, rules.CHANGE)


def test_two_outputs_of_ours_at_the_cj_amount_only_one_moves():
    f = facts(our_inputs=["i:0"], n_inputs=2, our_outputs={0: 1000, 1: 1000},
              values=(1000, 1000, 1000))
    res = classify_outputs(f, {"i:0": CoinDepth(0)}, count=5)
    assert sorted(cd.depth for cd in res.outputs.values()) == [0, 1]


def test_merge_of_depths_goes_to_the_lowest_and_is_reported():
    f = facts(our_inputs=["a:0", "b:1"], our_outputs={0: 5000}, values=(5000, 8000))
    res = classify_outputs(f, {"a:0": CoinDepth(3, 2), "b:1": CoinDepth(1, 0)}, count=5)
    assert res.merged_depths == (1, 3)
    assert res.outputs[0] == CoinDepth(1, 2, rules.MERGED)


def test_unknown_input_counts_as_deposit_depth():
    f = facts(our_inputs=["x:0"], our_outputs={0: 10}, values=(10, 20))
    assert classify_outputs(f, {}, count=5, deposit_depth=2).outputs[0].depth == 2


def test_bad_count_refused():
    with pytest.raises(ValueError):
        classify_outputs(facts(), {}, count=0)
