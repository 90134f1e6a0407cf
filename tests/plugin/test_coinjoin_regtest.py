"""Coinjoins with real Electrum 4.8 wallets on the regtest stack, built, checked and signed by
electrum_joinmarket.tx.taker_tx (taker) and electrum_joinmarket.tx.maker_tx (makers), without messaging:
the ``!tx`` and ``!sig`` payloads are handed over in-process in their wire form. Maker input
records (UtxoInfo) come from bitcoind's ``gettxout``; previous transactions from ElectrumX through
Electrum's network. Balances are asserted to the satoshi.

Refusal tests assert that the refusing side's wallet is never asked to sign (a spy replaces
``wallet.sign_transaction``) and that none of its inputs carries a signature."""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Optional

import pytest

from devstack.bitcoind import btc_to_sat
from devstack.wallets import SignSpy, fund_wallets, new_wallet
from electrum_joinmarket.chain.utxo import UtxoInfo
from electrum_joinmarket.market import feemodel as fm
from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.tx import maker_tx as mt
from electrum_joinmarket.tx import taker_tx as tb
from jmcore.offers import Offer, parse_offer

pytestmark = pytest.mark.stack

OFFER_A = parse_offer("!sw0reloffer 0 27300 1000000000 1000 0.0002", "makerA")
OFFER_B = parse_offer("!sw0absoffer 0 27300 1000000000 500 5000", "makerB")
LIMITS = FeeLimits(max_abs=20_000, max_rel=Decimal("0.002"))
FALLBACK_FEERATE = 2000


# ------------------------------------------------------------------------------------------
# helpers: a maker acting for one wallet; chain records
# ------------------------------------------------------------------------------------------

def utxo_info(bitcoind, outpoint: str) -> UtxoInfo:
    txid, n = outpoint.split(":")
    r = bitcoind.rpc("gettxout", txid, int(n), False)
    assert r is not None, f"{outpoint} not unspent"
    conf = r["confirmations"]
    return UtxoInfo(outpoint, btc_to_sat(r["value"]), bytes.fromhex(r["scriptPubKey"]["hex"]),
                    r["scriptPubKey"].get("address"), bitcoind.height() - conf + 1, conf, True)


def prev_txs(electrum_node, txids):
    from electrum.transaction import Transaction
    net = electrum_node.network
    return {t: Transaction(electrum_node.run(net.get_transaction(t))) for t in set(txids)}


@dataclass
class Maker:
    wallet: Any
    offer: Offer
    coins: list
    cj_addr: str
    change_addr: str
    password: Optional[str] = None

    @classmethod
    def of(cls, wallet, offer, password=None, n_coins=None):
        coins = sorted(wallet.get_spendable_coins(), key=lambda c: c.prevout.to_str())
        if n_coins is not None:
            coins = coins[:n_coins]
        return cls(wallet, offer, coins, wallet.get_receiving_addresses()[7],
                   wallet.get_change_addresses()[0], password)

    def ioauth(self, bitcoind) -> tb.MakerInput:
        assert self.offer.counterparty is not None          # parse_offer(..., nick) sets it
        return tb.MakerInput(self.offer.counterparty, self.offer,
                             tuple(utxo_info(bitcoind, c.prevout.to_str()) for c in self.coins),
                             self.cj_addr, self.change_addr)

    def on_tx(self, wire: str, cj_amount: int) -> list[str]:
        """The maker's !tx handler: verify, then one !sig per own input."""
        raw = tb.wire_to_tx_bytes(wire)
        tx = mt.verify_taker_tx(raw, self.coins, self.cj_addr, self.change_addr, cj_amount,
                                self.offer, wallet=self.wallet)
        return mt.maker_sign(self.wallet, tx, self.coins, self.password)


def assert_unsigned(tx, outpoints):
    for txin in tx.inputs():
        if txin.prevout.to_str() in outpoints:
            assert not txin.witness and not txin.script_sig and not txin.sigs_ecdsa


def feerate(electrum_node, seed=5, fallback=FALLBACK_FEERATE):
    """Regtest has no estimates: the configured fallback, randomised upward (seeded)."""
    return electrum_node.run(fm.fetch_feerate(electrum_node.network, fallback_feerate=fallback,
                                              rng=random.Random(seed)))


