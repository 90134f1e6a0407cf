"""Taker state that must survive a crash (invariant 2): coins frozen for a coinjoin are recorded
in the wallet's plugin storage, so a session opened after Electrum was killed mid-run releases
exactly those coins — and not a coin the user froze."""
from __future__ import annotations

import pytest

from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.protocol.commitments import CommitmentStore
from electrum_joinmarket.taker.taker import FROZEN_KEY, Taker, TakerConfig, release_stale_freezes

pytestmark = pytest.mark.stack


def test_frozen_coins_released_after_a_crash(electrum_node, make_wallet):
    w = make_wallet(fund=[1_000_000, 2_000_000, 3_000_000])
    coins = sorted(w.get_utxos(), key=lambda c: c.value_sats())
    user_frozen = coins[0].prevout.to_str()
    w.set_frozen_state_of_coins([user_frozen], True)
    storage: dict = {}
    taker = Taker(wallet=w, network=electrum_node.network, commitments=CommitmentStore({}),
                  config=TakerConfig(amount=100_000, destination=w.get_unused_address(),
                                     limits=FeeLimits(20_000, "0.004")),
                  password=None, daemon_host="127.0.0.1", daemon_port=1, chan_configs=[],
                  net_name="regtest", frozen_store=storage)
    taker._freeze(coins[1:])                          # the run froze two coins, then "crashed"
    ours = sorted(c.prevout.to_str() for c in coins[1:])
    assert storage[FROZEN_KEY] == ours
    assert all(w.is_frozen_coin(c) for c in coins)
    assert release_stale_freezes(w, storage) == ours
    assert FROZEN_KEY not in storage
    assert [w.is_frozen_coin(c) for c in coins] == [True, False, False]   # the user's stays
    assert release_stale_freezes(w, storage) == []    # idempotent


def test_unfreeze_clears_the_record(electrum_node, make_wallet):
    w = make_wallet(fund=[1_500_000])
    storage: dict = {}
    taker = Taker(wallet=w, network=electrum_node.network, commitments=CommitmentStore({}),
                  config=TakerConfig(amount=100_000, destination=w.get_unused_address(),
                                     limits=FeeLimits(20_000, "0.004")),
                  password=None, daemon_host="127.0.0.1", daemon_port=1, chan_configs=[],
                  net_name="regtest", frozen_store=storage)
    taker._freeze(w.get_utxos())
    taker._unfreeze()
    assert FROZEN_KEY not in storage and not any(w.is_frozen_coin(c) for c in w.get_utxos())


def _run_taker(electrum_node, w, config, **kw):
    events: list = []
    taker = Taker(wallet=w, network=electrum_node.network, commitments=CommitmentStore({}),
                  config=config, password=kw.pop("password", None), daemon_host="127.0.0.1",
                  daemon_port=kw.pop("port", 1), chan_configs=[{"type": "irc"}],
                  net_name="regtest", frozen_store={}, progress=events.append)
    return electrum_node.run(taker.run(), timeout=60), events


def test_failures_carry_their_kind_and_the_hint_follows_it(electrum_node, make_wallet):
    """An outcome says *why* it failed as a Failure kind (the GUI's hint is chosen by it, never
    by the message's words) and every progress event names a TakerStage."""
    from electrum_joinmarket.errors import Failure
    from electrum_joinmarket.gui.model import FAILURE_HINTS, failure_hint
    from electrum_joinmarket.stages import OutcomeStatus, TakerStage
    w = make_wallet(fund=[1_500_000], confirmations=5)    # old enough for PoDLE: past the early check
    limits = FeeLimits(20_000, "0.004")
    cases = [
        (TakerConfig(amount=100_000, destination="bcrt1qnotanaddress", limits=limits), Failure.INPUT),
        (TakerConfig(amount=9_000_000, destination=w.get_unused_address(), limits=limits), Failure.COINS),
        (TakerConfig(amount=100_000, destination=w.get_unused_address(), limits=limits), Failure.DAEMON),
    ]
    for config, kind in cases:
        outcome, events = _run_taker(electrum_node, w, config)
        assert outcome.status == OutcomeStatus.FAILED and outcome.failure == kind, outcome
        assert outcome.to_dict()["failure"] == kind.value
        assert failure_hint(outcome.failure) == FAILURE_HINTS[kind]
        assert failure_hint(kind.value) == FAILURE_HINTS[kind]          # as stored in history
        assert events and all(isinstance(e["stage"], TakerStage) for e in events)
        assert events[-1]["stage"] == TakerStage.FAILED
    assert failure_hint(None) == failure_hint("no such kind") == FAILURE_HINTS[Failure.INTERNAL]
    # the hint does not depend on the words: a daemon failure whose message mentions fees
    assert failure_hint(Failure.DAEMON) != failure_hint(Failure.FEE_LIMITS)


def test_low_fee_rate_above_the_users_cap_stops_the_run(electrum_node, make_wallet):
    """A fee rate above the user's cap (plugins.joinmarket.max_fee_rate) stops the coinjoin
    before anything is asked of the network (no daemon is reached: port 1 would fail with
    'daemon'), with an error that names the setting and what to do; nothing frozen, no
    commitment used. The default cap is 100 sat/vB and the runner takes it from the setting."""
    from electrum_joinmarket.errors import Failure
    from electrum_joinmarket.settings import JM_MAX_FEE_RATE
    from electrum_joinmarket.stages import OutcomeStatus
    w = make_wallet(fund=[1_500_000], confirmations=5)    # old enough for PoDLE: past the early check
    config = TakerConfig(amount=100_000, destination=w.get_unused_address(),
                         limits=FeeLimits(20_000, "0.004"), fallback_feerate=150_000,
                         max_feerate=100_000)
    outcome, events = _run_taker(electrum_node, w, config)
    assert outcome.status == OutcomeStatus.FAILED and outcome.failure == Failure.FEE_LIMITS
    assert "150 sat/vB, above your cap of 100 sat/vB" in outcome.message
    assert "plugins.joinmarket.max_fee_rate" in outcome.message
    assert not any(w.is_frozen_coin(c) for c in w.get_utxos())
    assert [e["stage"] for e in events] == ["failed"]
    assert JM_MAX_FEE_RATE.get_default_value() == 100_000
    # a cap that is not a rate is the user's mistake, said as such
    outcome, _ = _run_taker(electrum_node, w, TakerConfig(
        amount=100_000, destination=w.get_unused_address(), limits=FeeLimits(20_000, "0.004"),
        max_feerate=0))
    assert outcome.failure == Failure.INPUT and "max_fee_rate" in outcome.message


@pytest.mark.parametrize("attr,field,default,value", [
    ("JM_MAX_FEE_RATE", "max_feerate", 100_000, 20_000),          # the fee rate cap
    ("JM_CHANNELS_TIMEOUT", "channels_timeout", 90, 12),          # the wait for the channels
])
def test_taker_config_takes_the_setting(electrum_node, jm_plugin, attr, field, default, value):
    """The runner gives every coinjoin plugins.joinmarket.max_fee_rate as its fee rate cap and
    plugins.joinmarket.channels_timeout as its wait for the daemon's channels."""
    from electrum_joinmarket.market.limits import FeeLimits as FL

    def taken():
        return getattr(jm_plugin.runner.taker_config(100_000, "x", limits=FL(1, "0.1")), field)
    c = electrum_node.config
    assert taken() == default
    setattr(c, attr, value)
    try:
        assert taken() == value
    finally:
        setattr(c, attr, None)
