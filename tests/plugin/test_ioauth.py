"""!ioauth: the vector byte for byte; the parser fuzzed; and on the real stack, with real Electrum
wallets as makers, a genuine ioauth accepted and each refusal M1–M8, M11 driven through
verify_ioauth (one test per case)."""
from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from electrum_joinmarket.protocol.ioauth import (
    MAX_IOAUTH_BODY_LEN,
    MAX_MAKER_INPUTS,
    IoauthRejected,
    ParsedIoauth,
    make_ioauth,
    parse_ioauth,
    verify_btc_sig,
    verify_ioauth,
)
from jmcore.offers import Offer
from tests.vectors import load

V = load("ioauth_and_sig.json")
VBODY = V["ioauth_plaintext_body_example"]
FUZZ_COUNTS: dict[str, int] = {}


# --- vector and parser (no stack) -----------------------------------------------------------------

def test_vector_make_ioauth_byte_for_byte():
    utxos = VBODY.split(" ")[0].split(",")
    addr = V["auth_p2wpkh_address_mainnet"]
    body = make_ioauth(utxos, bytes.fromhex(V["auth_privkey"]),
                       V["maker_nacl_pubkey_hex_that_is_signed"], addr, addr)
    assert body == VBODY
    # same with the 32-byte secret and the hex form
    assert make_ioauth(utxos, V["auth_privkey"][:64], V["maker_nacl_pubkey_hex_that_is_signed"],
                       addr, addr) == VBODY


def test_vector_parse_and_btc_sig():
    p = parse_ioauth(VBODY)
    assert p == ParsedIoauth(("1e" * 32 + ":0", "2f" * 32 + ":5"), V["auth_pubkey"],
                             V["auth_p2wpkh_address_mainnet"], V["auth_p2wpkh_address_mainnet"],
                             V["ioauth_btc_sig_base64"])
    assert V["ioauth_sig_verifies"] is True
    assert verify_btc_sig(p.auth_pub, p.btc_sig, V["maker_nacl_pubkey_hex_that_is_signed"])
    other_nacl = "00" * 32
    assert not verify_btc_sig(p.auth_pub, p.btc_sig, other_nacl)
    assert not verify_btc_sig(p.auth_pub, p.btc_sig, "not hex")


@pytest.mark.parametrize("body", [
    "", " ", VBODY + " extra", " ".join(VBODY.split(" ")[:4]), VBODY.replace(" ", "  ", 1),
    VBODY.replace(":0,", ":00,"), VBODY.replace(":5", ":-5"), VBODY.replace(":0,", ","),
    VBODY.replace("1e1e", "1g1e", 1), "," + VBODY, VBODY.replace(",", ",,", 1),
    VBODY.replace(V["auth_pubkey"], V["auth_pubkey"].upper()),
    VBODY.replace(V["auth_pubkey"], "04" + V["auth_pubkey"][2:]),
    VBODY.replace(V["ioauth_btc_sig_base64"], "!!!"),
    VBODY.replace(V["auth_p2wpkh_address_mainnet"], "bc1-q", 1),
    "x" * (MAX_IOAUTH_BODY_LEN + 1),
])
def test_d1_malformed_bodies_refused(body):
    with pytest.raises(IoauthRejected) as err:
        parse_ioauth(body)
    assert err.value.case_id == "D1"


def test_parse_refuses_absurd_input_counts_without_work():
    many = ",".join(f"{i:064x}:0" for i in range(201))
    with pytest.raises(IoauthRejected) as err:
        parse_ioauth(f"{many} {V['auth_pubkey']} a{'b' * 20} a{'b' * 20} AAAA")
    assert err.value.case_id in ("M11", "D1")
    with pytest.raises(IoauthRejected):
        parse_ioauth(None)  # type: ignore[arg-type]


