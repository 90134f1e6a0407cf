"""Unit tests of the coinjoin size/fee model, the amount solvers, the !sig codec and the taker's
pre-signing check (no network: transactions are built from fabricated previous transactions and
keys with Electrum's own classes). Amounts are asserted to the satoshi."""
from __future__ import annotations

import asyncio
import base64
import random
from decimal import Decimal

import pytest

from electrum_joinmarket.chain.utxo import UtxoInfo
from electrum_joinmarket.market import feemodel as fm
from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.tx import taker_tx as tb
from jmcore.offers import Offer, parse_offer
from tests.vectors import load

FEES = load("fees.json")
SIGV = load("ioauth_and_sig.json")


# ------------------------------------------------------------------------------------------
# size model and fee figures (PROTOCOL §8.3, fees.json)
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,ins,outs", [("3in_2out_p2wpkh", 3, 2), ("10in_9out_p2wpkh", 10, 9)])
def test_size_model_matches_reference_vectors(name, ins, outs):
    v = FEES["estimate_tx_size"][name]
    assert fm.estimate_tx_size({"p2wpkh": ins}, {"p2wpkh": outs}) == (v["witness_bytes"],
                                                                      v["nonwitness_bytes"])
    assert fm.estimate_tx_vsize({"p2wpkh": ins}, {"p2wpkh": outs}) == v["vsize_used"]


def test_size_model_per_type_figures():
    # PROTOCOL §8.3: p2wpkh 41+108, p2sh-p2wpkh 64+108, p2pkh 148; outputs 31/32/34/43; +10 (+2)
    assert fm.estimate_tx_size({"p2wpkh": 1}, {"p2wpkh": 1}) == (108 + 2, 41 + 31 + 10)
    assert fm.estimate_tx_size({"p2sh-p2wpkh": 1}, {"p2sh": 1}) == (108 + 2, 64 + 32 + 10)
    assert fm.estimate_tx_size({"p2wpkh-p2sh": 2}, {"p2sh-p2wpkh": 2}) == (218, 128 + 64 + 10)
    assert fm.estimate_tx_size({"p2pkh": 2}, {"p2pkh": 2}) == (0, 296 + 68 + 10)
    assert fm.estimate_tx_size({"p2wpkh": 1}, {"p2wsh": 1, "p2tr": 1}) == (110, 41 + 86 + 10)
    assert fm.estimate_tx_vsize({"p2sh-p2wpkh": 3}, {"p2sh-p2wpkh": 2}) == 266 + 82
    assert fm.estimate_tx_vsize({"p2pkh": 2}, {"p2pkh": 2}) == 374
    with pytest.raises(fm.FeeError):
        fm.estimate_tx_size({"p2qq": 1}, {"p2wpkh": 1})


def test_fee_figures():
    # fee = floor(vsize * rate / 1000)
    assert fm.estimate_tx_fee({"p2wpkh": 3}, {"p2wpkh": 2}, 2000) == 554
    assert fm.estimate_tx_fee({"p2wpkh": 3}, {"p2wpkh": 2}, 1234) == 341      # 341.818 -> 341
    assert fm.estimate_tx_fee({"p2wpkh": 10}, {"p2wpkh": 9}, 10_000) == 9700
    # first non-sweep estimate: fee(3,2)*(n-1) + fee(3,2 with our cj type)
    assert fm.initial_fee_estimate(3, 2000) == 554 * 3
    assert fm.initial_fee_estimate(3, 2000, cj_out_type="p2tr") == 554 * 2 + \
        fm.estimate_tx_fee({"p2wpkh": 3}, {"p2wpkh": 1, "p2tr": 1}, 2000) == 554 * 2 + 578   # 289 vB
    # sweep estimate: fee(#mine + 3n in, 2n + 1 out); 11 in / 7 out -> 678 nw, 1190 w -> 976 vB
    assert fm.sweep_fee_estimate(2, 3, 1000) == 976


