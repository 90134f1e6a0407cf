"""Fixtures for the CLI tests: a JoinMarket network of three makers on the regtest stack (in this
process, over the session's IRC server) and, per test, a user's Electrum (``UserElectrum``: its
own data dir, ``electrum daemon`` subprocess and CLI clients) configured to reach that network."""
from __future__ import annotations

import json

import pytest

from devstack.jmnet import JMNet, irc_config
from devstack.procs import free_port
from tests.e2e.conftest import new_wallet

from .harness import UserElectrum

MAKER_FEES = ("0.0002", "0.0003", "0.00025")


@pytest.fixture(scope="module")
def cli_net(ircd, electrum_node, bitcoind, electrumx, tmp_path_factory):
    """Three makers (sw0reloffer, 100,000 sat minimum) with several confirmed coins each."""
    net = JMNet(electrum_node, bitcoind, tmp_path_factory.mktemp("jmnet-cli"), irc_config(ircd))
    wallets = [new_wallet(electrum_node, bitcoind, [40_000_000, 25_000_000, 15_000_000,
                                                    12_000_000, 10_000_000]) for _ in MAKER_FEES]
    bitcoind.mine(5)
    for w, fee in zip(wallets, MAKER_FEES):
        electrum_node.wait_synced(w)
        net.add_maker(w, cjfee_r=fee)
    yield net
    net.stop()


def user_config(ircd, **over) -> dict:
    """A user's ``plugins.joinmarket`` settings for the lab network (what they would set with
    setconfig; written to the config file before the first start to save ~3 s per key)."""
    cfg = {"enabled": True, "channels": json.dumps(irc_config(ircd)),
           "max_cj_fee_abs": 50_000, "max_cj_fee_rel": "0.01",
           "counterparties": 3, "minimum_makers": 2, "orderbook_wait": 5, "maker_timeout": 20,
           "daemon_port": free_port(), "daemon_in_process": False}
    cfg.update(over)
    return {k: v for k, v in cfg.items() if v is not None}


def write_user_config(user: UserElectrum, ircd, **settings) -> None:
    conf_dir = user.datadir / "regtest"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "config").write_text(json.dumps(
        {"config_version": 3, "plugins": {"joinmarket": user_config(ircd, **settings)},
         "fee_policy": {"default": "feerate:2000"}, "log_to_file": True}, indent=2))


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


def kill_recorded_daemons(user: UserElectrum) -> None:
    """A failed test must not leave a jmdaemon its Electrum recorded as started (orphans)."""
    import os
    import signal
    for rec in (user.home / ".jmdaemon").glob("jmdaemon-started-by-electrum.*.pid"):
        try:
            pid = json.loads(rec.read_text())["pid"]
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


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


def fund(user: UserElectrum, wallet, bitcoind, amounts) -> None:
    for sats in amounts:
        bitcoind.fund(user.ok("getunusedaddress", "-w", wallet).stdout.strip(), sats, confirm=False)
        bitcoind.mine(1)   # the next getunusedaddress is a new address
    bitcoind.mine(5)       # PoDLE: coins need 5 confirmations
    user.wait_balance(wallet, sum(amounts))


@pytest.fixture
def wallet(user, bitcoind):
    """A fresh segwit wallet in the module's user Electrum with 0.2 + 0.06 BTC, 5 confirmations."""
    path = user.create_wallet(f"w{next(_wallets)}")
    fund(user, path, bitcoind, (20_000_000, 6_000_000))
    yield path
    user.run("close_wallet", "-w", path)


def quiet_channels(ircd) -> str:
    """The lab IRC server, but a channel no maker is on: a coinjoin waits the whole
    orderbook_wait there, so a test can act on a running job without racing it."""
    chans = irc_config(ircd)
    chans[0]["channel"] = "joinmarket-quiet"
    return json.dumps(chans)


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
    quiet_user.run("close_wallet", "-w", path)


@pytest.fixture
def settings(user):
    """``settings(key=value, ...)``: setconfig plugins.joinmarket.<key> on the running daemon
    for this test (restored afterwards)."""
    changed: dict = {}

    def set_(**kv) -> None:
        for k, v in kv.items():
            key = f"plugins.joinmarket.{k}"
            if key not in changed:
                changed[key] = user.ok("getconfig", key).stdout.strip()
            user.setconfig(key, v)
    yield set_
    for key, old in changed.items():
        if old in ("", "null"):
            user.run("unsetconfig", key)
        else:
            user.setconfig(key, old)


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