def test_make_ioauth_refuses_unsendable_bodies():
    key = bytes.fromhex(V["auth_privkey"])
    nacl = V["maker_nacl_pubkey_hex_that_is_signed"]
    a = V["auth_p2wpkh_address_mainnet"]
    for args in (([], key, nacl, a, a), (["1e" * 32 + ":0"], key, "zz", a, a),
                 (["1e" * 32 + ":0"], key, nacl, "a b", a), (["nope"], key, nacl, a, a),
                 (["1e" * 32 + ":0"], b"\x00" * 31, nacl, a, a)):
        with pytest.raises(ValueError):
            make_ioauth(*args)


def _count(name):
    FUZZ_COUNTS[name] = FUZZ_COUNTS.get(name, 0) + 1


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=600))
def test_fuzz_parse_ioauth_arbitrary_text(text):
    _count("arbitrary_text")
    try:
        p = parse_ioauth(text)
    except IoauthRejected as exc:
        assert exc.case_id in ("D1", "M11")
        return
    assert isinstance(p, ParsedIoauth)


_alphabet = st.sampled_from(list("0123456789abcdefABCDEF:, +/=qxyzQ1\x00é!"))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VBODY) - 1), _alphabet,
                          st.sampled_from(["replace", "insert", "delete"])), min_size=1, max_size=6))
def test_fuzz_parse_ioauth_mutated_vector(mutations):
    """Byte-level mutations of a valid body: either it still parses (and then every field is in
    canonical form) or it is refused with D1/M11 — never any other exception."""
    _count("mutated_vector")
    s = list(VBODY)
    for pos, ch, op in mutations:
        pos = min(pos, len(s) - 1) if s else 0
        if op == "replace" and s:
            s[pos] = ch
        elif op == "insert":
            s.insert(pos, ch)
        elif s:
            del s[pos]
    body = "".join(s)
    try:
        p = parse_ioauth(body)
    except IoauthRejected as exc:
        assert exc.case_id in ("D1", "M11")
        return
    for u in p.utxos:
        txid, n = u.split(":")
        assert txid == txid.lower() and len(txid) == 64 and str(int(n)) == n
    assert p.auth_pub == p.auth_pub.lower() and len(p.auth_pub) == 66


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 1)),
                min_size=1, max_size=20),
       st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_fuzz_make_then_parse_roundtrip(utxos, seed, nacl):
    """Whatever a maker sends via make_ioauth parses back identically and its sig verifies."""
    _count("roundtrip")
    key = (int.from_bytes(seed, "big") % (2**256 - 2**32 - 1000) + 1).to_bytes(32, "big")
    outs = [f"{t.hex()}:{n}" for t, n in utxos]
    body = make_ioauth(outs, key, nacl.hex(), "bcrt1qxyzxyzxyzxyzxyz", "bcrt1qabcabcabcabcabc")
    p = parse_ioauth(body)
    assert list(p.utxos) == outs
    assert verify_btc_sig(p.auth_pub, p.btc_sig, nacl.hex())


def test_fuzz_example_counts_recorded():
    """Runs after the fuzz tests (file order): record how many examples each one executed."""
    print(f"\nhypothesis examples run: {FUZZ_COUNTS}")
    if FUZZ_COUNTS:
        assert all(v >= 100 for v in FUZZ_COUNTS.values()), FUZZ_COUNTS


# --- real stack: Electrum wallets as makers -------------------------------------------------------

stack = pytest.mark.stack
OFFER = Offer("sw0absoffer", 0, 27_300, 10**10, 500, "1000", "J5maker")   # txfee 500, cjfee 1000


def _maker_key(wallet, address):
    from electrum.bitcoin import deserialize_privkey
    _typ, secret, _compressed = deserialize_privkey(wallet.export_private_key(address, None))
    return secret


def _coins(wallet):
    return sorted(wallet.get_utxos(), key=lambda c: -c.value_sats())


