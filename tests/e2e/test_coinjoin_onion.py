"""The same complete coinjoin over the onion message channel in test mode (plain TCP on
127.0.0.1, no Tor): our directory node, three Electrum makers serving their own test-mode onions,
and a taker — each party with its own jmdaemon. Balances to the satoshi."""
from __future__ import annotations

import pytest

from devstack.daemons import start_directory
from devstack.jmnet import JMNet, onion_config, quick_config
from devstack.procs import free_port
from devstack.wallets import confirmed_balance, new_wallet
from electrum_joinmarket.protocol.commitments import CommitmentStore

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


@pytest.fixture(scope="module")
def onion_net(electrum_node, bitcoind, electrumx, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("jmnet-onion")
    directory = start_directory(workdir, network="regtest")
    ports = [free_port() for _ in range(3)]

    def configs(role, index):
        return onion_config(directory, ports[index] if role == "maker" else 0)
    net = JMNet(electrum_node, bitcoind, workdir, configs)
    wallets = [new_wallet(electrum_node, bitcoind, [30_000_000, 20_000_000]) for _ in range(3)]
    bitcoind.mine(5)
    for i, w in enumerate(wallets):
        electrum_node.wait_synced(w)
        net.add_maker(w, cjfee_r=["0.0002", "0.0003", "0.00025"][i])
    yield net
    net.stop()
    directory.stop()


def test_coinjoin_three_makers_onion_balances(onion_net, electrum_node, bitcoind):
    net = onion_net
    taker_w = new_wallet(electrum_node, bitcoind, [15_000_000, 3_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    before_m = {p.maker.nick: confirmed_balance(p.wallet) for p in net.makers}
    before_t = confirmed_balance(taker_w)
    cj = 9_876_543
    store = CommitmentStore({}, on_change=None)
    outcome = net.run_taker(net.taker(taker_w, store, quick_config(cj, dest.get_receiving_address())))
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    assert sorted(outcome.makers) == sorted(before_m)
    bitcoind.mine(1)
    for w in [taker_w, dest] + [p.wallet for p in net.makers]:
        electrum_node.wait_tx(w, outcome.txid, confirmations=1)
    assert confirmed_balance(dest) == cj
    assert before_t - confirmed_balance(taker_w) == cj + outcome.total_cost
    for p in net.makers:
        assert confirmed_balance(p.wallet) - before_m[p.maker.nick] == \
            round(cj * float(p.maker.settings.cjfee_r)) == outcome.maker_fees[p.maker.nick]
