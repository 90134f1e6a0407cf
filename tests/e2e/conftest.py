"""Fixtures for end-to-end coinjoins: a JoinMarket network of Electrum makers on the regtest
stack (one module-scoped network per channel type)."""
from __future__ import annotations

import itertools

import pytest

from devstack.jmnet import JMNet, irc_config

_names = itertools.count()


def new_wallet(electrum_node, bitcoind, amounts=(), password=None, mine=0):
    wallet = electrum_node.create_wallet(f"e2e{next(_names)}", password=password)
    txids = [bitcoind.fund(wallet.get_receiving_addresses()[i], sats, confirm=False)
             for i, sats in enumerate(amounts)]
    if txids:
        bitcoind.mine(1 + mine)
        for txid in txids:
            electrum_node.wait_tx(wallet, txid, confirmations=1 + mine)
    return wallet


def confirmed_balance(wallet) -> int:
    c, u, x = wallet.get_balance()[:3]
    assert u == 0 and x == 0, f"unconfirmed/unmatured coins in {wallet}: {u} {x}"
    return c


@pytest.fixture(scope="module")
def irc_net(ircd, electrum_node, bitcoind, electrumx, tmp_path_factory):
    net = JMNet(electrum_node, bitcoind, tmp_path_factory.mktemp("jmnet-irc"), irc_config(ircd))
    # several coins each: a session abandoned by a taker keeps its coins reserved (10 min)
    wallets = [new_wallet(electrum_node, bitcoind, [40_000_000, 25_000_000, 15_000_000,
                                                    12_000_000, 10_000_000]) for _ in range(3)]
    bitcoind.mine(5)                       # PoDLE utxo age (taker and maker default policy: 5)
    for i, w in enumerate(wallets):
        electrum_node.wait_synced(w)
        net.add_maker(w, cjfee_r=["0.0002", "0.0003", "0.00025"][i],
                      password=None)
    yield net
    net.stop()
