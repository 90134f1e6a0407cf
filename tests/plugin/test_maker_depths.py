"""The maker (yield generator) and JoinMarket depths, on the real regtest stack: a password-
protected Electrum maker wallet with two funded depths behind its own jmdaemon, a test taker
(real wallet, real PoDLE, real nick key) behind another, both on ngircd.

* the offer's maxsize is the richer depth's balance − dust, not the wallet's;
* a coinjoin is paid from the lowest depth that can pay it (Ref ``select_input_mixdepth``), the
  maker's coinjoin output lands in the next depth and its change in the same depth, to the
  satoshi; a larger coinjoin that only the richer depth can pay takes every input from it;
* no transaction spends coins of two depths of the maker; earnings are recorded per depth."""
from __future__ import annotations

import pytest

from devstack.daemons import start_daemon
from devstack.ircd import irc_config
from devstack.procs import wait_until
from devstack.wallets import fund_wallet
from electrum_joinmarket.depths import rules
from electrum_joinmarket.maker.maker import MakerSettings
from electrum_joinmarket.tx import taker_tx as tb

from .maker_harness import TestTaker, start_maker

pytestmark = pytest.mark.stack

SETTINGS = MakerSettings(ordertype="sw0reloffer", cjfee_r="0.0002", txfee=100, minsize=100_000,
                         taker_utxo_age=1, poll_interval=0.5, session_timeout=600)
MAKER_PW = "maker pw"


def offer_dict(maker):
    o = dict(maker.announced[0])
    return {k: o[k] for k in ("oid", "ordertype", "minsize", "maxsize", "txfee", "cjfee")}