def taker_side(electrum_node, bitcoind, taker, makers, cj_amount, *, my_cj_addr,
               my_change_addr, sweep=False, rate=None, limits=LIMITS, seed=11):
    coins = taker.get_spendable_coins()
    rate = rate or feerate(electrum_node)
    mis = [m.ioauth(bitcoind) for m in makers]
    est = None
    if sweep:
        est = fm.sweep_fee_estimate(len(coins), len(makers), rate)
        cj_amount = fm.solve_sweep_cj_amount([m.offer for m in makers],
                                             sum(c.value_sats() for c in coins), est)
    plan = tb.plan_coinjoin(cj_amount=cj_amount, my_coins=coins, makers=mis,
                            my_cj_addr=my_cj_addr, my_change_addr=my_change_addr, feerate=rate,
                            limits=limits, script_type=tb.wallet_script_type(taker),
                            sweep=sweep, sweep_est_fee=est)
    prevs = prev_txs(electrum_node, [u.txid for m in mis for u in m.utxos])
    tx = tb.build_coinjoin(plan, coins, prevs, electrum_node.network.get_local_height(),
                           wallet=taker, rng=random.Random(seed))
    return plan, tx


def run_coinjoin(electrum_node, bitcoind, taker, taker_pw, makers, cj_amount, *, my_cj_addr,
                 my_change_addr, sweep=False, rate=None):
    plan, tx = taker_side(electrum_node, bitcoind, taker, makers, cj_amount,
                          my_cj_addr=my_cj_addr, my_change_addr=my_change_addr, sweep=sweep,
                          rate=rate)
    wire = tb.tx_to_wire(tx)
    for m, mi in zip(makers, plan.makers, strict=True):
        for sig in m.on_tx(wire, plan.cj_amount):
            tb.verify_and_add_maker_sig(tx, sig, mi.utxos)
    assert not tx.is_complete()
    tb.sign_our_inputs(taker, tx, taker_pw, plan)
    assert tx.is_complete()
    assert bitcoind.rpc("testmempoolaccept", [tx.serialize()])[0]["allowed"] is True
    electrum_node.run(electrum_node.network.broadcast_transaction(tx))
    bitcoind.mine(1)
    return plan, tx


def confirmed(electrum_node, wallets, txid):
    for w in wallets:
        assert electrum_node.wait_tx(w, txid, confirmations=1) >= 1


# ------------------------------------------------------------------------------------------
# whole coinjoins
# ------------------------------------------------------------------------------------------

def test_coinjoin_taker_and_two_makers_balances_to_the_satoshi(bitcoind, electrum_node,
                                                              make_wallet):
    """Taker (password-protected) + makers A (two inputs) and B: built, verified by each maker,
    signed by all, accepted by bitcoind via Electrum's broadcast, confirmed in every wallet.
    Taker pays Σreal_cjfee + its miner-fee share; each maker gains real_cjfee − txfee."""
    taker = make_wallet(fund=[15_000_000, 10_000_000], password="taker pw")
    wa = make_wallet(fund=[30_000_000, 20_000_000])
    wb = make_wallet(fund=[30_000_000])
    before = {w: w.get_balance()[0] for w in (taker, wa, wb)}
    makers = [Maker.of(wa, OFFER_A), Maker.of(wb, OFFER_B)]
    cj = 10_000_000
    rate = feerate(electrum_node, fallback=10_000)   # high enough for a taker fee share
    assert 10_000 <= rate <= 12_000
    plan, tx = run_coinjoin(electrum_node, bitcoind, taker, "taker pw", makers, cj,
                            my_cj_addr=taker.get_receiving_addresses()[9],
                            my_change_addr=taker.get_change_addresses()[0], rate=rate)
    confirmed(electrum_node, [taker, wa, wb], tx.txid())
    a = plan.amounts
    assert [m.real_cjfee for m in a.makers] == [2000, 5000]
    assert [m.change for m in a.makers] == [50_000_000 - cj - 1000 + 2000,
                                           30_000_000 - cj - 500 + 5000]
    raw = bitcoind.rpc("getrawtransaction", tx.txid(), True)
    assert raw["confirmations"] == 1 and raw["locktime"] == tx.locktime
    assert sorted(btc_to_sat(o["value"]) for o in raw["vout"]) == sorted(
        [cj] * 3 + [a.my_change] + [m.change for m in a.makers])
    miner_fee = 25_000_000 + 50_000_000 + 30_000_000 - sum(btc_to_sat(o["value"])
                                                           for o in raw["vout"])
    assert miner_fee == a.miner_fee == max(a.total_txfee, a.maker_txfee_total) + a.dropped_change
    assert a.my_txfee == a.total_txfee - 1500 > 0
    assert a.my_change == 25_000_000 - cj - 7000 - a.my_txfee
    deltas = {w: w.get_balance()[0] - before[w] for w in (taker, wa, wb)}
    assert deltas[taker] == -(7000 + a.my_txfee) == -a.taker_cost
    assert deltas[wa] == 2000 - 1000
    assert deltas[wb] == 5000 - 500
    print(f"\nCOINJOIN txid={tx.txid()} feerate={plan.feerate} est_fee={a.total_txfee} "
          f"miner_fee={a.miner_fee} my_txfee={a.my_txfee} taker_delta={deltas[taker]} "
          f"makerA_delta={deltas[wa]} makerB_delta={deltas[wb]}")


