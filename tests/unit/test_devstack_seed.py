"""devstack's test wallets get their seed from ``new_seed``: Electrum's own seed search with the
cheap condition tested first. It must give exactly the seed Electrum's ``make_seed`` gives for the
same entropy (so a test wallet is an ordinary new Electrum wallet), of the type asked for."""
from __future__ import annotations

import pytest
from electrum import crandom
from electrum.mnemonic import Mnemonic, calc_seed_type, is_new_seed, is_old_seed

from devstack.electrum_env import new_seed

# 132-bit entropies whose search is short for Electrum too (269 and 183 nonces: odd, so a
# search that skips candidates finds another seed), so the
# comparison costs well under a second
ENTROPIES = {"segwit": 0x9F3A5C7E9B2D4F6081A3C5E7092B4D6F7,
             "standard": 0x8F00DCAFE1234567890ABCDEF12345677}


@pytest.mark.parametrize("seed_type", sorted(ENTROPIES))
def test_new_seed_is_electrums_seed_for_the_same_entropy(seed_type, monkeypatch):
    entropy = ENTROPIES[seed_type]
    ours = new_seed(seed_type, entropy=entropy)
    monkeypatch.setattr(crandom, "get_rand_below", lambda n: entropy)
    assert ours == Mnemonic("en").make_seed(seed_type=seed_type)
    assert calc_seed_type(ours) == seed_type and len(ours.split()) == 12


def test_new_seeds_are_random_and_valid():
    seeds = {new_seed("segwit") for _ in range(3)}
    assert len(seeds) == 3
    for s in seeds:
        assert is_new_seed(s, "100") and not is_old_seed(s) and calc_seed_type(s) == "segwit"
