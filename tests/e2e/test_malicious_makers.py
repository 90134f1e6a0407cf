"""Malicious makers against our taker, over the real IRC pit with three honest Electrum makers
(docs/testing.md M1, M2, M5, M9, M10): the taker never signs a transaction with a bad maker in it,
drops that maker, still completes the coinjoin with the honest ones (retrying when the failure
comes after ``!tx``), and ends clean — no coin frozen, every used commitment kept."""
from __future__ import annotations

import base64

import pytest

from devstack.jmnet import quick_config
from devstack.wallets import SignSpy, confirmed_balance, new_wallet
from electrum_joinmarket.maker.maker import Maker
from electrum_joinmarket.protocol.commitments import CommitmentStore

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

    async def on_JMTXBroadcast(self, **kw):
        if self.mode == "withhold_push":          # keeps the signed tx instead of broadcasting
            self.pushed.append(kw.get("tx"))
            return
        await super().on_JMTXBroadcast(**kw)

    async def on_JMTXReceived(self, **kw):
        self.txs_seen.append(kw.get("tx"))       # what the taker showed us in its !tx
        await super().on_JMTXReceived(**kw)

    async def on_JMAuthReceived(self, **kw):
        if self.mode == "silent":                 # M10: never answers !auth
            return
        await super().on_JMAuthReceived(**kw)

    def _select_coins(self, need, exclude):
        if self.mode == "no-coins":               # its coins are gone or all reserved
            return None
        return super()._select_coins(need, exclude)

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
    cls = type(f"BadMaker{mode}", (BadMaker,), {"mode": mode, "spent_outpoint": spent,
                                                "txs_seen": [], "pushed": []})
    party = irc_net.add_maker(w, cjfee_r="0.0001", maker_cls=cls)   # cheapest: tempting
    yield party
    party.maker.stop()
    party.daemon.stop()
    irc_net.makers.remove(party)


@pytest.mark.parametrize("bad_maker", ["silent", "M1", "M2", "M5", "M9", "M10"], indirect=True)
def test_taker_survives_malicious_maker(bad_maker, irc_net, electrum_node, bitcoind, monkeypatch):
    net = irc_net
    mode = bad_maker.maker.mode
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000, 5_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    signed = SignSpy(taker_w, monkeypatch).calls
    store = CommitmentStore({}, on_change=None)
    # silent makers are waited out: short protocol timeouts (honest local makers answer in
    # well under a second; the taker's daemon ends stage 1 early only when all answered)
    cfg = quick_config(7_000_000, dest.get_receiving_address(), n=4, minimum_makers=3,
                       maker_timeout_sec=8, sig_timeout=8.0)
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


def _output_addresses(raw) -> dict:
    from electrum.transaction import Transaction

    from electrum_joinmarket.tx.taker_tx import wire_to_tx_bytes
    tx = Transaction(wire_to_tx_bytes(raw) if isinstance(raw, str) else bytes(raw))
    return {o.address: o.value for o in tx.outputs()}


@pytest.mark.parametrize("bad_maker", ["no-coins"], indirect=True)
def test_refusing_maker_ends_the_fill_wait_at_once(bad_maker, irc_net, electrum_node, bitcoind):
    """A maker that cannot take part (no unreserved coins when our !auth arrives) says so with
    !error (EJMRefuse): the taker's daemon ends stage 1 as soon as the other three answered,
    not at ``maker_timeout_sec``, the round goes on with the three, and the taker reports the
    maker as refused with its reason (EJMFillRefusals), not as silent. (Whether the refusal or
    the last !ioauth arrives last depends on timing here; tests/daemon/test_offers_push.py has
    the refusal alone end the stage.)"""
    net = irc_net
    timeout = 60
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000, 5_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    cfg = quick_config(7_000_000, dest.get_receiving_address(), n=4, minimum_makers=3,
                       maker_timeout_sec=timeout)
    outcome = net.run_taker(net.taker(taker_w, CommitmentStore({}, on_change=None), cfg))
    bad_nick = bad_maker.maker.nick
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    assert outcome.rounds == 1 and len(outcome.makers) == 3 and bad_nick not in outcome.makers
    assert outcome.ignored_makers[bad_nick] == "refused: refused (no-coins)", \
        outcome.ignored_makers
    assert [r.case for r in bad_maker.maker.refusals] == ["no-coins"]
    # ended on the refusal: the timer would have answered after 60 s
    assert outcome.timings["fill_to_ioauth"] < timeout / 4, outcome.timings


