"""A local regtest JoinMarket network for end-to-end tests and the demo: makers (real Electrum
wallets running electrum_joinmarket.maker.maker, each with its own jmdaemon process) and a taker (a
real Electrum wallet running electrum_joinmarket.taker.taker through its own jmdaemon), over a real IRC
server or our onion directory node in test mode."""
from __future__ import annotations

import logging
import pathlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Optional

from devstack.daemons import start_daemon
from electrum_joinmarket.maker.maker import Maker, MakerSettings
from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.taker.taker import Taker, TakerConfig, TakerOutcome


def onion_config(directory, serving_port: int = 0) -> list[dict]:
    """Onion channel in test mode (plain TCP on 127.0.0.1) through our directory node; a maker
    serves its own (test-mode) onion on ``serving_port`` for direct peer links."""
    cfg = {"type": "onion", "test_mode": True, "directory_nodes": f"127.0.0.1:{directory.port}",
           "onion_serving_host": "127.0.0.1", "serving": bool(serving_port),
           "welcome_timeout": 10}
    if serving_port:
        cfg["onion_serving_port"] = serving_port
    return [cfg]


def tor_onion_config(directory_location: str, client: Any, serving: bool = False,
                     network: str = "regtest") -> list[dict]:
    """The onion channel over a private-network Tor client (``devstack.tor.TorNode``): SOCKS5
    to the directory's onion, and (``serving``) our own onion through the control port. No test
    mode: exactly what a user's configuration does on mainnet."""
    from jmcore.channels import OnionChannelConfig, TorEndpoints
    tor = TorEndpoints(socks5_host="127.0.0.1", socks5_port=client.socks_port,
                       tor_control_host="127.0.0.1", tor_control_port=client.control_port)
    return [OnionChannelConfig(directory_nodes=(directory_location,), btcnet=network, tor=tor,
                               serving=serving, onion_serving_port=0).to_jminit()]


@dataclass
class MakerParty:
    wallet: Any
    maker: Maker
    daemon: Any
    password: Optional[str] = None


@dataclass
class JMNet:
    electrum_node: Any
    bitcoind: Any
    workdir: pathlib.Path
    chan_configs: Any            # list of channel dicts, or callable(role, index) -> list
    makers: list[MakerParty] = field(default_factory=list)
    daemons: list[Any] = field(default_factory=list)
    daemon_args: tuple = ()      # extra jmdaemon flags, e.g. ("--loglevel", "INFO")

    def configs_for(self, role: str, index: int) -> list[dict]:
        if callable(self.chan_configs):
            return self.chan_configs(role, index)
        return self.chan_configs

    def add_maker(self, wallet: Any, *, cjfee_r: str = "0.0002", txfee: int = 0,
                  password: Optional[str] = None, maker_cls: type = Maker,
                  **settings: Any) -> MakerParty:
        daemon = start_daemon(self.workdir, f"maker{len(self.makers)}", extra=self.daemon_args)
        self.daemons.append(daemon)
        ms = MakerSettings(ordertype="sw0reloffer", cjfee_r=cjfee_r, txfee=txfee,
                           minsize=100_000, poll_interval=0.5, **settings)
        maker = maker_cls(wallet, ms, password=password,
                          electrum_network=self.electrum_node.network)
        self.electrum_node.run(maker.start("127.0.0.1", daemon.port,
                                           self.configs_for("maker", len(self.makers)),
                                           network="regtest"), timeout=120)
        party = MakerParty(wallet, maker, daemon, password)
        self.makers.append(party)
        return party

    def taker(self, wallet: Any, commitments: Any, config: TakerConfig, *,
              password: Optional[str] = None,
              progress: Optional[Callable[[dict], None]] = None, rng: Any = None,
              storage: Any = None) -> Taker:
        daemon = start_daemon(self.workdir, f"taker{len(self.daemons)}", extra=self.daemon_args)
        self.daemons.append(daemon)
        return Taker(wallet=wallet, network=self.electrum_node.network, commitments=commitments,
                     config=config, password=password, daemon_host="127.0.0.1",
                     daemon_port=daemon.port, chan_configs=self.configs_for("taker", 0),
                     net_name="regtest", progress=progress, rng=rng, frozen_store=storage)

    def run_taker(self, taker: Taker, timeout: float = 300) -> TakerOutcome:
        return self.electrum_node.run(taker.run(), timeout=timeout)

    def stop(self) -> None:
        for party in self.makers:
            try:
                party.maker.stop()
            except Exception:
                pass
        for d in self.daemons:
            d.stop()
        for party in self.makers:       # an idle loaded wallet keeps Electrum's 10 Hz jobs running
            try:
                self.electrum_node.close_wallet(party.wallet)
            except Exception as exc:
                logging.getLogger(__name__).warning("closing maker wallet: %r", exc)


LOCAL_ORDERBOOK = dict(orderbook_min_wait=0.3, orderbook_quiet=0.2, orderbook_max_wait=30.0,
                       orderbook_poll=0.25)
"""Orderbook policy for a local network (every maker answers within milliseconds): the stage
still ends only when offers from ``n_makers`` makers are in and the book was quiet a moment."""


def quick_config(amount: int, destination: str, n: int = 3, **kw: Any) -> TakerConfig:
    """Test timings: the local orderbook policy, otherwise the defaults."""
    base: dict[str, Any] = dict(amount=amount, destination=destination, n_makers=n,
                                minimum_makers=min(n, 2), limits=FeeLimits(50_000, Decimal("0.01")),
                                **LOCAL_ORDERBOOK, maker_timeout_sec=20, sig_timeout=30.0,
                                seen_timeout=30.0, fallback_feerate=2000)
    base.update(kw)
    return TakerConfig(**base)
