"""Harness for the maker tests: a real Electrum maker wallet driven by electrum_joinmarket.maker.maker
through its own jmdaemon, and a small *test taker* — devstack/daemons.TestClient on a second
jmdaemon with a real funded Electrum taker wallet — that can behave honestly or not.

The taker makes real PoDLE commitments with its wallet keys (podle.generate_podle), checks the
maker's ``!ioauth`` with ioauth.verify_ioauth (btc_sig, chain), builds the coinjoin with txbuild,
and can tamper with it before ``!tx``.  Everything async runs on Electrum's event loop
(``electrum_node.run``)."""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional

from devstack.daemons import TestClient
from electrum_joinmarket.chain.server import ElectrumChain
from electrum_joinmarket.maker.maker import Maker, MakerSettings
from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.protocol.ioauth import verify_ioauth
from electrum_joinmarket.protocol.podle import PoDLE, generate_podle
from electrum_joinmarket.tx import taker_tx as tb
from jmcore.offers import Offer

LIMITS = FeeLimits(max_abs=20_000, max_rel=Decimal("0.002"))
FEERATE = 2000


def wallet_secret(wallet, address, password=None) -> bytes:
    from electrum.bitcoin import deserialize_privkey
    return deserialize_privkey(wallet.export_private_key(address, password))[1]


def coin_by_outpoint(wallet, outpoint):
    for c in wallet.get_utxos():
        if c.prevout.to_str() == outpoint:
            return c
    raise KeyError(outpoint)


class CallSpy:
    """Records every client→daemon call the maker makes (name, kwargs), then forwards it."""

    def __init__(self, maker: Maker):
        self.calls: list[tuple[str, dict]] = []
        client: Any = maker.client                 # connected by Maker.start
        real = client.call

        async def call(name, **kw):
            self.calls.append((name, kw))
            return await real(name, **kw)
        client.call = call

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]

    def count(self, name) -> int:
        return self.names().count(name)


async def start_maker(wallet, daemon_port, chan, settings: MakerSettings,
                      password=None, network="regtest") -> tuple[Maker, CallSpy]:
    maker = Maker(wallet, settings, password=password)
    await maker.start("127.0.0.1", daemon_port, chan, network)
    return maker, CallSpy(maker)


@dataclass
class Fill:
    """One taker round up to the maker's answer."""
    podle: PoDLE
    amount: int
    offer: Offer
    response: Optional[dict] = None
    ioauth: Any = None                    # VerifiedIoauth
    plan: Any = None
    tx: Any = None


