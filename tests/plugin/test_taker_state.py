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