class Maker:
    """A real Electrum wallet acting as a maker: its coins, keys and fresh addresses."""

    def __init__(self, wallet):
        self.wallet = wallet
        self.nacl = os.urandom(32).hex()
        addrs = wallet.get_unused_addresses()
        self.cj_addr, self.change_addr = addrs[-1], addrs[-2]

    def coins(self):
        return _coins(self.wallet)

    def body(self, utxos=None, key_coin=None, nacl=None, cj_addr=None, change_addr=None, key=None):
        coins = self.coins()
        utxos = utxos if utxos is not None else [c.prevout.to_str() for c in coins]
        key_coin = key_coin or coins[0]
        key = key if key is not None else _maker_key(self.wallet, key_coin.address)
        return make_ioauth(utxos, key, nacl or self.nacl, cj_addr or self.cj_addr,
                           change_addr or self.change_addr)


@pytest.fixture
def maker(make_wallet):
    return Maker(make_wallet(fund=[3_000_000, 2_000_000]))


def _verify(node, chain, maker, body, cj_amount=1_000_000, **kw):
    return node.run(verify_ioauth(body, maker.nacl, chain, cj_amount=cj_amount, offer=OFFER, **kw))


def _refused(node, chain, maker, body, case, **kw):
    with pytest.raises(IoauthRejected) as err:
        _verify(node, chain, maker, body, **kw)
    assert err.value.case_id == case, err.value
    return err.value


@stack
def test_genuine_ioauth_accepted(electrum_node, chain, maker):
    coins = maker.coins()
    v = _verify(electrum_node, chain, maker, maker.body())
    assert v.outpoints == tuple(c.prevout.to_str() for c in coins)
    assert [u.value for u in v.utxos] == [3_000_000, 2_000_000]
    assert all(u.unspent and u.confirmations >= 1 for u in v.utxos)
    assert [u.address for u in v.utxos] == [c.address for c in coins]
    assert v.total_input == 5_000_000 and v.real_cjfee == 1000 and v.txfee == 500
    assert v.change == 5_000_000 - 1_000_000 - 500 + 1000
    assert (v.cj_addr, v.change_addr) == (maker.cj_addr, maker.change_addr)
    assert dict(chain.query_counts) == {"get_transaction": 2, "listunspent": 2, "get_merkle": 2}
    # the auth key may be the key of any one of the inputs
    v2 = _verify(electrum_node, chain, maker, maker.body(key_coin=coins[1]))
    assert v2.auth_pub != v.auth_pub


@stack
def test_m1_nonexistent_utxo_refused(electrum_node, chain, maker):
    real = [c.prevout.to_str() for c in maker.coins()]
    e = _refused(electrum_node, chain, maker, maker.body(utxos=real + [os.urandom(32).hex() + ":0"]), "M1")
    assert "does not exist" in e.reason
    txid = real[0].split(":")[0]
    _refused(electrum_node, chain, maker, maker.body(utxos=real + [f"{txid}:77"]), "M1")


@stack
def test_m2_spent_utxo_refused(electrum_node, chain, bitcoind, make_wallet, sync_tip, wait_utxo):
    m = Maker(make_wallet(fund=[4_000_000]))
    coin = m.coins()[0]
    body = m.body()                                     # prepared while the coin was unspent
    assert _verify(electrum_node, chain, m, body).total_input == 4_000_000
    electrum_node.pay(m.wallet, make_wallet().get_receiving_address(), 1_500_000)   # spends it
    wait_utxo(chain, coin.prevout.to_str(), lambda i: i is not None and not i.unspent)
    _refused(electrum_node, chain, m, body, "M2")
    bitcoind.mine(1)
    sync_tip()
    wait_utxo(chain, coin.prevout.to_str(), lambda i: i is not None and not i.unspent and i.confirmations)
    _refused(electrum_node, chain, m, body, "M2")       # still refused once the spend is mined


