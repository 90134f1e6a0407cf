"""Fixtures for the plugin tests on the real regtest stack (ElectrumX + Electrum 4.8 in-process)."""
from __future__ import annotations

import pytest


@pytest.fixture
def chain(electrum_node):
    """A fresh ElectrumChain (zeroed query counts) over the session's Electrum network."""
    from electrum_joinmarket.chain.server import ElectrumChain
    return ElectrumChain(electrum_node.network)


@pytest.fixture
def sync_tip(bitcoind, electrum_node):
    """``sync_tip()``: wait until Electrum's verified header chain reached bitcoind's tip."""
    def sync(timeout: float = 30) -> int:
        height = bitcoind.rpc("getblockcount")
        electrum_node.wait_height(height, timeout)
        return height
    return sync


@pytest.fixture
def wait_utxo(electrum_node):
    """``wait_utxo(chain, outpoint, pred)``: poll ``get_utxo`` on Electrum's loop until
    ``pred(info)`` holds (ElectrumX sees mempool changes with a short delay); returns the info.
    The polling uses its own ElectrumChain, so ``chain``'s query counts and memory are untouched
    and tests can count only what they ask next."""
    def wait(chain, outpoint, pred, timeout: float = 30):
        from devstack.procs import wait_for
        from electrum_joinmarket.chain.server import ElectrumChain
        poller = ElectrumChain(chain.network)

        def reached():
            info = electrum_node.run(poller.get_utxo(outpoint))
            return (info,) if pred(info) else None
        return wait_for(reached, timeout, f"{outpoint} to reach the condition")[0]
    return wait