def test_maker_offers_the_richer_depth_and_keeps_depths(electrum_node, bitcoind, ircd,
                                                        tmp_path):
    node = electrum_node
    chan = irc_config(ircd)
    mw = node.create_wallet("maker-depths", password=MAKER_PW)
    tw = node.create_wallet("maker-depths-taker")
    d0, a3, b3 = fund_wallet(node, bitcoind, mw, [20_000_000, 8_000_000, 24_000_000])
    tcoins = fund_wallet(node, bitcoind, tw, [15_000_000, 30_000_000, 3_000_000, 12_000_000])
    mdaemon, tdaemon = start_daemon(tmp_path, "maker"), start_daemon(tmp_path, "taker")
    maker = taker = None
    try:
        # the user put the two later deposits in depth 3: depth 0 holds 20M, depth 3 32M
        from electrum_joinmarket.depths.record import DepthRecord
        from electrum_joinmarket.maker.maker import plugin_storage
        rec = DepthRecord(mw, plugin_storage(mw))
        rec.set_coin_depth(a3, 3)
        rec.set_coin_depth(b3, 3)
        assert rec.balances() == {0: 20_000_000, 1: 0, 2: 0, 3: 32_000_000, 4: 0}
        maker, spy = node.run(start_maker(mw, mdaemon.port, chan, SETTINGS, password=MAKER_PW),
                              timeout=180)
        assert maker.announced[0]["maxsize"] == 32_000_000 - 27_300       # not 52M − dust
        taker = TestTaker(node, tw, None, tdaemon.port, chan, [tcoins[2], tcoins[3]])
        node.run(taker.connect())
        txs = []

        def coinjoin(amount, my_coin, podle_coin):
            async def go():
                await taker.new_round()
                book = await taker.orderbook(maker.nick)
                assert book[0]["maxsize"] == maker.announced[0]["maxsize"]
                fill = await taker.fill(maker.nick, offer_dict(maker), amount,
                                        taker.podle(outpoint=podle_coin))
                try:
                    await taker.wait_ioauth(fill, maker.nick)
                except AssertionError:
                    raise AssertionError(f"maker refused: {list(maker.refusals)}") from None
                mine = [c for c in tw.get_spendable_coins() if c.prevout.to_str() == my_coin]
                plan, tx = await taker.build(fill, mine, maker.nick)
                n0 = len(taker.sigs())
                await taker.send_tx(maker.nick, tx)
                for s in await taker.wait_sigs(n0, len(fill.ioauth.utxos)):
                    tb.verify_and_add_maker_sig(tx, s, fill.ioauth.utxos)
                tb.sign_our_inputs(tw, tx, None, plan)
                assert tx.is_complete()
                await node.network.broadcast_transaction(tx)
                return fill, tx
            fill, tx = node.run(go(), timeout=240)
            bitcoind.mine(1)
            node.wait_tx(mw, tx.txid(), confirmations=1)
            txs.append(tx)
            return fill, tx

        # 10M: depth 0 can pay it (lowest first) -> the 20M coin; out to depth 1, change depth 0
        fill, tx = coinjoin(10_000_000, tcoins[0], tcoins[2])
        io = fill.ioauth
        assert list(io.outpoints) == [d0]
        fee1 = fill.offer.real_cjfee(10_000_000)
        assert fee1 == 2000
        node.run(wait_until(lambda: maker.history() and maker.history()[-1]["txid"] ==
                            tx.txid(), 30, "the maker's record"))
        coins = {c.outpoint: c for c in rec.coins()}
        cj_out = f"{tx.txid()}:{[o.address for o in tx.outputs()].index(io.cj_addr)}"
        change = f"{tx.txid()}:{[o.address for o in tx.outputs()].index(io.change_addr)}"
        assert (coins[cj_out].depth, coins[cj_out].value, coins[cj_out].kind,
                coins[cj_out].coinjoins) == (1, 10_000_000, rules.CJ_OUT, 1)
        assert (coins[change].depth, coins[change].value, coins[change].kind) == \
            (0, 20_000_000 - 10_000_000 - 100 + fee1, rules.CJ_CHANGE)
        assert rec.address_depth(io.cj_addr) == 1 and rec.address_depth(io.change_addr) == 0
        assert rec.balances() == {0: 10_001_900, 1: 10_000_000, 2: 0, 3: 32_000_000, 4: 0}
        # the richest depth is still depth 3: the offer did not change, nothing re-announced
        assert maker.offers()[0]["maxsize"] == maker.announced[0]["maxsize"] == 32_000_000 - 27_300

        # 25M: only depth 3 can pay: both its coins, nothing else; out to depth 4, change depth 3
        fill, tx = coinjoin(25_000_000, tcoins[1], tcoins[3])
        io = fill.ioauth
        assert sorted(io.outpoints) == sorted([a3, b3])
        fee2 = fill.offer.real_cjfee(25_000_000)
        assert rec.address_depth(io.cj_addr) == 4 and rec.address_depth(io.change_addr) == 3
        bal = rec.balances()
        assert bal == {0: 10_001_900, 1: 10_000_000, 2: 0, 3: 32_000_000 - 25_000_000 - 100 + fee2,
                       4: 25_000_000}
        node.run(wait_until(lambda: len(maker.history()) == 2, 30, "the second record"))
        assert [h["depth"] for h in maker.history()] == [0, 3]
        assert maker.earned_by_depth() == {0: fee1 - 100, 3: fee2 - 100}
        # no transaction of the run spends coins of two of the maker's depths
        for t in txs:
            assert rec.check_tx_inputs(t) in (0, 3)
        node.run(wait_until(lambda: maker.announced[0]["maxsize"] == 25_000_000 - 27_300, 30,
                            "offer from depth 4, now the richest"))
        print(f"\nMAKER DEPTHS balances={bal} offer_maxsize={maker.announced[0]['maxsize']} "
              f"earned_by_depth={maker.earned_by_depth()}")
    finally:
        if maker is not None:
            maker.stop()
        if taker is not None:
            taker.close()
        for p in (mdaemon, tdaemon):
            p.stop()
        node.close_wallet(mw)
        node.close_wallet(tw)