@stack
def test_m3_unconfirmed_utxo_refused(electrum_node, chain, bitcoind, maker, wait_utxo):
    addr = maker.wallet.get_unused_addresses()[0]
    txid = bitcoind.fund(addr, 600_000, confirm=False)
    electrum_node.wait_tx(maker.wallet, txid, confirmations=0)
    fresh = [c for c in maker.coins() if c.prevout.txid.hex() == txid]
    assert len(fresh) == 1 and fresh[0].block_height <= 0
    outpoint = fresh[0].prevout.to_str()
    wait_utxo(chain, outpoint, lambda i: i is not None and i.unspent)   # e-x's mempool index lags
    confirmed = [c.prevout.to_str() for c in maker.coins() if c.prevout.txid.hex() != txid]
    e = _refused(electrum_node, chain, maker, maker.body(utxos=confirmed + [outpoint]), "M3")
    assert "0 confirmation" in e.reason
    # the same coin passes once mined
    bitcoind.mine(1)
    electrum_node.wait_tx(maker.wallet, txid, confirmations=1)
    wait_utxo(chain, outpoint, lambda i: i is not None and i.confirmations >= 1)
    assert _verify(electrum_node, chain, maker, maker.body(utxos=confirmed + [outpoint])).total_input \
        == 5_600_000


@stack
def test_m4_auth_pub_owns_none_of_the_utxos(electrum_node, chain, maker, make_wallet):
    other = make_wallet(fund=[1_000_000])
    foreign_coin = _coins(other)[0]
    foreign_key = _maker_key(other, foreign_coin.address)
    # a valid btc_sig by a key that owns coins elsewhere, but none of the declared ones
    body = maker.body(key=foreign_key)
    e = _refused(electrum_node, chain, maker, body, "M4")
    assert "owns none" in e.reason
    _refused(electrum_node, chain, maker, maker.body(key=os.urandom(32)), "M4")


@stack
def test_m5_bad_btc_sig_refused(electrum_node, chain, maker):
    # signed over another NaCl key (e.g. a MITM's): the taker checks against the key it used
    body = maker.body(nacl=os.urandom(32).hex())
    _refused(electrum_node, chain, maker, body, "M5")
    # auth_pub swapped for another key of the maker: the signature no longer matches it
    coins = maker.coins()
    good = maker.body().split(" ")
    other_pub = maker.body(key_coin=coins[1]).split(" ")[1]
    _refused(electrum_node, chain, maker, " ".join([good[0], other_pub] + good[2:]), "M5")
    # a well-formed but wrong signature
    sig_of_other = maker.body(key_coin=coins[1]).split(" ")[4]
    _refused(electrum_node, chain, maker, " ".join(good[:4] + [sig_of_other]), "M5")
    assert sum(chain.query_counts.values()) == 0         # refused before asking the server


@stack
def test_m6_address_invalid_for_network_refused(electrum_node, chain, maker):
    mainnet = V["auth_p2wpkh_address_mainnet"]                    # bc1…: not regtest
    testnet = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"      # BIP173 testnet vector
    for kw in ({"cj_addr": mainnet}, {"change_addr": mainnet}, {"cj_addr": testnet},
               {"change_addr": maker.cj_addr[:-1] + ("q" if maker.cj_addr[-1] != "q" else "p")}):
        _refused(electrum_node, chain, maker, maker.body(**kw), "M6")
    assert sum(chain.query_counts.values()) == 0


@stack
def test_m7_maker_change_below_dust_refused(electrum_node, chain, maker):
    total = 5_000_000
    # change = total - cj - txfee(500) + cjfee(1000); dust 27 300
    at_dust = total + 500 - 27_300
    assert _verify(electrum_node, chain, maker, maker.body(), cj_amount=at_dust).change == 27_300
    e = _refused(electrum_node, chain, maker, maker.body(), "M7", cj_amount=at_dust + 1)
    assert "27299" in e.reason
    _refused(electrum_node, chain, maker, maker.body(), "M7", cj_amount=total * 2)   # negative change


@stack
def test_m8_duplicate_utxo_refused(electrum_node, chain, maker):
    u = [c.prevout.to_str() for c in maker.coins()]
    # declared twice, also in another spelling of the same outpoint
    _refused(electrum_node, chain, maker, maker.body(utxos=[u[0], u[1], u[0]]), "M8")
    txid, n = u[0].split(":")
    _refused(electrum_node, chain, maker, maker.body(utxos=[u[0], f"{txid.upper()}:{n}"]), "M8")
    # already declared by another maker of this coinjoin
    _refused(electrum_node, chain, maker, maker.body(), "M8", other_makers_utxos=[u[1]])
    # equal to one of ours (the taker's), spelled differently
    _refused(electrum_node, chain, maker, maker.body(), "M8", taker_utxos=[u[0].upper()])
    assert sum(chain.query_counts.values()) == 0         # refused before asking the server