def test_sweep_coinjoin_no_taker_change(bitcoind, electrum_node, make_wallet):
    """Sweep: the taker spends all its coins into one coinjoin output (to a destination
    wallet), no change; maker B is password-protected. Balances to the satoshi."""
    taker = make_wallet(fund=[12_000_000, 7_654_321])
    dest = make_wallet()
    wa = make_wallet(fund=[40_000_000])
    wb = make_wallet(fund=[25_000_000], password="maker pw")
    before = {w: w.get_balance()[0] for w in (taker, wa, wb, dest)}
    makers = [Maker.of(wa, OFFER_A), Maker.of(wb, OFFER_B, password="maker pw")]
    plan, tx = run_coinjoin(electrum_node, bitcoind, taker, None, makers, 0,
                            my_cj_addr=dest.get_receiving_addresses()[0], my_change_addr=None,
                            sweep=True)
    confirmed(electrum_node, [taker, wa, wb, dest], tx.txid())
    a = plan.amounts
    total = 19_654_321
    assert a.sweep and a.my_change == 0 and plan.my_change_addr is None
    assert len(tx.outputs()) == 5
    cj = a.cj_amount
    # zero-change solution: cj = (total - my_txfee - absfee) / (1 + relfee), half-even
    assert cj == fm.solve_sweep_cj_amount([OFFER_A, OFFER_B], total,
                                          fm.sweep_fee_estimate(2, 2, plan.feerate))
    real_a, real_b = OFFER_A.real_cjfee(cj), 5000
    assert [m.real_cjfee for m in a.makers] == [real_a, real_b]
    deltas = {w: w.get_balance()[0] - before[w] for w in (taker, wa, wb, dest)}
    assert taker.get_balance() == (0, 0, 0)
    assert deltas[taker] == -total
    assert deltas[dest] == cj
    assert deltas[wa] == real_a - 1000
    assert deltas[wb] == real_b - 500
    assert total - cj - real_a - real_b == a.my_txfee
    assert a.miner_fee == a.my_txfee + 1500 > 0
    raw = bitcoind.rpc("getrawtransaction", tx.txid(), True)
    assert sum(btc_to_sat(o["value"]) for o in raw["vout"]) == total + 65_000_000 - a.miner_fee
    print(f"\nSWEEP txid={tx.txid()} feerate={plan.feerate} cj={cj} miner_fee={a.miner_fee} "
          f"taker_delta={deltas[taker]} dest_delta={deltas[dest]} makerA_delta={deltas[wa]} "
          f"makerB_delta={deltas[wb]}")