def test_feerate_randomised_upward_and_absurd_abort():
    rng = random.Random(7)
    rates = [fm.randomise_feerate(10_000, 0.2, rng) for _ in range(200)]
    assert all(10_000 <= r <= 12_000 for r in rates) and len(set(rates)) > 50
    assert fm.randomise_feerate(10_000, 0, rng) == 10_000
    with pytest.raises(fm.AbsurdFeeError):
        fm.check_feerate(350_001)
    assert fm.check_feerate(350_000) == 350_000
    assert fm.check_feerate(10) == fm.MIN_RELAY_FEERATE
    # Electrum keeps targets 2, 5, 10, 25...: for 3 blocks use 2 (not cheaper), else the next
    assert fm.feerate_from_estimates({2: 5000, 5: 3000, 25: 1000}, 3) == 5000
    assert fm.feerate_from_estimates({5: 3000, 25: 1000}, 3) == 3000
    assert fm.feerate_from_estimates({}, 3) is None


def test_fetch_feerate_fallback_and_fixed_rate():
    """No network / no estimates (regtest): the configured fallback, randomised upward with the
    injected RNG; tx_fees > 1000 is itself a rate; an absurd rate aborts; none at all fails."""
    r1 = asyncio.run(fm.fetch_feerate(None, fallback_feerate=2000, rng=random.Random(1)))
    r2 = random.Random(1).uniform(2000, 2400)
    assert r1 == int(r2) and 2000 <= r1 <= 2400
    assert asyncio.run(fm.fetch_feerate(None, tx_fees=5000, tx_fees_factor=0)) == 5000
    with pytest.raises(fm.AbsurdFeeError):
        asyncio.run(fm.fetch_feerate(None, tx_fees=400_000, tx_fees_factor=0))
    with pytest.raises(fm.FeeError):
        asyncio.run(fm.fetch_feerate(None))


def test_fetch_feerate_uses_server_estimate():
    class Iface:
        async def get_estimatefee(self, n):
            assert n == 3
            return 12_345

    class Net:
        interface = Iface()

    import electrum_joinmarket.market.feemodel as mod
    orig = mod._is_regtest
    mod._is_regtest = lambda: False
    try:
        assert asyncio.run(fm.fetch_feerate(Net(), tx_fees_factor=0)) == 12_345
    finally:
        mod._is_regtest = orig


def test_low_fee_rate_cap_on_the_server_estimate():
    """The user's cap (``max_feerate``, setting max_fee_rate): a server estimate of 150 sat/vB
    against a 100 sat/vB cap is refused with FeeRateAboveCap (failure kind fee_limits), not
    taken silently as it was up to the absurd 350 sat/vB; an estimate at the cap is used and
    never randomised above it; below the cap the upward randomisation is untouched."""
    from electrum_joinmarket.errors import Failure

    class Iface:
        estimate = 150_000

        async def get_estimatefee(self, n):
            return self.estimate

    class Net:
        interface = Iface()

    import electrum_joinmarket.market.feemodel as mod
    orig = mod._is_regtest
    mod._is_regtest = lambda: False
    try:
        with pytest.raises(fm.FeeRateAboveCap) as e:
            asyncio.run(fm.fetch_feerate(Net(), max_feerate=100_000, rng=random.Random(1)))
        assert (e.value.feerate, e.value.cap) == (150_000, 100_000)
        assert e.value.failure == Failure.FEE_LIMITS
        # without a cap (as before): taken, randomised upward
        assert 150_000 <= asyncio.run(fm.fetch_feerate(Net(), rng=random.Random(1))) <= 180_000
        Iface.estimate = 100_000
        rates = {asyncio.run(fm.fetch_feerate(Net(), max_feerate=100_000, rng=random.Random(i)))
                 for i in range(20)}
        assert rates == {100_000}
        Iface.estimate = 50_000
        rates = {asyncio.run(fm.fetch_feerate(Net(), max_feerate=100_000, rng=random.Random(i)))
                 for i in range(20)}
        assert min(rates) >= 50_000 and max(rates) <= 60_000 and len(rates) > 10
    finally:
        mod._is_regtest = orig
    # the configured fallback is held to the cap too
    with pytest.raises(fm.FeeRateAboveCap):
        asyncio.run(fm.fetch_feerate(None, fallback_feerate=120_000, max_feerate=100_000))
    assert fm.DEFAULT_MAX_FEERATE == 100_000