@dataclass
class TestTaker:
    """A taker driving its own jmdaemon directly over AMP (real nick key) with a real wallet."""
    __test__ = False
    electrum_node: Any
    wallet: Any
    password: Optional[str]
    daemon_port: int
    chan: list
    podle_coins: list                     # outpoints usable for commitments
    client: TestClient = field(default_factory=lambda: TestClient("taker"))
    used: set = field(default_factory=set)

    @property
    def nick(self) -> str:
        return self.client.nick

    async def connect(self) -> "TestTaker":
        await self.client.connect(self.daemon_port)
        return self

    async def new_round(self, maker_timeout_sec=20):
        """JMInit → JMStartMC → JMSetup(TAKER) (channels kept after the first round)."""
        c = self.client
        n_proto, n_up, n_done = (c.count("JMInitProto"), c.count("JMUp"),
                                 c.count("JMSetupDone"))
        r = await c.call("JMInit", bcsource="regtest", network="regtest", chan_configs=self.chan,
                         minmakers=1, maker_timeout_sec=maker_timeout_sec, dust_threshold=27300,
                         blacklist_location="cmtdata/commitmentlist")
        assert r == {"accepted": True}, r
        await c.wait_for("JMInitProto", count=n_proto + 1)
        assert (await c.call("JMStartMC", nick=c.nick)) == {"accepted": True}
        await c.wait_for("JMUp", timeout=90, count=n_up + 1)
        r = await c.call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False)
        assert r == {"accepted": True}, r
        await c.wait_for("JMSetupDone", count=n_done + 1)

    async def orderbook(self, maker_nick, pred=lambda o: True, timeout=60) -> list[dict]:
        """The maker's offers in our daemon's orderbook, once ``pred`` holds for one of them."""
        import json
        c = self.client
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            before = c.count("JMOffers")
            assert (await c.call("JMRequestOffers")) == {"accepted": True}
            ev = await c.wait_for("JMOffers", count=before + 1)
            mine = [o for o in json.loads(ev["orderbook"]) if o["counterparty"] == maker_nick]
            if any(pred(o) for o in mine):
                return mine
            if loop.time() > deadline:
                raise AssertionError(f"no matching offer of {maker_nick}: {mine}")
            await asyncio.sleep(0.5)

    # -- commitments
    def podle(self, outpoint=None, index=None, key_outpoint=None) -> PoDLE:
        """A real PoDLE for a taker utxo (the next unused (utxo, index) unless given);
        ``key_outpoint`` signs with another coin's key (P then owns nothing here: T7)."""
        if outpoint is None:
            for op in self.podle_coins:
                for i in range(3):
                    if (op, i) not in self.used:
                        outpoint, index = op, i
                        break
                if outpoint is not None:
                    break
            assert outpoint is not None, "test taker ran out of commitments"
        index = 0 if index is None else index
        self.used.add((outpoint, index))
        coin = coin_by_outpoint(self.wallet, key_outpoint or outpoint)
        secret = wallet_secret(self.wallet, coin.address, self.password)
        return generate_podle(secret, outpoint, index)

    # -- stage 1
    async def fill(self, maker_nick, offer_dict, amount, podle: PoDLE,
                   commitment: Optional[str] = None, revelation: Optional[str] = None) -> Fill:
        c = self.client
        r = await c.call("JMFill", amount=amount,
                         commitment=commitment or podle.fill_commitment(),
                         revelation=revelation or podle.serialize_revelation(),
                         filled_offers={maker_nick: offer_dict})
        assert r == {"accepted": True}, r
        return Fill(podle, amount, Offer.from_dict(dict(offer_dict, counterparty=maker_nick)))

    async def wait_ioauth(self, fill: Fill, maker_nick, timeout=60) -> Fill:
        before = sum(1 for n, kw in self.client.events if n == "JMFillResponse")
        ev = await self.client.wait_for("JMFillResponse", timeout=timeout, count=before + 1)
        fill.response = ev
        assert ev["success"] is True, ev
        utxos, auth_pub, cj_addr, change_addr, btc_sig, maker_pk = ev["ioauth_data"][maker_nick]
        body = " ".join([",".join(utxos), auth_pub, cj_addr, change_addr, btc_sig])
        chain = ElectrumChain(self.electrum_node.network)
        fill.ioauth = await verify_ioauth(body, maker_pk, chain, cj_amount=fill.amount,
                                          offer=fill.offer, min_confirmations=1)
        return fill

    # -- stage 2
    async def build(self, fill: Fill, my_coins, maker_nick, seed=7):
        io = fill.ioauth
        mi = tb.MakerInput(maker_nick, fill.offer, io.utxos, io.cj_addr, io.change_addr)
        w = self.wallet
        unused_change = [a for a in w.get_change_addresses() if not w.adb.is_used(a)]
        unused_recv = [a for a in w.get_receiving_addresses() if not w.adb.is_used(a)]
        plan = tb.plan_coinjoin(cj_amount=fill.amount, my_coins=my_coins, makers=[mi],
                                my_cj_addr=unused_recv[-1], my_change_addr=unused_change[0],
                                feerate=FEERATE, limits=LIMITS,
                                script_type=tb.wallet_script_type(w))
        net = self.electrum_node.network
        from electrum.transaction import Transaction
        prevs = {u.txid: Transaction(await net.get_transaction(u.txid)) for u in io.utxos}
        tx = tb.build_coinjoin(plan, my_coins, prevs, net.get_local_height(), wallet=w,
                               rng=random.Random(seed))
        fill.plan, fill.tx = plan, tx
        return plan, tx

    async def send_tx(self, maker_nick, tx) -> None:
        raw = bytes.fromhex(tx.serialize_to_network(include_sigs=False))
        r = await self.client.call("JMMakeTx", nick_list=[maker_nick], tx=raw)
        assert r == {"accepted": True}, r

    def sigs(self) -> list[str]:
        return [kw["sig"] for n, kw in self.client.events if n == "JMSigReceived"]

    async def wait_sigs(self, n_before, n, timeout=60) -> list[str]:
        await self.client.wait_for("JMSigReceived", timeout=timeout, count=n_before + n)
        return self.sigs()[n_before:n_before + n]

    def close(self):
        self.client.close()


def with_outputs(tx, fn):
    from electrum.transaction import PartialTransaction
    return PartialTransaction.from_io(list(tx.inputs()), fn(list(tx.outputs())),
                                      locktime=tx.locktime, version=tx.version, BIP69_sort=False)


def out(address, value):
    from electrum.transaction import PartialTxOutput
    return PartialTxOutput.from_address_and_value(address, value)