def test_coinjoin_p2sh_p2wpkh_taker_and_maker(bitcoind, electrum_node, make_wallet):
    """p2sh-p2wpkh ('sw' offers): a p2wpkh-p2sh taker and maker B (3-push !sig with the
    scriptCode), maker A native; accepted by bitcoind, balances to the satoshi."""
    from electrum.bip32 import BIP32Node

    def p2sh_wallet(name, fund, password=None):
        xprv = BIP32Node.from_rootseed(name.encode() * 4, xtype="p2wpkh-p2sh").to_xprv()
        w = new_wallet(electrum_node, bitcoind, fund, name=f"txbuild-{name}", password=password,
                       seed=xprv)
        assert w.txin_type == "p2wpkh-p2sh" and tb.wallet_script_type(w) == "p2sh-p2wpkh"
        return w

    taker = p2sh_wallet("shtaker", [9_000_000, 8_000_000], password="pw")
    wb = p2sh_wallet("shmakerb", [22_000_000])
    wa = make_wallet(fund=[33_000_000])
    offer_b = parse_offer("!swabsoffer 0 27300 1000000000 300 2500", "makerB")
    before = {w: w.get_balance()[0] for w in (taker, wa, wb)}
    makers = [Maker.of(wa, OFFER_A), Maker.of(wb, offer_b)]
    cj = 6_000_000
    rate = feerate(electrum_node, seed=9, fallback=5000)
    plan, tx = run_coinjoin(electrum_node, bitcoind, taker, "pw", makers, cj,
                            my_cj_addr=taker.get_receiving_addresses()[9],
                            my_change_addr=taker.get_change_addresses()[0], rate=rate)
    confirmed(electrum_node, [taker, wa, wb], tx.txid())
    a = plan.amounts
    # 2 p2sh-p2wpkh (ours) + 1 p2sh-p2wpkh (B) + 1 p2wpkh (A); outputs: 4 p2sh + 2 p2wpkh
    assert a.total_txfee == fm.estimate_tx_fee({"p2sh-p2wpkh": 3, "p2wpkh": 1},
                                               {"p2sh": 4, "p2wpkh": 2}, rate)
    real_a = OFFER_A.real_cjfee(cj)
    assert real_a == 1200
    deltas = {w: w.get_balance()[0] - before[w] for w in (taker, wa, wb)}
    assert deltas[taker] == -(real_a + 2500 + a.my_txfee) == -a.taker_cost
    assert deltas[wa] == real_a - 1000 and deltas[wb] == 2500 - 300
    sh_in = [t for t in tx.inputs() if t.prevout.to_str() in
             {c.prevout.to_str() for c in makers[1].coins}][0]
    assert len(sh_in.script_sig) == 23 and len(sh_in.witness_elements()) == 2
    print(f"\nP2SH txid={tx.txid()} feerate={rate} miner_fee={a.miner_fee} "
          f"taker_delta={deltas[taker]} makerA_delta={deltas[wa]} makerB_delta={deltas[wb]}")


# ------------------------------------------------------------------------------------------
# refusals (one shared set of funded wallets; nothing is broadcast)
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def party(electrum_node, bitcoind):
    pw = "refusal pw"
    plan = (("taker", [25_000_000], pw), ("a", [30_000_000], None),
            ("b", [20_000_000, 5_000_000], None))
    wallets = {name: new_wallet(electrum_node, name=f"txbuild-refusals-{name}", password=password)
               for name, _, password in plan}
    fund_wallets(electrum_node, bitcoind, [(wallets[name], fund) for name, fund, _ in plan])
    yield dict(wallets, pw=pw)
    for w in wallets.values():
        electrum_node.close_wallet(w)


def _makers(party, **kw):
    b_coins = sorted(party["b"].get_spendable_coins(), key=lambda c: -c.value_sats())
    mb = Maker.of(party["b"], kw.get("offer_b", OFFER_B))
    mb.coins = b_coins[:1]                       # offers only its 20 000 000 coin
    return [Maker.of(party["a"], kw.get("offer_a", OFFER_A)), mb]


def _build(electrum_node, bitcoind, party, makers, cj=10_000_000, limits=LIMITS):
    t = party["taker"]
    return taker_side(electrum_node, bitcoind, t, makers, cj,
                      my_cj_addr=t.get_receiving_addresses()[9],
                      my_change_addr=t.get_change_addresses()[0], limits=limits)


def _with_outputs(tx, fn):
    from electrum.transaction import PartialTransaction
    new = PartialTransaction.from_io(list(tx.inputs()), fn(list(tx.outputs())),
                                     locktime=tx.locktime, version=tx.version, BIP69_sort=False)
    return new


def _out(address, value):
    from electrum.transaction import PartialTxOutput
    return PartialTxOutput.from_address_and_value(address, value)