# ------------------------------------------------------------------------------------------
# solvers
# ------------------------------------------------------------------------------------------

M1 = parse_offer("!sw0reloffer 0 27300 100000000 1000 0.0002", "M1")
M2 = parse_offer("!sw0absoffer 1 27300 100000000 500 5000", "M2")


def test_non_sweep_split_to_the_satoshi():
    a = fm.solve_non_sweep(10_000_000, 25_000_000, [(M1, 50_000_000), (M2, 30_000_000)], 3000)
    assert [m.real_cjfee for m in a.makers] == [2000, 5000]
    assert [m.change for m in a.makers] == [40_001_000, 20_004_500]   # in - cj - txfee + cjfee
    assert [m.net_fee for m in a.makers] == [1000, 4500]
    assert (a.total_cjfee, a.maker_txfee_total, a.my_txfee) == (7000, 1500, 1500)
    assert a.my_change == 25_000_000 - 10_000_000 - 7000 - 1500 == 14_991_500
    assert a.miner_fee == 3000 and a.taker_cost == 8500 and a.dropped_change == 0


def test_non_sweep_dust_change_dropped_and_shortfall():
    base = 10_000_000 + 7000 + 1500
    makers = [(M1, 50_000_000), (M2, 30_000_000)]
    a = fm.solve_non_sweep(10_000_000, base + 2730, makers, 3000)
    assert (a.my_change, a.dropped_change, a.miner_fee) == (0, 2730, 5730)
    a = fm.solve_non_sweep(10_000_000, base + 2731, makers, 3000)
    assert (a.my_change, a.dropped_change, a.miner_fee) == (2731, 0, 3000)
    a = fm.solve_non_sweep(10_000_000, base - 1, makers, 3000)     # reference tolerates -1
    assert (a.my_change, a.dropped_change, a.miner_fee) == (0, -1, 2999)
    with pytest.raises(fm.NotEnoughFunds):
        fm.solve_non_sweep(10_000_000, base - 2, makers, 3000)


def test_non_sweep_maker_txfees_above_total_fee():
    big = parse_offer("!sw0absoffer 0 27300 100000000 4000 6000", "B")
    a = fm.solve_non_sweep(1_000_000, 2_000_000, [(big, 5_000_000)], 3000)
    assert a.my_txfee == 0 and a.miner_fee == 4000 and a.taker_cost == 6000


def test_m7_maker_dust_change_names_the_maker():
    # M1 change = in - 9_999_000 at cj 10M: 10_026_299 -> 27_299 < 27_300
    with pytest.raises(fm.DustMakerChange) as e:
        fm.solve_non_sweep(10_000_000, 25_000_000, [(M1, 10_026_299), (M2, 30_000_000)], 3000)
    assert e.value.nick == "M1" and e.value.change == 27_299
    a = fm.solve_non_sweep(10_000_000, 25_000_000, [(M1, 10_026_300)], 3000)
    assert a.makers[0].change == 27_300


def test_sweep_vector_and_split():
    sw = FEES["sweep_example"]
    offers = [Offer.from_dict(o) for o in sw["offers"]]
    cj = fm.solve_sweep_cj_amount(offers, sw["total_input_value"], sw["total_txfee_estimate"])
    assert cj == sw["result_cj_amount"] == 49_990_801
    makers = [(o, 100_000_000) for o in offers]
    a = fm.solve_sweep(cj, 50_000_000, makers, 3000, 3000)
    assert [m.real_cjfee for m in a.makers] == [1000, 300, 4999]    # half-even per maker
    assert a.total_cjfee == 6299                 # jmcore's truncated total is 6298
    assert a.my_txfee == 50_000_000 - cj - 6299 == 2900
    assert a.my_change == 0 and a.taker_cost == 50_000_000 - cj
    assert [m.change for m in a.makers] == [50_010_199, 50_009_399, 50_014_198]
    assert a.miner_fee == 3000
    # real-size fee must stay within 1 +- 0.8 of the estimate
    fm.solve_sweep(cj, 50_000_000, makers, 3000, 5400)
    with pytest.raises(fm.SweepFeeChanged):
        fm.solve_sweep(cj, 50_000_000, makers, 3000, 5401)
    with pytest.raises(fm.SweepFeeChanged):
        fm.solve_sweep(cj, 50_000_000, makers, 3000, 599)


