"""Malicious makers against our taker, over the real IRC pit with three honest Electrum makers
(docs/testing.md M1, M2, M5, M9, M10): the taker never signs a transaction with a bad maker in it,
drops that maker, still completes the coinjoin with the honest ones (retrying when the failure
comes after ``!tx``), and ends clean — no coin frozen, every used commitment kept."""
from __future__ import annotations

import base64

import pytest

from electrum_joinmarket.protocol.commitments import CommitmentStore
from electrum_joinmarket.maker.maker import Maker
from tests.e2e.conftest import confirmed_balance, new_wallet
from devstack.jmnet import quick_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


class BadMaker(Maker):
    """A maker that misbehaves in one way (``mode``) on the wire, through its real daemon."""
    mode = ""
    spent_outpoint = ""

    async def start(self, *args, **kwargs):
        await super().start(*args, **kwargs)
        real_call = self.client.call

        async def call(name, **kw):
            kw = self.tamper(name, dict(kw))
            if kw is None:
                return None                       # the message is never sent
            return await real_call(name, **kw)
        self.client.call = call

    def offers(self):
        real = super().offers()
        if self.mode != "two_offers":
            return real
        # an expensive offer first in the book, out of range for normal amounts, and the cheap
        # one the taker will actually fill
        greedy = {"oid": 0, "ordertype": real[0]["ordertype"].replace("rel", "abs"),
                  "minsize": 27300, "maxsize": 100_000, "txfee": 0, "cjfee": 30_000}
        return [greedy, dict(real[0], oid=1)]

    async def on_JMAuthReceived(self, **kw):
        if self.mode == "silent":                 # M10: never answers !auth
            return
        await super().on_JMAuthReceived(**kw)

    def tamper(self, name, kw):
        if name == "JMIOAuth":
            if self.mode == "M1":                 # a utxo that does not exist
                kw["utxolist"] = {"ab" * 32 + ":0": {"value": 10**8, "address": kw["cjaddr"]}}
            elif self.mode == "M2":               # an already spent utxo next to its real ones
                kw["utxolist"] = dict(kw["utxolist"],
                                      **{self.spent_outpoint: {"value": 1, "address": kw["cjaddr"]}})
            elif self.mode == "M5":               # btc_sig that signs something else
                sig = bytearray(base64.b64decode(kw["pubkeysig"]))
                sig[-5] ^= 0x01
                kw["pubkeysig"] = base64.b64encode(bytes(sig)).decode()
        if name == "JMTXSigs":
            if self.mode == "M9":                 # a !sig that does not verify
                sigs = []
                for s in kw["sigs"]:
                    raw = bytearray(base64.b64decode(s))
                    raw[8] ^= 0x01
                    sigs.append(base64.b64encode(bytes(raw)).decode())
                kw["sigs"] = sigs
            elif self.mode == "M10":              # disappears after !ioauth
                return None
        return kw


@pytest.fixture
def bad_maker(request, irc_net, electrum_node, bitcoind):
    mode = request.param
    w = new_wallet(electrum_node, bitcoind, [30_000_000, 20_000_000, 5_000_000])
    spent = ""
    if mode == "M2":                              # spend one coin so its outpoint is spent
        tx = electrum_node.pay(w, w.get_unused_address(), 4_000_000)
        spent = tx.inputs()[0].prevout.to_str()
    bitcoind.mine(5)
    electrum_node.wait_synced(w)
    cls = type(f"BadMaker{mode}", (BadMaker,), {"mode": mode, "spent_outpoint": spent})
    party = irc_net.add_maker(w, cjfee_r="0.0001", maker_cls=cls)   # cheapest: tempting
    yield party
    party.maker.stop()
    party.daemon.stop()
    irc_net.makers.remove(party)


@pytest.mark.parametrize("bad_maker", ["silent", "M1", "M2", "M5", "M9", "M10"], indirect=True)
def test_taker_survives_malicious_maker(bad_maker, irc_net, electrum_node, bitcoind, monkeypatch):
    net = irc_net
    mode = bad_maker.maker.mode
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000, 5_000_000], mine=5)
    dest = new_wallet(electrum_node, bitcoind)
    signed = []
    real_sign = taker_w.sign_transaction

    def spy(tx, password, **kw):
        signed.append(tx)
        return real_sign(tx, password, **kw)
    monkeypatch.setattr(taker_w, "sign_transaction", spy)
    store = CommitmentStore({}, on_change=None)
    cfg = quick_config(7_000_000, dest.get_receiving_address(), n=4, minimum_makers=3,
                       maker_timeout_sec=20, sig_timeout=30.0)
    before = confirmed_balance(taker_w)
    outcome = net.run_taker(net.taker(taker_w, store, cfg))
    bad_nick = bad_maker.maker.nick
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    assert bad_nick in outcome.ignored_makers, outcome.ignored_makers
    expected_case = {"silent": "M10", "M1": "M1", "M2": "M2", "M5": "M5", "M9": "M9",
                     "M10": "M10"}[mode]
    assert outcome.ignored_makers[bad_nick].startswith(expected_case), outcome.ignored_makers
    assert bad_nick not in outcome.makers and len(outcome.makers) == 3
    # our wallet signed exactly one transaction: the final one, without the bad maker's coins
    assert len(signed) == 1 and signed[0].txid() == outcome.txid
    bad_coins = {c.prevout.to_str() for c in bad_maker.wallet.get_utxos()}
    assert not bad_coins & {i.prevout.to_str() for i in signed[0].inputs()}
    # clean state: nothing frozen; every commitment we sent is still recorded as used
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
    assert len(store.used()) == outcome.rounds
    bitcoind.mine(1)
    electrum_node.wait_tx(taker_w, outcome.txid, confirmations=1)
    assert before - confirmed_balance(taker_w) == 7_000_000 + outcome.total_cost


@pytest.mark.parametrize("bad_maker", ["two_offers"], indirect=True)
def test_taker_pays_the_offer_it_filled(bad_maker, irc_net, electrum_node, bitcoind):
    """A maker with an expensive offer listed first and the cheap one we fill: the plan, the
    confirmation breakdown and the transaction use the FILLED offer (oid 1)."""
    net = irc_net
    nick = bad_maker.maker.nick
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000], mine=5)
    before = confirmed_balance(bad_maker.wallet)
    cfg = quick_config(7_000_000, taker_w.get_unused_address(), n=4, minimum_makers=4)
    outcome = net.run_taker(net.taker(taker_w, CommitmentStore({}, on_change=None), cfg))
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    assert outcome.maker_fees[nick] == 700               # 0.0001 of 7 000 000, not 30 000
    bitcoind.mine(1)
    electrum_node.wait_tx(bad_maker.wallet, outcome.txid, confirmations=1)
    assert confirmed_balance(bad_maker.wallet) - before == 700
