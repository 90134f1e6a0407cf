#!/usr/bin/env python3
"""`make demo`: a real coinjoin on a local regtest JoinMarket network.

Starts bitcoind, ElectrumX, an IRC server and Electrum 4.8 (in-process), three maker wallets
each running the plugin's yield generator with its own jmdaemon, and a taker wallet that runs
one coinjoin through its own jmdaemon. Prints progress, the makers chosen, the fees paid, the
anonymity set, the txid and its confirmation (in a block the demo mines itself).

``--tor`` runs it over a private Tor network on 127.0.0.1 (devstack/tor.py: Debian's tor, own
authorities, never the real Tor network) instead of IRC: our directory node as an onion service,
each maker publishing its own onion through its Tor client's control port, the taker reaching
them through its Tor client's SOCKS5 port — as on mainnet, no test mode.

``--keep`` leaves the network running until Ctrl-C (or SIGTERM/SIGHUP) and prints how to attach
your own Electrum and wallet to it. Whatever ends the demo — success, failure, Ctrl-C, SIGTERM,
a closed terminal — every service it started is stopped and its temp dir is removed
(``--keep-data`` keeps the dir).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack.bitcoind import RPC_PASSWORD, RPC_USER, start_bitcoind  # noqa: E402
from devstack.electrum_env import ElectrumNode, stop_electrum_loop  # noqa: E402
from devstack.electrumx import start_electrumx  # noqa: E402
from devstack.ircd import irc_config, start_ircd  # noqa: E402
from devstack.jmnet import JMNet, quick_config  # noqa: E402
from devstack.procs import installed_env  # noqa: E402
from devstack.wallets import fund_wallets, new_wallet  # noqa: E402
from electrum_joinmarket.protocol.commitments import CommitmentStore  # noqa: E402

MAKER_FEES = ("0.0002", "0.0003", "0.00025")
DEMO_USER_DIR = "~/ejm-demo-electrum"   # where --keep suggests your own Electrum keeps its data


class Stop(Exception):
    """SIGTERM or SIGHUP arrived: stop everything (like Ctrl-C)."""


def _on_signal(signum: int, _frame) -> None:
    # once: a second signal while we clean up must not interrupt the cleanup
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def step(msg: str, t0: float) -> None:
    print(f"[demo {time.monotonic() - t0:6.1f}s] {msg}", flush=True)


def attach_help(node, ex, irc, config, wallets: dict, tor=None) -> str:
    """How to point your own Electrum (with the plugin) and wallet at this demo network: shell
    lines to paste, in order. ``tor``: (directory location, a Tor client) of a --tor demo."""
    cli = installed_env().get("EJM_BITCOIN_CLI", "bitcoin-cli")
    py = shlex.quote(str(ROOT / ".venv" / "bin" / "python"))
    if tor is not None:
        location, client = tor
        chans = json.dumps({"directories": [location],
                            "socks5": f"127.0.0.1:{client.socks_port}",
                            "tor_control": f"127.0.0.1:{client.control_port}"})
    else:
        chans = json.dumps(irc_config(irc))
    lines = [
        "",
        "The demo network keeps running. To use it from your own Electrum, paste in another shell:",
        f"  BCLI='{cli} -regtest -rpcconnect=127.0.0.1 -rpcport={node.rpc_port} "
        f"-rpcuser={RPC_USER} -rpcpassword={RPC_PASSWORD} -rpcwallet=miner'",
        f"  EL='{py} -m electrum_joinmarket.loader --regtest -D {DEMO_USER_DIR}'",
        "  # the plugin on, pointed at the demo's " + ("directory over its Tor" if tor is not None
                                                       else "IRC server") + ", with fee limits:",
        "  $EL --offline setconfig plugins.joinmarket.enabled true",
        f"  $EL --offline setconfig plugins.joinmarket.channels {shlex.quote(chans)}",
        f"  $EL --offline setconfig plugins.joinmarket.max_cj_fee_abs {config.limits.max_abs}",
        f"  $EL --offline setconfig plugins.joinmarket.max_cj_fee_rel {config.limits.max_rel}",
        "  $EL --offline setconfig plugins.joinmarket.minimum_makers 2",
        "  # Electrum on the demo's ElectrumX, a wallet, coins with 5 confirmations (PoDLE):",
        f"  $EL daemon -d --oneserver --server {ex.server_string}",
        "  $EL create --seed_type segwit; $EL load_wallet",
        "  $BCLI sendtoaddress $($EL getunusedaddress) 0.5; $BCLI -generate 5",
        "  # a coinjoin with the demo's 3 makers (--wait follows it; Ctrl-C cancels it):",
        "  $EL joinmarket_coinjoin $($EL getunusedaddress) 0.1 --counterparties 2 --wait",
        "  $EL stop   # when done",
        f"bitcoind RPC 127.0.0.1:{node.rpc_port} ({RPC_USER}/{RPC_PASSWORD}), ElectrumX "
        f"{ex.server_string}, " + (f"directory {tor[0]} on the private Tor network (SOCKS "
                                   f"127.0.0.1:{tor[1].socks_port})." if tor is not None else
                                   f"IRC 127.0.0.1:{irc.port} #joinmarket-pit."),
        "The demo's wallets (open in the demo's Electrum: copy a file before opening it):",
    ]
    lines += [f"  {name:<12} {w.storage.path}" for name, w in wallets.items()]
    lines.append("Ctrl-C here stops the demo network and removes its temp dir.")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the network running until Ctrl-C")
    ap.add_argument("--keep-data", action="store_true",
                    help="do not remove the temp dir (wallets, logs) at the end")
    ap.add_argument("--tor", action="store_true",
                    help="run over a private Tor network (onion directory, makers' onions) "
                         "instead of IRC")
    args = ap.parse_args()
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="ejm-demo-"))
    t0 = time.monotonic()
    started: list[Any] = []           # everything with a stop(), stopped in reverse
    rc = 1
    try:
        node = start_bitcoind(workdir / "bitcoind")
        started.append(node)
        step(f"bitcoind -regtest: RPC 127.0.0.1:{node.rpc_port}, height {node.height()}, "
             f"datadir {node.datadir}", t0)
        ex = start_electrumx(workdir / "electrumx", node)
        started.append(ex)
        step(f"ElectrumX: tcp 127.0.0.1:{ex.port}, synced to height {ex.height()}", t0)
        irc: Any = None
        tor_dir: Any = None
        directory: Any = None
        if args.tor:
            from devstack.daemons import start_tor_directory
            from devstack.tor import TorNet, onion_handshake
            tornet = TorNet(workdir / "tor")
            started.append(tornet)
            step("private Tor network: 3 authorities + 2 relays on 127.0.0.1 (Debian's tor; "
                 "it knows only its own authorities)…", t0)
            tornet.start()
            step(f"Tor network bootstrapped: keys {tornet.timings['keys']:.1f}s, consensus "
                 f"{tornet.timings['consensus']:.1f}s, all relays at 100% "
                 f"{tornet.timings['network_ready']:.1f}s (attempt {tornet.attempts})", t0)
            tor_dir = tornet.add_client("directory")
            t_dir = time.monotonic()
            directory = start_tor_directory(workdir / "jm", tor_dir.control_port)
            started.append(directory)
            published = time.monotonic() - t_dir
            taker_tor = tornet.add_client("taker")
            _, reach = onion_handshake(taker_tor.socks_port, directory.extra["location"])
            step(f"directory node {directory.extra['nick']} published "
                 f"{directory.extra['location']} through its Tor's control port in "
                 f"{published:.1f}s; reachable through the taker's Tor {reach:.1f}s later", t0)
            maker_tors = [tornet.add_client(f"maker{i}") for i in range(len(MAKER_FEES))]
        else:
            irc = start_ircd(workdir / "ircd")
            started.append(irc)
            step(f"IRC server (ngircd): 127.0.0.1:{irc.port}", t0)
        electrum = ElectrumNode(workdir / "electrum", ex.server_string)
        started.append(electrum)
        step(f"Electrum: regtest, one server {ex.server_string}, data {electrum.datadir}", t0)
        makers = [(new_wallet(electrum, name=f"maker{i}"), fee) for i, fee in enumerate(MAKER_FEES)]
        taker = new_wallet(electrum, name="taker")
        dest = new_wallet(electrum, name="destination")
        # one block for all payments, then 5 more: PoDLE commitments need 5 confirmations
        fund_wallets(electrum, node, [(w, [50_000_000, 20_000_000]) for w, _ in makers]
                     + [(taker, [30_000_000, 10_000_000])], confirmations=6)
        step("wallets funded: 3 makers (0.7 BTC each), taker 0.4 BTC; the demo mined 6 blocks "
             "(JoinMarket's PoDLE needs coins with 5 confirmations)", t0)
        if args.tor:
            from devstack.jmnet import tor_onion_config
            location = directory.extra["location"]

            def chan_configs(role: str, index: int) -> list:
                if role == "maker":
                    return tor_onion_config(location, maker_tors[index], serving=True)
                return tor_onion_config(location, taker_tor, serving=False)
            net = JMNet(electrum, node, workdir / "jm", chan_configs)
        else:
            net = JMNet(electrum, node, workdir / "jm", irc_config(irc))
        started.append(net)
        for w, fee in makers:
            party = net.add_maker(w, cjfee_r=fee)
            served = ""
            if args.tor:
                log = party.daemon.log()
                served = ", serving " + log.split("onion channel serving at ")[1].split()[0] \
                    if "onion channel serving at " in log else ""
            step(f"maker {party.maker.nick} announced {party.maker.announced[0]['ordertype']} "
                 f"cjfee {fee} (jmdaemon on 127.0.0.1:{party.daemon.port}{served})", t0)
        amount = 12_500_000
        config = quick_config(amount, dest.get_receiving_address(), n=3, orderbook_min_wait=5.0)
        step(f"taker: {amount} sat to {config.destination} with {config.n_makers} makers; fee "
             f"limits: a maker is refused only if its fee is above BOTH {config.limits.max_abs} "
             f"sat and {config.limits.max_rel} of the amount "
             f"({int(amount * float(config.limits.max_rel))} sat)", t0)

        last = [""]

        def progress(ev: dict) -> None:
            line = f"taker: {ev['stage']:>9}: {ev['message']}"
            if line != last[0]:           # the orderbook stage repeats itself while it waits
                step(line, t0)
                last[0] = line
        taker_run = net.taker(taker, CommitmentStore({}, on_change=None), config,
                              progress=progress)
        t_taker = time.monotonic()
        outcome = net.run_taker(taker_run, timeout=300)
        if args.tor and outcome.status == "success":
            step(f"taker start → broadcast over Tor: {time.monotonic() - t_taker:.1f}s", t0)
        if outcome.status != "success":
            step(f"COINJOIN FAILED: {outcome.message}", t0)
            return 1
        for nick, paid in outcome.maker_fees.items():
            step(f"  maker {nick}: fee {paid} sat", t0)
        tx = taker.adb.get_transaction(outcome.txid)
        from electrum_joinmarket.tx.privacy import anonymity_set
        vsize = tx.estimated_size()
        step(f"  miner fee {outcome.miner_fee} sat ({outcome.miner_fee / vsize:.1f} sat/vB, "
             f"{vsize} vB; taker's share {outcome.taker_miner_fee} sat); total cost to the taker "
             f"{outcome.total_cost} sat ({100 * outcome.total_cost / amount:.3f}%)", t0)
        step(f"  anonymity set: {anonymity_set(tx.outputs(), outcome.cj_amount)} equal outputs of "
             f"{outcome.cj_amount} sat among {len(tx.outputs())} outputs", t0)
        node.mine(1)
        assert outcome.txid is not None                    # a successful outcome has one
        confs = electrum.wait_tx(dest, outcome.txid, confirmations=1, timeout=60)
        step(f"coinjoin {outcome.txid} confirmed ({confs} confirmation, in a block the demo "
             f"mined itself — regtest has no miners; SPV-verified by Electrum); destination "
             f"received {dest.get_balance()[0]} sat", t0)
        print(f"TXID {outcome.txid}", flush=True)
        rc = 0
        if args.keep:
            print(attach_help(node, ex, irc, config,
                              {"taker": taker, "destination": dest,
                               **{f"maker{i}": m[0] for i, m in enumerate(makers)}},
                              tor=(directory.extra["location"], taker_tor) if args.tor else None),
                  flush=True)
            while True:
                time.sleep(3600)
        return 0
    except (KeyboardInterrupt, Stop) as exc:
        step(f"stopping ({exc or 'Ctrl-C'})", t0)
        return rc
    finally:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        for service in reversed(started):
            try:
                service.stop()
            except Exception as exc:       # keep stopping the others
                step(f"could not stop {service!r}: {exc!r}", t0)
        stop_electrum_loop()
        if args.keep_data:
            step(f"stopped everything; data kept in {workdir}", t0)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            step(f"stopped everything; removed {workdir}", t0)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