# ------------------------------------------------------------------------------------------
# !sig payloads
# ------------------------------------------------------------------------------------------

def test_sig_payload_vector_decodes_and_encodes():
    v = SIGV["sig_payload_example_p2wpkh"]
    sig, pub, redeem = tb.decode_sig_payload(v["base64_before_encryption"])
    assert sig.hex() == v["der_sig_with_sighash_all"] and pub.hex() == v["pubkey"]
    assert redeem is None
    assert base64.b64decode(v["base64_before_encryption"]).hex() == v["script_serialized_hex"]
    assert tb.encode_sig_payload(sig, pub) == v["base64_before_encryption"]
    # the p2sh-p2wpkh form: a third push of 0014<hash160(pub)>
    from electrum.crypto import hash_160
    red = b"\x00\x14" + hash_160(pub)
    p3 = tb.encode_sig_payload(sig, pub, red)
    assert tb.decode_sig_payload(p3) == (sig, pub, red)


def _push(b):
    return bytes([len(b)]) + b


@pytest.mark.parametrize("mutate", [
    "notb64", "one_push", "four_push", "nonminimal", "sighash_acp", "sighash_none",
    "high_s", "uncompressed", "bad_third", "opcode"])
def test_m9_malformed_sig_payloads_rejected(mutate):
    v = SIGV["sig_payload_example_p2wpkh"]
    sig = bytes.fromhex(v["der_sig_with_sighash_all"])
    pub = bytes.fromhex(v["pubkey"])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    if mutate == "notb64":
        payload = "!!!" + v["base64_before_encryption"]
    else:
        if mutate == "one_push":
            raw = _push(sig)
        elif mutate == "four_push":
            raw = _push(sig) + _push(pub) + _push(pub) + _push(pub)
        elif mutate == "nonminimal":
            raw = b"\x4c" + bytes([len(sig)]) + sig + _push(pub)
        elif mutate == "sighash_acp":
            raw = _push(sig[:-1] + b"\x81") + _push(pub)
        elif mutate == "sighash_none":
            raw = _push(sig[:-1] + b"\x02") + _push(pub)
        elif mutate == "high_s":
            from electrum_ecc import ecdsa_der_sig_from_r_and_s
            from electrum_ecc.ecdsa_sigformat import get_r_and_s_from_ecdsa_der_sig
            r, s = get_r_and_s_from_ecdsa_der_sig(sig[:-1])
            high = n - s
            rb = r.to_bytes(32, "big")
            sb = high.to_bytes(32, "big")
            sb = (b"\x00" + sb) if sb[0] & 0x80 else sb
            der = b"\x30" + bytes([4 + len(rb) + len(sb)]) + b"\x02" + bytes([len(rb)]) + rb + \
                b"\x02" + bytes([len(sb)]) + sb
            assert der != ecdsa_der_sig_from_r_and_s(r, s)
            raw = _push(der + b"\x01") + _push(pub)
        elif mutate == "uncompressed":
            from electrum_ecc import ECPubkey
            raw = _push(sig) + _push(ECPubkey(pub).get_public_key_bytes(compressed=False))
        elif mutate == "bad_third":
            raw = _push(sig) + _push(pub) + _push(b"\x00\x20" + bytes(32))
        elif mutate == "opcode":
            raw = _push(sig) + b"\x51"
        payload = base64.b64encode(raw).decode()
    with pytest.raises(tb.BadMakerSignature):
        tb.decode_sig_payload(payload)


# ------------------------------------------------------------------------------------------
# offline transactions: build, maker signature checks, check_before_signing
# ------------------------------------------------------------------------------------------

class Party:
    """A key, its address of one type, and a fabricated confirmed coin."""

    def __init__(self, n: int, script_type: str = "p2wpkh"):
        from electrum import bitcoin
        from electrum_ecc import ECPrivkey
        self.priv = ECPrivkey((n * 7919 + 1).to_bytes(32, "big"))
        self.pub = self.priv.get_public_key_bytes(compressed=True)
        self.leaf = "p2wpkh-p2sh" if script_type == "p2sh-p2wpkh" else "p2wpkh"
        self.address = bitcoin.pubkey_to_address(self.leaf, self.pub.hex())
        self.spk = bitcoin.address_to_script(self.address)