@pytest.mark.parametrize("bad_maker", ["no-coins"], indirect=True)
def test_round_that_needs_the_refusing_maker_fails_at_once_saying_so(bad_maker, irc_net,
                                                                    electrum_node, bitcoind):
    """The same refusal when all four makers are needed and no round may follow: the run fails
    at once (not after maker_timeout_sec) and its message names the maker and its reason."""
    net = irc_net
    timeout = 60
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000, 5_000_000], confirmations=6)
    cfg = quick_config(7_000_000, taker_w.get_unused_address(), n=4, minimum_makers=4,
                       maker_timeout_sec=timeout, max_rounds=1)
    outcome = net.run_taker(net.taker(taker_w, CommitmentStore({}, on_change=None), cfg))
    bad_nick = bad_maker.maker.nick
    assert outcome.status == "failed"
    assert f"too few makers answered (refused: {bad_nick} (refused (no-coins)))" \
        in outcome.message, outcome.message
    assert outcome.ignored_makers == {bad_nick: "refused: refused (no-coins)"}
    assert outcome.timings["total"] < timeout / 4, outcome.timings
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())


@pytest.mark.parametrize("bad_maker", ["M10"], indirect=True)
def test_low_retry_round_uses_fresh_addresses(bad_maker, irc_net, electrum_node, bitcoind,
                                              monkeypatch):
    """A round whose !tx showed our destination and change to makers (one then never signed):
    the replacement round pays to a fresh destination of our wallet and a fresh change address,
    so the second round's makers cannot link it to the first round's transaction."""
    net = irc_net
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000, 5_000_000], confirmations=6)
    signed = SignSpy(taker_w, monkeypatch).calls
    first_dest = taker_w.get_unused_address()
    cfg = quick_config(7_000_000, first_dest, n=4, minimum_makers=3,
                       maker_timeout_sec=8, sig_timeout=8.0)
    outcome = net.run_taker(net.taker(taker_w, CommitmentStore({}, on_change=None), cfg))
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    assert outcome.rounds == 2 and bad_maker.maker.nick not in outcome.makers
    shown = _output_addresses(bad_maker.maker.txs_seen[0])         # round 1's !tx
    ours_shown = {a for a in shown if taker_w.is_mine(a)}
    assert first_dest in ours_shown and len(ours_shown) == 2      # destination and change
    final = {o.address: o.value for o in signed[0].outputs()}
    assert len(signed) == 1 and signed[0].txid() == outcome.txid
    ours_final = {a for a in final if taker_w.is_mine(a)}
    assert len(ours_final) == 2 and not ours_final & ours_shown
    assert outcome.destination in ours_final and final[outcome.destination] == 7_000_000
    assert not taker_w.is_change(outcome.destination)             # a receiving address, as given
    change = (ours_final - {outcome.destination}).pop()
    assert taker_w.is_change(change)


@pytest.mark.parametrize("bad_maker", ["withhold_push"], indirect=True)
def test_low_signed_tx_out_after_a_failure_is_said_and_recorded(bad_maker, irc_net, electrum_node,
                                                                bitcoind, jm_plugin):
    """The maker asked to broadcast our fully signed coinjoin keeps it: the run reports failure
    and says the transaction may still go out and how to rule that out; the wallet session
    keeps watching it, and when the maker broadcasts it later the history records it."""
    from electrum.transaction import Transaction

    from electrum_joinmarket.errors import Failure
    from electrum_joinmarket.runner import HISTORY_KEY
    from electrum_joinmarket.taker import signed
    net, nick = irc_net, bad_maker.maker.nick
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    session = jm_plugin.session_for(taker_w)
    cfg = quick_config(5_000_000, dest.get_receiving_address(), n=1, minimum_makers=1,
                       chooser="cheapest", broadcast="not-self", seen_timeout=5.0)
    outcome = net.run_taker(net.taker(taker_w, session.commitments, cfg, storage=session.storage))
    assert outcome.status == "failed" and outcome.failure == Failure.BROADCAST, outcome.message
    assert len(bad_maker.maker.pushed) == 1
    raw = bad_maker.maker.pushed[0]
    tx = Transaction(raw if isinstance(raw, (bytes, bytearray)) else bytes.fromhex(raw))
    txid = tx.txid()
    assert f"Transaction {txid} was fully signed and handed to maker {nick}" in outcome.message
    assert "may still be broadcast and confirm" in outcome.message
    assert "spend one of its inputs" in outcome.message
    assert set(signed.pending(session.storage)) == {txid}
    assert not [e for e in session.storage.get(HISTORY_KEY, []) if e.get("txid") == txid]
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
    # later, the maker broadcasts it
    electrum_node.run(electrum_node.network.broadcast_transaction(tx))
    electrum_node.wait_tx(taker_w, txid)
    entry = electrum_node.wait(
        lambda: next((e for e in session.storage.get(HISTORY_KEY, []) if e.get("txid") == txid),
                     None), 30, "the late coinjoin in the history")
    assert entry["status"] == "success" and entry["late"] is True
    assert entry["cj_amount"] == 5_000_000 and entry["makers"] == [nick]
    assert entry["destination"] == dest.get_receiving_addresses()[0]
    assert "after its run had reported failure" in entry["message"]
    assert signed.pending(session.storage) == {}
    bitcoind.mine(1)
    electrum_node.wait_tx(dest, txid, confirmations=1)
    assert confirmed_balance(dest) == 5_000_000