def _sign_all_makers(tx, plan, makers):
    wire = tb.tx_to_wire(tx)
    for m, mi in zip(makers, plan.makers, strict=True):
        for sig in m.on_tx(wire, plan.cj_amount):
            tb.verify_and_add_maker_sig(tx, sig, mi.utxos)


def test_m9_sig_for_wrong_input_or_amount_refused(electrum_node, bitcoind, party, monkeypatch):
    """A maker's real !sig tried against another maker's inputs, a !sig over another
    transaction, and a !sig made for another amount all fit no input; our wallet never signs."""
    from electrum.bitcoin import deserialize_privkey
    from electrum_ecc import ECPrivkey
    makers = _makers(party)
    plan, tx = _build(electrum_node, bitcoind, party, makers)
    spy = SignSpy(party["taker"], monkeypatch)
    sigs_a = makers[0].on_tx(tb.tx_to_wire(tx), plan.cj_amount)
    with pytest.raises(tb.BadMakerSignature):
        tb.verify_and_add_maker_sig(tx, sigs_a[0], plan.makers[1].utxos)
    # maker B signs a different transaction (one output changed): valid sig, wrong sighash
    other = _with_outputs(tx, lambda outs: [o if o.address != plan.my_cj_addr
                                            else _out(o.address, o.value + 1) for o in outs])
    sig_other = makers[1].on_tx(tb.tx_to_wire(other), plan.cj_amount)[0]
    with pytest.raises(tb.BadMakerSignature):
        tb.verify_and_add_maker_sig(tx, sig_other, plan.makers[1].utxos)
    # maker A's key signs its input for an amount 1 sat above the chain's
    u = plan.makers[0].utxos[0]
    idx = [i for i, t in enumerate(tx.inputs()) if t.prevout.to_str() == u.outpoint][0]
    _, secret, _ = deserialize_privkey(party["a"].export_private_key(u.address, None))
    from electrum.descriptor import get_singlesig_descriptor_from_legacy_leaf
    from electrum.transaction import PartialTransaction, Transaction, TxOutput
    t2 = PartialTransaction.from_tx(Transaction(tx.serialize_to_network(include_sigs=False)))
    pub = ECPrivkey(secret).get_public_key_bytes(compressed=True)
    t2.inputs()[idx].script_descriptor = get_singlesig_descriptor_from_legacy_leaf(
        pubkey=pub.hex(), script_type="p2wpkh")
    t2.inputs()[idx].witness_utxo = TxOutput(scriptpubkey=u.script_pubkey, value=u.value + 1)
    bad = tb.encode_sig_payload(t2.sign_txin(idx, secret), pub)
    with pytest.raises(tb.BadMakerSignature):
        tb.verify_and_add_maker_sig(tx, bad, plan.makers[0].utxos)
    assert not any(t.witness for t in tx.inputs())
    # the genuine sigs still fit (the refusals left tx untouched)
    for s in sigs_a:
        tb.verify_and_add_maker_sig(tx, s, plan.makers[0].utxos)
    assert spy.count == 0
    assert_unsigned(tx, set(plan.my_inputs))


@pytest.mark.parametrize("case", ["missing", "short", "change_short"])
def test_our_output_missing_or_short_refused(electrum_node, bitcoind, party, monkeypatch, case):
    """The transaction about to be signed lacks our coinjoin output, has it 1 sat short, or
    has our change 1 sat short (makers even signed it): UnsafeTransaction, wallet not called."""
    makers = _makers(party)
    plan, tx = _build(electrum_node, bitcoind, party, makers)

    def fn(outs):
        if case == "missing":
            return [o for o in outs if o.address != plan.my_cj_addr]
        target = plan.my_cj_addr if case == "short" else plan.my_change_addr
        return [o if o.address != target else _out(o.address, o.value - 1) for o in outs]
    bad = _with_outputs(tx, fn)
    spy = SignSpy(party["taker"], monkeypatch)
    with pytest.raises(tb.UnsafeTransaction):
        tb.sign_our_inputs(party["taker"], bad, party["pw"], plan)
    assert spy.count == 0
    assert_unsigned(bad, set(plan.my_inputs))