def funding_tx(pays):
    """A complete (fake) previous transaction paying ``[(address, value), ...]``."""
    from electrum.transaction import (
        PartialTransaction,
        PartialTxInput,
        PartialTxOutput,
        Transaction,
        TxOutpoint,
    )
    fake = PartialTxInput(prevout=TxOutpoint(txid=random.Random(len(pays)).randbytes(32),
                                             out_idx=0))
    outs = [PartialTxOutput.from_address_and_value(a, v) for a, v in pays]
    ptx = PartialTransaction.from_io([fake], outs, version=2, locktime=0, BIP69_sort=False)
    return Transaction(ptx.serialize_to_network(include_sigs=False))


def wallet_coin(prev, n):
    from electrum.transaction import PartialTxInput, TxOutpoint
    txin = PartialTxInput(prevout=TxOutpoint.from_str(f"{prev.txid()}:{n}"))
    txin.utxo = prev
    return txin


def utxo_info(prev, n, confirmations=6):
    o = prev.outputs()[n]
    return UtxoInfo(f"{prev.txid()}:{n}", o.value, o.scriptpubkey, o.address, 100, confirmations)


def addr(n, t="p2wpkh"):
    return Party(1000 + n, t).address


LIMITS = FeeLimits(max_abs=10_000, max_rel=Decimal("0.001"))


@pytest.fixture
def setup():
    """A taker with two coins and two makers (one p2sh-p2wpkh) in one fabricated funding tx."""
    taker = Party(1)
    mk_a, mk_b = Party(2), Party(3, "p2sh-p2wpkh")
    prev = funding_tx([(taker.address, 15_000_000), (taker.address, 10_000_000),
                       (mk_a.address, 50_000_000), (mk_b.address, 30_000_000)])
    my_coins = [wallet_coin(prev, 0), wallet_coin(prev, 1)]
    makers = [
        tb.MakerInput("M1", M1, (utxo_info(prev, 2),), addr(1), addr(2)),
        tb.MakerInput("M2", M2, (utxo_info(prev, 3),), addr(3, "p2sh-p2wpkh"), addr(4)),
    ]
    plan = tb.plan_coinjoin(cj_amount=10_000_000, my_coins=my_coins, makers=makers,
                            my_cj_addr=addr(5), my_change_addr=addr(6), feerate=2000,
                            limits=LIMITS)
    tx = tb.build_coinjoin(plan, my_coins, {prev.txid(): prev}, 500, rng=random.Random(3))
    return dict(taker=taker, mk_a=mk_a, mk_b=mk_b, prev=prev, my_coins=my_coins, makers=makers,
                plan=plan, tx=tx)


def test_plan_amounts_and_fee_from_real_counts(setup):
    plan = setup["plan"]
    # inputs 3 p2wpkh + 1 p2sh-p2wpkh; outputs 5 p2wpkh + 1 p2sh
    w, nw = fm.estimate_tx_size({"p2wpkh": 3, "p2sh-p2wpkh": 1}, {"p2wpkh": 5, "p2sh": 1})
    assert (w, nw) == (4 * 108 + 2, 3 * 41 + 64 + 5 * 31 + 32 + 10)
    vsize = nw + (w + 3) // 4
    assert plan.amounts.total_txfee == vsize * 2000 // 1000 == 986
    a = plan.amounts
    assert a.my_txfee == 0 and a.maker_txfee_total == 1500    # makers' txfees cover it
    assert a.my_change == 25_000_000 - 10_000_000 - 7000
    assert [m.change for m in a.makers] == [40_001_000, 20_004_500]
    assert a.miner_fee == 1500 and a.taker_cost == 7000


