"""Fixtures for the CLI tests: a JoinMarket network of three makers on the regtest stack (in this
process, over the session's IRC server) and, per test, a user's Electrum (``UserElectrum``: its
own data dir, ``electrum daemon`` subprocess and CLI clients) configured to reach that network."""
from __future__ import annotations

import json

import pytest

from devstack.ircd import irc_config
from devstack.jmnet import JMNet
from devstack.wallets import new_wallet

from .harness import UserElectrum, fund, kill_recorded_daemons, quiet_channels, write_user_config

MAKER_FEES = ("0.0002", "0.0003", "0.00025")


@pytest.fixture(scope="module")
def cli_net(ircd, electrum_node, bitcoind, electrumx, tmp_path_factory):
    """Three makers (sw0reloffer, 100,000 sat minimum) with several confirmed coins each."""
    net = JMNet(electrum_node, bitcoind, tmp_path_factory.mktemp("jmnet-cli"), irc_config(ircd))
    wallets = [new_wallet(electrum_node, bitcoind, [40_000_000, 25_000_000, 15_000_000,
                                                    12_000_000, 10_000_000]) for _ in MAKER_FEES]
    bitcoind.mine(5)
    for w, fee in zip(wallets, MAKER_FEES, strict=True):
        electrum_node.wait_synced(w)
        net.add_maker(w, cjfee_r=fee)
    yield net
    net.stop()


@pytest.fixture
def make_user(tmp_path, electrumx, ircd):
    """``make_user(name="user", **plugin_settings)`` -> a stopped UserElectrum whose config holds
    the settings; every daemon is stopped (and its jmdaemon with it) at test end."""
    made = []

    def make(name: str = "user", **settings) -> UserElectrum:
        user = UserElectrum(tmp_path / name, electrumx.server_string)
        write_user_config(user, ircd, **settings)
        made.append(user)
        return user
    yield make
    for user in made:
        try:
            user.stop_daemon()
        except Exception:
            user.kill_daemon()
        kill_recorded_daemons(user)


@pytest.fixture(scope="module")
def user(cli_net, tmp_path_factory, electrumx, ircd):
    """One user's Electrum daemon for the module, connected to the makers' network."""
    u = UserElectrum(tmp_path_factory.mktemp("user") / "electrum", electrumx.server_string)
    write_user_config(u, ircd)
    u.start_daemon()
    yield u
    try:
        u.stop_daemon()
    except Exception:
        u.kill_daemon()
    kill_recorded_daemons(u)


_wallets = iter(range(10_000))


@pytest.fixture
def wallet(user, bitcoind):
    """A fresh segwit wallet in the module's user Electrum with 0.2 + 0.06 BTC, 5 confirmations."""
    path = user.create_wallet(f"w{next(_wallets)}")
    fund(user, path, bitcoind, (20_000_000, 6_000_000))
    yield path
    user.close_wallet(path)


@pytest.fixture(scope="module")
def quiet_user(tmp_path_factory, electrumx, ircd):
    """A user's Electrum daemon whose coinjoins find no maker and wait 300 s for offers."""
    u = UserElectrum(tmp_path_factory.mktemp("quiet") / "electrum", electrumx.server_string)
    write_user_config(u, ircd, channels=quiet_channels(ircd), orderbook_wait=300)
    u.start_daemon()
    yield u
    try:
        u.stop_daemon()
    except Exception:
        u.kill_daemon()
    kill_recorded_daemons(u)


@pytest.fixture
def quiet_wallet(quiet_user, bitcoind):
    path = quiet_user.create_wallet(f"q{next(_wallets)}")
    fund(quiet_user, path, bitcoind, (20_000_000, 6_000_000))
    yield path
    quiet_user.close_wallet(path)


@pytest.fixture
def settings(user):
    """``settings(key=value, ...)``: setconfig plugins.joinmarket.<key> on the running daemon
    for this test (restored afterwards)."""
    changed: dict = {}

    def set_(**kv) -> None:
        for k, v in kv.items():
            key = f"plugins.joinmarket.{k}"
            if key not in changed:
                changed[key] = user.rpc("getconfig", key=key)
            user.rpc("setconfig", key=key, value=v if isinstance(v, str) else json.dumps(v))
    yield set_
    for key, old in changed.items():
        if old is None:
            user.rpc("unsetconfig", key=key)
        else:
            user.rpc("setconfig", key=key, value=json.dumps(old))


@pytest.fixture
def funded_user(make_user, bitcoind):
    """``funded_user(amounts_sats, **settings)`` -> (user, wallet path): a running user Electrum
    with a fresh segwit wallet holding coins with 5 confirmations (PoDLE age)."""
    def make(amounts=(20_000_000, 6_000_000), **settings):
        user = make_user(**settings)
        user.start_daemon()
        wallet = user.create_wallet("w1")
        fund(user, wallet, bitcoind, amounts)
        return user, wallet
    return make
