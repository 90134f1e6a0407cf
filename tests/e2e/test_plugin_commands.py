"""The plugin's commands, as `electrum daemon` users call them: orderbook, coinjoin, history,
status — through Electrum's own Commands on the loaded plugin; and F4: the plugin (and the
wallet) restarted between two coinjoins keeps used commitments and history."""
from __future__ import annotations

import pytest

from devstack.daemons import plugin_on_daemon
from devstack.ircd import irc_config
from devstack.wallets import confirmed_balance, new_wallet

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


@pytest.fixture
def configured(electrum_node, irc_net, ircd, tmp_path):
    with plugin_on_daemon(electrum_node.config, tmp_path, "cmd-taker",
                          irc_config(ircd)) as daemon:
        yield daemon


def test_commands_orderbook_coinjoin_history_and_f4_restart(electrum_node, bitcoind, irc_net,
                                                            configured, plugins_factory):
    config = electrum_node.config
    config.set_key("plugins.joinmarket.enabled", True)
    old_plugins = electrum_node.daemon._plugins
    electrum_node.daemon._plugins = plugins_factory(config, "cmdline")
    try:
        taker_w = new_wallet(electrum_node, bitcoind, [20_000_000, 6_000_000], confirmations=6,
                             password="pw")
        dest = new_wallet(electrum_node, bitcoind)
        cmds = electrum_node.commands()
        book = electrum_node.run(cmds.joinmarket_orderbook(wait=3), timeout=120)
        makers = {o["counterparty"] for o in book["offers"]}
        assert {p.maker.nick for p in irc_net.makers} <= makers
        before = confirmed_balance(taker_w)
        res = electrum_node.run(cmds.joinmarket_coinjoin(
            dest.get_receiving_addresses()[0], "0.05", wallet=taker_w, password="pw", wait=True),
            timeout=300)["outcome"]
        assert res["status"] == "success", res
        assert res["cj_amount"] == 5_000_000
        bitcoind.mine(1)
        electrum_node.wait_tx(taker_w, res["txid"], confirmations=1)
        electrum_node.wait_tx(dest, res["txid"], confirmations=1)
        assert before - confirmed_balance(taker_w) == 5_000_000 + res["total_cost"]
        hist = electrum_node.run(cmds.joinmarket_history(wallet=taker_w))
        assert [h["txid"] for h in hist] == [res["txid"]]
        status = electrum_node.run(cmds.joinmarket_status())
        session = [s for s in status["sessions"] if s["wallet"] == taker_w.basename()][0]
        assert session["used_commitments"] == 1 and session["role"] is None

        # F4: restart the plugin and reopen the wallet between two coinjoins
        path = taker_w.storage.path
        for plugin in list(electrum_node.daemon._plugins.plugins.values()):
            plugin.close()
        electrum_node.close_wallet(taker_w)
        electrum_node.daemon._plugins = plugins_factory(config, "cmdline")
        taker_w = electrum_node.load_wallet(path, "pw")
        cmds = electrum_node.commands()
        assert len(electrum_node.run(cmds.joinmarket_history(wallet=taker_w))) == 1
        res2 = electrum_node.run(cmds.joinmarket_coinjoin(
            dest.get_receiving_addresses()[1], "0.04", wallet=taker_w, password="pw", wait=True),
            timeout=300)["outcome"]
        assert res2["status"] == "success", res2
        hist = electrum_node.run(cmds.joinmarket_history(wallet=taker_w))
        assert [h["txid"] for h in hist] == [res["txid"], res2["txid"]]
        status = electrum_node.run(cmds.joinmarket_status())
        session = [s for s in status["sessions"] if s["wallet"] == taker_w.basename()][0]
        assert session["used_commitments"] == 2          # the first one was not forgotten
    finally:
        electrum_node.daemon._plugins = old_plugins
        config.set_key("plugins.joinmarket.enabled", False)


def test_status_reports_the_daemon_connection_of_a_running_maker(electrum_node, bitcoind, irc_net,
                                                                 configured, plugins_factory):
    """joinmarket_status's daemon_connected is true exactly while the wallet's maker (or taker)
    holds its AMP connection to jmdaemon (it was always false before)."""
    config = electrum_node.config
    config.set_key("plugins.joinmarket.enabled", True)
    old_plugins = electrum_node.daemon._plugins
    electrum_node.daemon._plugins = plugins_factory(config, "cmdline")
    try:
        w = new_wallet(electrum_node, bitcoind, [3_000_000], confirmations=6)
        cmds = electrum_node.commands()

        def session():
            status = electrum_node.run(cmds.joinmarket_status())
            return [s for s in status["sessions"] if s["wallet"] == w.basename()][0]
        assert session()["daemon_connected"] is False and session()["role"] is None
        st = electrum_node.run(cmds.joinmarket_start_maker(wallet=w), timeout=120)
        assert st["running"] is True and st["nick"]
        s = session()
        assert s["daemon_connected"] is True and s["role"] == "maker" and s["state"] == "running"
        stopped = electrum_node.run(cmds.joinmarket_stop_maker(wallet=w))
        assert stopped["stopped"] is True and stopped["running"] is False
        s = session()
        assert s["daemon_connected"] is False and s["role"] is None and s["state"] == "idle"
    finally:
        electrum_node.daemon._plugins = old_plugins
        config.set_key("plugins.joinmarket.enabled", False)