@stack
def test_m11_too_many_inputs_refused(electrum_node, chain, maker, make_wallet):
    fake = [f"{random.Random(i).getrandbits(256):064x}:0" for i in range(MAX_MAKER_INPUTS + 1)]
    _refused(electrum_node, chain, maker, maker.body(utxos=fake), "M11")
    assert sum(chain.query_counts.values()) == 0
    m = Maker(make_wallet(fund=[400_000, 300_000, 200_000]))
    _refused(electrum_node, chain, m, m.body(), "M11", max_inputs=2)
    assert _verify(electrum_node, chain, m, m.body(), cj_amount=100_000, max_inputs=3).total_input == 900_000


@stack
def test_chain_failure_is_not_blamed_on_the_maker(electrum_node, maker):
    """A chain backend that cannot answer raises ChainError, never IoauthRejected."""
    from electrum_joinmarket.chain.server import ChainUnavailable, ElectrumChain
    slow = ElectrumChain(electrum_node.network, request_timeout=0.000001)
    with pytest.raises(ChainUnavailable):
        _verify(electrum_node, slow, maker, maker.body())


@stack
def test_m8_taker_checks_makers_together_and_decides_claims_in_its_order(
        electrum_node, make_wallet):
    """The taker checks all makers' !ioauth at once; an outpoint claimed by two makers (each
    valid on its own) is refused (M8) for the one that comes later in the taker's own order of
    makers — whichever answered first — and never both accepted."""
    from electrum_joinmarket.market.limits import FeeLimits
    from electrum_joinmarket.protocol.commitments import CommitmentStore
    from electrum_joinmarket.taker.taker import Taker, TakerConfig
    a = Maker(make_wallet(fund=[3_000_000, 2_000_000]))
    b = Maker(make_wallet(fund=[4_000_000, 1_000_000]))
    me = make_wallet(fund=[5_000_000])
    stolen = a.coins()[1].prevout.to_str()

    def data(m, extra=()):
        utxos, auth_pub, cj, change, sig = m.body(
            utxos=[c.prevout.to_str() for c in m.coins()] + list(extra)).split(" ")
        return [utxos.split(","), auth_pub, cj, change, sig, m.nacl]
    fills = {"J5a": data(a), "J5b": data(b, [stolen])}

    def run(order):
        taker = Taker(wallet=me, network=electrum_node.network, commitments=CommitmentStore({}),
                      config=TakerConfig(amount=1_000_000, destination=me.get_unused_address(),
                                         limits=FeeLimits(20_000, "0.004")),
                      password=None, daemon_host="127.0.0.1", daemon_port=1, chan_configs=[],
                      net_name="regtest")
        offers = {nick: OFFER for nick in order}
        verified = electrum_node.run(taker._verify_ioauths(dict(fills), offers, me.get_utxos(),
                                                            1_000_000))
        return verified, taker.ignored, taker.chain

    verified, ignored, chain = run(["J5a", "J5b"])
    assert list(verified) == ["J5a"] and ignored["J5b"].startswith("M8"), ignored
    assert stolen in ignored["J5b"]
    # both makers' checks went together, as one maker's would: their 4 funding txs (the stolen
    # coin's asked once) with each maker key's unspent list in the first message; then the
    # proofs of the key's coins with the unspent lists of the other coins; then their proofs
    log = [sorted(b) for b in chain.batch_log]
    assert log == [["get_transaction"] * 4 + ["listunspent"] * 2,
                   ["get_merkle"] * 2 + ["listunspent"] * 2, ["get_merkle"] * 2], log
    verified, ignored, _ = run(["J5b", "J5a"])
    assert list(verified) == ["J5b"] and ignored["J5a"].startswith("M8"), ignored