@pytest.mark.parametrize("bad_maker", ["two_offers"], indirect=True)
def test_taker_pays_the_offer_it_filled(bad_maker, irc_net, electrum_node, bitcoind):
    """A maker with an expensive offer listed first and the cheap one we fill: the plan, the
    confirmation breakdown and the transaction use the FILLED offer (oid 1)."""
    net = irc_net
    nick = bad_maker.maker.nick
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000], confirmations=6)
    before = confirmed_balance(bad_maker.wallet)
    cfg = quick_config(7_000_000, taker_w.get_unused_address(), n=4, minimum_makers=4)
    outcome = net.run_taker(net.taker(taker_w, CommitmentStore({}, on_change=None), cfg))
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    assert outcome.maker_fees[nick] == 700               # 0.0001 of 7 000 000, not 30 000
    bitcoind.mine(1)
    electrum_node.wait_tx(bad_maker.wallet, outcome.txid, confirmations=1)
    assert confirmed_balance(bad_maker.wallet) - before == 700


def _varint(n: int) -> bytes:
    return bytes([n]) if n < 0xfd else b"\xfd" + n.to_bytes(2, "little")


def _unsigned_tx(inputs, outputs) -> str:
    """Serialize a version-2 transaction with empty scriptSigs (bitcoind's wallet signs it)."""
    b = (2).to_bytes(4, "little") + _varint(len(inputs))
    for txid, n in inputs:
        b += bytes.fromhex(txid)[::-1] + n.to_bytes(4, "little") + b"\x00" + b"\xfd\xff\xff\xff"
    b += _varint(len(outputs))
    for value, script in outputs:
        b += value.to_bytes(8, "little") + _varint(len(script)) + script
    return (b + bytes(4)).hex()


def fund_behind_unindexed_outputs(bitcoind, address: str, sats: int) -> str:
    """Pay ``sats`` to ``address`` as output 3 of a transaction whose outputs 0-2 are OP_RETURN
    (no server indexes them, so the tx cannot be found through the history of its first
    outputs); mined directly (several OP_RETURNs are non-standard, valid in a block)."""
    from electrum.bitcoin import address_to_script
    change = bitcoind.rpc("getrawchangeaddress", "bech32", wallet="miner")
    coin = max(bitcoind.rpc("listunspent", wallet="miner"), key=lambda u: u["amount"])
    value = int(round(coin["amount"] * 10**8))
    outputs = [(0, b"\x6a\x01" + bytes([i])) for i in range(3)]
    outputs += [(sats, address_to_script(address)),
                (value - sats - 20_000, address_to_script(change))]
    signed = bitcoind.rpc("signrawtransactionwithwallet",
                          _unsigned_tx([(coin["txid"], coin["vout"])], outputs), wallet="miner")
    assert signed["complete"]
    bitcoind.rpc("generateblock", change, [signed["hex"]])
    return bitcoind.rpc("decoderawtransaction", signed["hex"])["txid"]


@pytest.fixture
def m14_maker(irc_net, electrum_node, bitcoind):
    w = new_wallet(electrum_node, bitcoind)
    txid = fund_behind_unindexed_outputs(bitcoind, w.get_receiving_addresses()[0], 30_000_000)
    bitcoind.mine(5)
    electrum_node.wait_tx(w, txid, confirmations=6)
    party = irc_net.add_maker(w, cjfee_r="0.0001")            # cheapest: chosen
    yield party, txid
    party.maker.stop()
    party.daemon.stop()
    irc_net.makers.remove(party)


def test_m14_later_steps_reuse_the_ioauth_checks(m14_maker, irc_net, electrum_node, bitcoind):
    """M14: a maker whose funding transaction cannot be located through the history of its first
    outputs passed !ioauth (listunspent gave the height) and then, before !tx, the taker fetched
    that transaction again without the height and failed the whole run. Now what the !ioauth
    check proved is used: no history lookup (nothing asked about scripts outside the coinjoin),
    each maker funding tx fetched once, and the coinjoin completes with that maker in it."""
    party, funding_txid = m14_maker
    net = irc_net
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    cfg = quick_config(7_000_000, dest.get_receiving_address(), n=4, minimum_makers=4)
    taker_txids = {c.prevout.txid.hex() for c in taker_w.get_utxos()}
    taker = net.taker(taker_w, CommitmentStore({}, on_change=None), cfg)
    outcome = net.run_taker(taker)
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    assert outcome.rounds == 1 and party.maker.nick in outcome.makers
    tx = taker_w.adb.get_transaction(outcome.txid)
    maker_txids = {i.prevout.txid.hex() for i in tx.inputs()} - taker_txids
    assert funding_txid in maker_txids
    counts = taker.chain.query_counts
    assert counts["get_history"] == 0, dict(counts)
    assert counts["get_transaction"] == len(maker_txids), dict(counts)   # each fetched once
    bitcoind.mine(1)
    electrum_node.wait_tx(party.wallet, outcome.txid, confirmations=1)