def test_m12_fees_above_limits_refused(electrum_node, bitcoind, party, monkeypatch):
    """Maker B's net fee (4 500) is above both limits: refused when planning, and a tx planned
    under looser limits is refused at signing time; wallet not called."""
    tight = FeeLimits(max_abs=4000, max_rel=Decimal("0.0002"))
    makers = _makers(party)
    with pytest.raises(tb.FeeLimitExceeded) as e:
        _build(electrum_node, bitcoind, party, makers, limits=tight)
    assert e.value.nick == "makerB"
    plan, tx = _build(electrum_node, bitcoind, party, makers)
    _sign_all_makers(tx, plan, makers)
    spy = SignSpy(party["taker"], monkeypatch)
    with pytest.raises(tb.FeeLimitExceeded):
        tb.sign_our_inputs(party["taker"], tx, party["pw"], replace(plan, limits=tight))
    assert spy.count == 0
    assert_unsigned(tx, set(plan.my_inputs))
    # and with the user's limits it signs and completes
    tb.sign_our_inputs(party["taker"], tx, party["pw"], plan)
    assert spy.count == 1 and tx.is_complete()
    assert bitcoind.rpc("testmempoolaccept", [tx.serialize()])[0]["allowed"] is True


def test_m12_taker_cost_above_allowance_refused_at_signing(electrum_node, bitcoind, party,
                                                           monkeypatch):
    """The last fee check before signing (tx/checks.check_taker_cost) reached with everything
    else valid: two makers ask a large ``txfee`` (20 000 each, passed on to the miners) and a
    fee only 1 000 above it, so each maker's gain is within the user's limits, every output is
    as agreed and the miner-fee rate is far below absurd — but we would pay 42 000 sats for a
    coinjoin the limits allow ~7 700 for.  Planned under looser limits, the makers even signed:
    at signing time under the user's limits it is refused and our wallet is never asked to
    sign; under the looser limits the same transaction signs and is valid."""
    greedy = parse_offer("!sw0absoffer 0 27300 1000000000 20000 21000", "makerA")
    greedy_b = parse_offer("!sw0absoffer 0 27300 1000000000 20000 21000", "makerB")
    makers = _makers(party, offer_a=greedy, offer_b=greedy_b)
    loose = FeeLimits(max_abs=50_000, max_rel=Decimal("0.01"))
    tight = FeeLimits(max_abs=2_000, max_rel=Decimal("0.0001"))     # 2 000 sats per maker
    plan, tx = _build(electrum_node, bitcoind, party, makers, limits=loose)
    assert plan.amounts.taker_cost == 42_000
    assert [m.net_fee for m in plan.amounts.makers] == [1000, 1000]
    assert all(tight.allows(1000, plan.cj_amount) for _ in makers)
    _sign_all_makers(tx, plan, makers)
    user = replace(plan, limits=tight)
    spy = SignSpy(party["taker"], monkeypatch)
    with pytest.raises(tb.FeeLimitExceeded, match=r"we would pay 42000 sats in fees, limit \d+"):
        tb.sign_our_inputs(party["taker"], tx, party["pw"], user)
    assert spy.calls == []
    assert_unsigned(tx, set(plan.my_inputs))
    tb.sign_our_inputs(party["taker"], tx, party["pw"], plan)
    assert len(spy.calls) == 1 and tx.is_complete()
    assert bitcoind.rpc("testmempoolaccept", [tx.serialize()])[0]["allowed"] is True


def test_m7_dust_maker_change_refused(electrum_node, bitcoind, party, monkeypatch):
    """Maker B's 20 000 000 coin at cj 19 977 201 leaves it 27 299 change (< 27 300): refused
    at planning; a plan doctored to accept it is refused at signing; wallet not called."""
    makers = _makers(party)
    with pytest.raises(fm.DustMakerChange) as e:
        _build(electrum_node, bitcoind, party, makers[1:], cj=19_977_201)
    assert e.value.nick == "makerB" and e.value.change == 27_299
    plan, tx = _build(electrum_node, bitcoind, party, makers[1:], cj=19_977_200)
    assert plan.amounts.makers[0].change == 27_300
    dust = replace(plan.amounts, makers=(replace(plan.amounts.makers[0], change=27_299),))
    doctored = replace(plan, amounts=dust)
    bad = _with_outputs(tx, lambda outs: [o if o.address != makers[1].change_addr
                                          else _out(o.address, 27_299) for o in outs])
    spy = SignSpy(party["taker"], monkeypatch)
    with pytest.raises(tb.UnsafeTransaction, match="dust"):
        tb.sign_our_inputs(party["taker"], bad, party["pw"], doctored)
    assert spy.count == 0
    assert_unsigned(bad, set(plan.my_inputs))