def test_build_shape(setup):
    tx, plan, prev = setup["tx"], setup["plan"], setup["prev"]
    assert tx.version == 2 and tx.locktime in range(401, 501)
    assert all(i.nsequence == 0xfffffffe for i in tx.inputs())
    assert sorted(i.prevout.to_str() for i in tx.inputs()) == \
        sorted(f"{prev.txid()}:{n}" for n in range(4))
    got = sorted((o.address, o.value) for o in tx.outputs())
    assert got == sorted((e.address, e.value) for e in plan.expected_outputs())
    assert len(got) == 6 and tx.txid() is None or len(tx.txid()) == 64
    # the !tx wire form round-trips to the same unsigned transaction
    raw = tb.wire_to_tx_bytes(tb.tx_to_wire(tx))
    assert raw.hex() == tx.serialize_to_network(include_sigs=False)
    # deterministic with a seeded RNG, different order with another seed
    tx2 = tb.build_coinjoin(plan, setup["my_coins"], {prev.txid(): prev}, 500,
                            rng=random.Random(3))
    assert tx2.serialize_to_network(include_sigs=False) == raw.hex()
    lts = {tb.compute_locktime(1000, random.Random(s)) for s in range(300)}
    assert 1000 in lts and min(lts) >= 901 and len(lts) > 10


def _maker_sign_offline(tx, idx, party, value=None):
    """What a maker's wallet would produce: a BIP143 signature for input ``idx``."""
    from electrum.descriptor import get_singlesig_descriptor_from_legacy_leaf
    from electrum.transaction import PartialTransaction, Transaction, TxOutput
    t = PartialTransaction.from_tx(Transaction(tx.serialize_to_network(include_sigs=False)))
    txin = t.inputs()[idx]
    txin.script_descriptor = get_singlesig_descriptor_from_legacy_leaf(
        pubkey=party.pub.hex(), script_type=party.leaf)
    txin.witness_utxo = TxOutput(scriptpubkey=party.spk,
                                 value=value if value is not None else
                                 tx.inputs()[idx].value_sats())
    sig = t.sign_txin(idx, party.priv.get_secret_bytes())
    redeem = txin.redeem_script if party.leaf == "p2wpkh-p2sh" else None
    return tb.encode_sig_payload(sig, party.pub, redeem)


def _idx(tx, outpoint):
    return [i for i, t in enumerate(tx.inputs()) if t.prevout.to_str() == outpoint][0]


def test_maker_sigs_verified_and_inserted_p2wpkh_and_p2sh(setup):
    tx, makers = setup["tx"], setup["makers"]
    ia = _idx(tx, makers[0].utxos[0].outpoint)
    ib = _idx(tx, makers[1].utxos[0].outpoint)
    sa = _maker_sign_offline(tx, ia, setup["mk_a"])
    sb = _maker_sign_offline(tx, ib, setup["mk_b"])
    # a maker's sig is only tried on that maker's inputs
    with pytest.raises(tb.BadMakerSignature):
        tb.verify_and_add_maker_sig(tx, sa, makers[1].utxos)
    assert tb.verify_and_add_maker_sig(tx, sa, makers[0].utxos) == ia
    assert tb.verify_and_add_maker_sig(tx, sb, makers[1].utxos) == ib
    assert tx.inputs()[ia].witness_elements()[1] == setup["mk_a"].pub
    assert tx.inputs()[ib].script_sig == bytes([22]) + b"\x00\x14" + \
        __import__("electrum.crypto", fromlist=["hash_160"]).hash_160(setup["mk_b"].pub)
    # the same sig again: its input is signed now, nothing left to fit
    with pytest.raises(tb.BadMakerSignature):
        tb.verify_and_add_maker_sig(tx, sa, makers[0].utxos)


def test_m9_sig_for_wrong_amount_or_input_rejected(setup):
    tx, makers = setup["tx"], setup["makers"]
    ia = _idx(tx, makers[0].utxos[0].outpoint)
    unsigned = tx.serialize_to_network(include_sigs=False)
    wrong_amount = _maker_sign_offline(tx, ia, setup["mk_a"], value=50_000_001)
    with pytest.raises(tb.BadMakerSignature):
        tb.verify_and_add_maker_sig(tx, wrong_amount, makers[0].utxos)
    # a valid signature by the right key, but over another input's sighash
    other = next(i for i in range(4) if i != ia)
    wrong_input = _maker_sign_offline(tx, other, setup["mk_a"], value=50_000_000)
    with pytest.raises(tb.BadMakerSignature):
        tb.verify_and_add_maker_sig(tx, wrong_input, makers[0].utxos)
    # a signature by another key for the right sighash
    stranger = _maker_sign_offline(tx, ia, setup["taker"], value=50_000_000)
    with pytest.raises(tb.BadMakerSignature):
        tb.verify_and_add_maker_sig(tx, stranger, makers[0].utxos)
    assert not any(t.witness for t in tx.inputs())
    assert tx.serialize_to_network(include_sigs=False) == unsigned


