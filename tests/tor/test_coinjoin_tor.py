"""Complete coinjoins over the private Tor network, no test mode anywhere: our directory node is
an onion service published through its Tor client's control port; three Electrum makers each
publish their own ephemeral onion through their own Tor client's control port; the Electrum
taker reaches the directory and the makers only through its Tor client's SOCKS5 port. Balances
are checked to the satoshi.

Also: every connection of the taker's daemon goes to its SOCKS port (none direct, although every
listener here is on 127.0.0.1 and directly reachable), each Tor stream carries its own SOCKS
credentials (stream isolation), and F6: a maker's Tor client killed mid-session (after its
!ioauth, before its !sig) — the taker replaces it or fails cleanly, nothing frozen, the
commitment kept."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from devstack.daemons import start_tor_directory
from devstack.jmnet import JMNet, quick_config, tor_onion_config
from devstack.tor import OnionNotReachable, StreamWatcher, onion_handshake, tcp_connections
from devstack.wallets import confirmed_balance, new_wallet
from electrum_joinmarket.protocol.commitments import CommitmentStore
from jmcore.socks5 import ONION_REPLY_CODES
from tests.figures import TOR_FIGURES

pytestmark = [pytest.mark.stack, pytest.mark.e2e, pytest.mark.tor]

FEES = ["0.0002", "0.0003", "0.00025"]


@pytest.fixture(scope="module")
def tor_jm(tornet, electrum_node, bitcoind, electrumx, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("jmnet-tor")
    dir_tor = tornet.add_client("directory")
    t0 = time.monotonic()
    directory = start_tor_directory(workdir, dir_tor.control_port)
    published = time.monotonic() - t0
    taker_tor = tornet.add_client("taker")
    reply, reach = onion_handshake(taker_tor.socks_port, directory.extra["location"])
    assert reply["accepted"] is True and reply["directory"] is True
    TOR_FIGURES["directory_published_s"] = round(published, 1)
    TOR_FIGURES["directory_reachable_s"] = round(published + reach, 1)
    maker_tors = [tornet.add_client(f"maker{i}") for i in range(3)]
    location = directory.extra["location"]

    def configs(role, index):
        if role == "maker":
            return tor_onion_config(location, maker_tors[index], serving=True)
        return tor_onion_config(location, taker_tor, serving=False)
    net = JMNet(electrum_node, bitcoind, workdir, configs)
    wallets = [new_wallet(electrum_node, bitcoind, [30_000_000, 20_000_000]) for _ in range(3)]
    bitcoind.mine(5)
    for i, w in enumerate(wallets):
        electrum_node.wait_synced(w)
        net.add_maker(w, cjfee_r=FEES[i])
    yield SimpleNamespace(net=net, directory=directory, taker_tor=taker_tor,
                          maker_tors=maker_tors, location=location)
    net.stop()
    directory.stop()


def test_coinjoin_three_makers_over_tor_balances(tor_jm, electrum_node, bitcoind):
    """The complete coinjoin over Tor, balances to the satoshi; C5 (only the SOCKS port, one set
    of SOCKS credentials per stream)."""
    net = tor_jm.net
    for party in net.makers:                           # each maker serves its own onion
        log = party.daemon.log()
        assert "onion channel serving at " in log and ".onion:5222" in log
        assert "test mode" not in log
    taker_w = new_wallet(electrum_node, bitcoind, [15_000_000, 3_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    before_m = {p.maker.nick: confirmed_balance(p.wallet) for p in net.makers}
    before_t = confirmed_balance(taker_w)
    cj = 9_876_543
    store = CommitmentStore({}, on_change=None)
    watcher = StreamWatcher(tor_jm.taker_tor)
    events: list[dict] = []
    seen: dict = {}

    def progress(ev):
        events.append(ev)
        if ev["stage"] == "tx" and "conns" not in seen:      # mid-session, all links open
            seen["conns"] = tcp_connections(daemon.proc.pid)
    taker = net.taker(taker_w, store, quick_config(cj, dest.get_receiving_address()),
                      progress=progress)
    daemon = net.daemons[-1]
    t0 = time.monotonic()
    try:
        outcome = net.run_taker(taker, timeout=420)
    finally:
        watcher.close()
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    t_broadcast = [e["time"] for e in events if e["stage"] == "broadcast"][0]
    t_start = [e["time"] for e in events if e["stage"] == "connect"][0]
    TOR_FIGURES["taker_start_to_broadcast_s"] = round(t_broadcast - t_start, 1)
    TOR_FIGURES["taker_run_s"] = round(time.monotonic() - t0, 1)
    assert sorted(outcome.makers) == sorted(before_m)
    bitcoind.mine(1)
    for w in [taker_w, dest] + [p.wallet for p in net.makers]:
        electrum_node.wait_tx(w, outcome.txid, confirmations=1)
    assert confirmed_balance(dest) == cj
    assert before_t - confirmed_balance(taker_w) == cj + outcome.total_cost
    for p in net.makers:
        assert confirmed_balance(p.wallet) - before_m[p.maker.nick] == \
            round(cj * float(p.maker.settings.cjfee_r)) == outcome.maker_fees[p.maker.nick]

    # the taker's daemon talked only to its AMP client and its Tor SOCKS port
    conns = seen["conns"]
    assert conns, "no connections seen mid-session"
    stray = {c for c in conns if c[0] != daemon.port and c[2] != tor_jm.taker_tor.socks_port}
    assert not stray, stray
    # every stream through Tor: the directory and the makers, each with its own credentials
    streams = [s for s in watcher.streams().values() if s["target"].endswith(".onion:5222")]
    targets = {s["target"] for s in streams}
    assert tor_jm.location in targets
    maker_onions = {p.daemon.log().split("onion channel serving at ")[1].split()[0]
                    for p in net.makers}
    assert maker_onions & targets, (maker_onions, targets)   # direct links to makers' onions
    names = [s["username"] for s in streams]
    assert all(n and n.startswith("ejm-") for n in names), names
    assert len(set(names)) == len(names), names               # one per connection


def test_f6_maker_tor_killed_mid_session(tor_jm, electrum_node, bitcoind):
    """F6: the Tor client of a maker dies after the maker answered (!ioauth) and before it signs
    (!tx sent). The taker's round fails on that maker; it retries with the others or fails
    cleanly: no hang, no coin left frozen, the commitment of the broken round kept as used."""
    net = tor_jm.net
    taker_w = new_wallet(electrum_node, bitcoind, [12_000_000, 4_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    before_t = confirmed_balance(taker_w)
    before_m = {p.maker.nick: confirmed_balance(p.wallet) for p in net.makers}
    store = CommitmentStore({}, on_change=None)
    killed: dict = {}
    tor_of = {p.maker.nick: tor_jm.maker_tors[i] for i, p in enumerate(net.makers)}

    def progress(ev):
        if ev["stage"] == "chosen" and "chosen" not in killed:
            killed["chosen"] = list(ev["makers"])
        if ev["stage"] == "tx" and "nick" not in killed:
            victim = killed["chosen"][0]
            killed["nick"] = victim
            killed["used_before"] = set(store.used())
            tor_of[victim].kill()                    # SIGKILL: its onion and circuits vanish
    cj = 5_432_100
    cfg = quick_config(cj, dest.get_receiving_address(), n=3, minimum_makers=2,
                       sig_timeout=30.0, max_rounds=3)
    taker = net.taker(taker_w, store, cfg, progress=progress)
    t0 = time.monotonic()
    outcome = net.run_taker(taker, timeout=480)
    took = time.monotonic() - t0
    TOR_FIGURES["f6_outcome"] = outcome.status
    TOR_FIGURES["f6_run_s"] = round(took, 1)
    assert "nick" in killed, "the run never reached !tx"
    victim = killed["nick"]
    assert outcome.status in ("success", "failed"), outcome.status
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
    assert killed["used_before"] and killed["used_before"] <= set(store.used())
    if outcome.status == "success":
        assert victim not in outcome.makers and len(outcome.makers) >= 2
        bitcoind.mine(1)
        for w in [taker_w, dest] + [p.wallet for p in net.makers if p.maker.nick != victim]:
            electrum_node.wait_tx(w, outcome.txid, confirmations=1)
        electrum_node.wait_synced([p.wallet for p in net.makers if p.maker.nick == victim][0])
        assert confirmed_balance(dest) == cj
        assert before_t - confirmed_balance(taker_w) == cj + outcome.total_cost
        for p in net.makers:
            gained = confirmed_balance(p.wallet) - before_m[p.maker.nick]
            assert gained == outcome.maker_fees.get(p.maker.nick, 0)
    else:
        assert confirmed_balance(taker_w) == before_t
        assert outcome.message


def test_c7_maker_onion_removed_when_it_stops(tor_jm):
    """A maker's onion service lives as long as its maker: reachable while it runs, gone (Tor
    cannot reach it) once it stopped — the daemon removed it (DEL_ONION) with the channel."""
    party = [p for p in tor_jm.net.makers if tor_jm.maker_tors[tor_jm.net.makers.index(p)].alive()][0]
    location = party.daemon.log().split("onion channel serving at ")[1].split()[0]
    reply, _ = onion_handshake(tor_jm.taker_tor.socks_port, location, timeout=60)
    assert reply["nick"] == party.maker.nick          # a maker answers 793 with its own 793
    party.maker.stop()
    for _ in range(100):
        if "onion service " in party.daemon.log() and " removed" in party.daemon.log():
            break
        time.sleep(0.1)
    # Tor answers once it has tried the service's introduction points (its cached descriptor
    # still names them): seconds on a quiet machine, more on a loaded one. Three such answers in
    # a row (never a handshake) end the wait; before, the probe retried them until its 120 s
    # were up, every run
    with pytest.raises(OnionNotReachable) as gone:
        onion_handshake(tor_jm.taker_tor.socks_port, location, timeout=180, refusals=3)
    # the service itself is gone (an onion-service error from Tor), not just its local listener
    # (a published service with nothing behind it answers "connection refused")
    assert gone.value.code in ONION_REPLY_CODES, str(gone.value)
    assert f"onion service {location.split(':')[0]} removed" in party.daemon.log()