# ---- maker side ----------------------------------------------------------------------------

def _maker_refuses(monkeypatch, maker, wire, cj_amount, case):
    spy = SignSpy(maker.wallet, monkeypatch)
    with pytest.raises(mt.TakerTxRejected) as e:
        maker.on_tx(wire, cj_amount)
    assert e.value.case == case
    assert spy.count == 0


@pytest.mark.parametrize("case,kind", [("T1", "cj_missing"), ("T2", "cj_short"),
                                       ("T3", "change_missing"), ("T3", "change_short")])
def test_maker_refuses_bad_outputs(electrum_node, bitcoind, party, monkeypatch, case, kind):
    """T1 no coinjoin output, T2 coinjoin output 1 sat short, T3 change missing or 1 sat
    short: the maker sends no !sig and its wallet is never asked to sign."""
    makers = _makers(party)
    plan, tx = _build(electrum_node, bitcoind, party, makers)
    m = makers[0]

    def fn(outs):
        if kind == "cj_missing":
            return [o for o in outs if o.address != m.cj_addr]
        if kind == "change_missing":
            return [o for o in outs if o.address != m.change_addr]
        target = m.cj_addr if kind == "cj_short" else m.change_addr
        return [o if o.address != target else _out(o.address, o.value - 1) for o in outs]
    _maker_refuses(monkeypatch, m, tb.tx_to_wire(_with_outputs(tx, fn)), plan.cj_amount, case)
    # the honest tx is accepted by the same maker
    assert len(m.on_tx(tb.tx_to_wire(tx), plan.cj_amount)) == len(m.coins)


def test_t4_maker_coin_not_offered_refused(electrum_node, bitcoind, party, monkeypatch):
    """The taker adds maker B's second (not offered) coin as an input: the maker refuses in
    verification, and maker_sign refuses too if called on that tx directly."""
    from electrum.transaction import PartialTransaction
    makers = _makers(party)
    plan, tx = _build(electrum_node, bitcoind, party, makers)
    mb = makers[1]
    offered = {c.prevout.to_str() for c in mb.coins}
    extra = [c for c in party["b"].get_spendable_coins() if c.prevout.to_str() not in offered]
    assert len(extra) == 1
    evil = PartialTransaction.from_io(list(tx.inputs()) + extra, list(tx.outputs()),
                                      locktime=tx.locktime, version=2, BIP69_sort=False)
    _maker_refuses(monkeypatch, mb, tb.tx_to_wire(evil), plan.cj_amount, "T4")
    spy = SignSpy(mb.wallet, monkeypatch)
    with pytest.raises(mt.TakerTxRejected):
        mt.maker_sign(mb.wallet, evil, mb.coins, None)
    assert spy.count == 0
    # an offered coin left out is refused as well
    fewer = PartialTransaction.from_io([t for t in tx.inputs() if t.prevout.to_str()
                                        not in offered], list(tx.outputs()), BIP69_sort=False)
    _maker_refuses(monkeypatch, mb, tb.tx_to_wire(fewer), plan.cj_amount, "T4")


def test_t9_negative_net_fee_refused(electrum_node, bitcoind, party, monkeypatch):
    """An offer whose txfee exceeds its coinjoin fee at this amount (net fee −1): the maker
    refuses the !tx; a net fee of exactly 0 is accepted (reference rule)."""
    neg = parse_offer("!sw0absoffer 0 27300 1000000000 5001 5000", "makerB")
    makers = _makers(party, offer_b=neg)
    plan, tx = _build(electrum_node, bitcoind, party, makers)
    _maker_refuses(monkeypatch, makers[1], tb.tx_to_wire(tx), plan.cj_amount, "T9")
    zero = parse_offer("!sw0absoffer 0 27300 1000000000 5000 5000", "makerB")
    makers = _makers(party, offer_b=zero)
    plan, tx = _build(electrum_node, bitcoind, party, makers)
    assert len(makers[1].on_tx(tb.tx_to_wire(tx), plan.cj_amount)) == 1