def _outputs_replaced(tx, fn):
    from electrum.transaction import PartialTransaction
    outs = fn(list(tx.outputs()))
    return PartialTransaction.from_io(list(tx.inputs()), outs, locktime=tx.locktime, version=2,
                                      BIP69_sort=False)


def _out(address, value):
    from electrum.transaction import PartialTxOutput
    return PartialTxOutput.from_address_and_value(address, value)


def test_check_before_signing_accepts_the_plan(setup):
    tb.check_before_signing(setup["tx"], setup["plan"])


@pytest.mark.parametrize("case", ["our_cj_missing", "our_cj_short", "our_change_short",
                                  "maker_more", "extra_output", "duplicate_cj"])
def test_check_before_signing_output_refusals(setup, case):
    plan, tx = setup["plan"], setup["tx"]

    def fn(outs):
        if case == "our_cj_missing":
            return [o for o in outs if o.address != plan.my_cj_addr]
        if case == "our_cj_short":
            return [o if o.address != plan.my_cj_addr else _out(o.address, o.value - 1)
                    for o in outs]
        if case == "our_change_short":
            return [o if o.address != plan.my_change_addr else _out(o.address, o.value - 1)
                    for o in outs]
        if case == "maker_more":
            m = plan.makers[0].change_addr
            return [o if o.address != m else _out(o.address, o.value + 1) for o in outs]
        if case == "extra_output":
            return outs + [_out(addr(50), 10_000)]
        if case == "duplicate_cj":
            return outs + [_out(plan.my_cj_addr, 10_000_000)]
    with pytest.raises(tb.UnsafeTransaction):
        tb.check_before_signing(_outputs_replaced(tx, fn), plan)


def test_check_before_signing_refuses_an_output_nobody_agreed(setup):
    """An extra output small enough that every fee check still passes is refused by the output
    check itself (invariant 1: nothing is paid that was not agreed)."""
    plan, tx = setup["plan"], setup["tx"]
    extra = _outputs_replaced(tx, lambda outs: outs + [_out(addr(51), 1)])
    with pytest.raises(tb.UnsafeTransaction, match="1 unexpected output"):
        tb.check_before_signing(extra, plan)


def test_check_before_signing_input_refusals(setup):
    from electrum.transaction import PartialTransaction
    plan, tx, prev = setup["plan"], setup["tx"], setup["prev"]
    ins = list(tx.inputs())
    fewer = PartialTransaction.from_io(ins[:-1], list(tx.outputs()), BIP69_sort=False)
    with pytest.raises(tb.UnsafeTransaction, match="missing"):
        tb.check_before_signing(fewer, plan)
    other = funding_tx([(addr(60), 1_000_000)] * 2)
    more = PartialTransaction.from_io(ins + [wallet_coin(other, 1)], list(tx.outputs()),
                                      BIP69_sort=False)
    with pytest.raises(tb.UnsafeTransaction, match="unexpected input"):
        tb.check_before_signing(more, plan)
    # a maker utxo record that is not confirmed any more
    bad = tb.MakerInput("M1", M1, (utxo_info(prev, 2, confirmations=0),), plan.makers[0].cj_addr,
                        plan.makers[0].change_addr)
    from dataclasses import replace
    with pytest.raises(tb.UnsafeTransaction, match="confirmed"):
        tb.check_before_signing(tx, replace(plan, makers=(bad, plan.makers[1])))


def test_m12_limits(setup):
    from dataclasses import replace
    plan, tx = setup["plan"], setup["tx"]
    # M2's net fee is 4 500: above abs 4 000 and above 0.0001 * 10M = 1 000
    tight = FeeLimits(max_abs=4000, max_rel=Decimal("0.0001"))
    with pytest.raises(tb.FeeLimitExceeded) as e:
        tb.plan_coinjoin(cj_amount=10_000_000, my_coins=setup["my_coins"],
                         makers=setup["makers"], my_cj_addr=addr(5), my_change_addr=addr(6),
                         feerate=2000, limits=tight)
    assert e.value.nick == "M2"
    with pytest.raises(tb.FeeLimitExceeded):
        tb.check_before_signing(tx, replace(plan, limits=tight))
    # either limit suffices (reference rule): rel 0.00045 * 10M = 4 500
    tb.check_before_signing(tx, replace(plan, limits=FeeLimits(0, Decimal("0.00045"))))
    # absurd fee rate
    with pytest.raises(tb.FeeLimitExceeded):
        tb.plan_coinjoin(cj_amount=10_000_000, my_coins=setup["my_coins"],
                         makers=setup["makers"], my_cj_addr=addr(5), my_change_addr=addr(6),
                         feerate=400_000, limits=LIMITS)
    # an absurd offer txfee: the excess goes to the miners at an absurd rate -> refused
    greedy = parse_offer("!sw0absoffer 0 27300 100000000 900000 900001", "G")
    mk = [tb.MakerInput("G", greedy, setup["makers"][0].utxos, addr(1), addr(2))]
    with pytest.raises(tb.FeeLimitExceeded, match="absurd"):
        tb.plan_coinjoin(cj_amount=10_000_000, my_coins=setup["my_coins"], makers=mk,
                         my_cj_addr=addr(5), my_change_addr=addr(6), feerate=2000,
                         limits=FeeLimits(10**8, "0.5"))


def test_m8_duplicate_utxo_refused(setup):
    m = setup["makers"]
    dup = tb.MakerInput("M2", M2, m[0].utxos, addr(3), addr(4))
    with pytest.raises(tb.UnsafeTransaction, match="twice"):
        tb.plan_coinjoin(cj_amount=10_000_000, my_coins=setup["my_coins"], makers=[m[0], dup],
                         my_cj_addr=addr(5), my_change_addr=addr(6), feerate=2000,
                         limits=LIMITS)
    ours = tb.MakerInput("M2", M2, (utxo_info(setup["prev"], 0),), addr(3), addr(4))
    with pytest.raises(tb.UnsafeTransaction, match="twice"):
        tb.plan_coinjoin(cj_amount=10_000_000, my_coins=setup["my_coins"], makers=[ours],
                         my_cj_addr=addr(5), my_change_addr=addr(6), feerate=2000,
                         limits=LIMITS)


def test_prev_tx_must_match_chain_record(setup):
    """A previous transaction whose output disagrees with the chain record is refused."""
    prev = setup["prev"]
    u = setup["makers"][0].utxos[0]
    lying = UtxoInfo(u.outpoint, u.value + 1, u.script_pubkey, u.address, u.height,
                     u.confirmations)
    mk = [tb.MakerInput("M1", M1, (lying,), addr(1), addr(2))]
    plan = tb.plan_coinjoin(cj_amount=10_000_000, my_coins=setup["my_coins"], makers=mk,
                            my_cj_addr=addr(5), my_change_addr=addr(6), feerate=2000,
                            limits=LIMITS)
    with pytest.raises(tb.UnsafeTransaction, match="disagrees"):
        tb.build_coinjoin(plan, setup["my_coins"], {prev.txid(): prev}, 500)


def test_every_pre_signing_check_is_small_and_names_its_case():
    """tx/checks.py: one function per invariant, each docstring naming the case ids
    (docs/testing.md) or the money-safety invariant (docs/architecture.md) it guards."""
    import inspect
    import re

    from electrum_joinmarket.tx import checks
    for name in checks.__all__:
        fn = getattr(checks, name)
        doc = inspect.getdoc(fn) or ""
        assert re.search(r"\b([MT]\d{1,2}|invariant [15])\b", doc), (name, doc)
        assert len(inspect.getsource(fn).splitlines()) <= 30, name
