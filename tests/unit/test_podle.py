"""PoDLE, NUMS points, wire parsing and the taker's utxo choice (docs/protocol.md §7)."""
from __future__ import annotations

import json

import electrum_ecc as ecc
import pytest
from electrum import bitcoin
from electrum.crypto import sha256
from hypothesis import given, settings
from hypothesis import strategies as st

from electrum_joinmarket.protocol import podle as P
from tests.vectors import VECTORS


def _load(name: str) -> dict:
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)


NUMS = _load("nums_points.json")
PODLE = _load("podle.json")["vectors"]
N_ORDER = ecc.CURVE_ORDER


# ------------------------------------------------------------------------------- NUMS points

def test_nums_vector_covers_all_256_indices():
    assert sorted(int(i) for i in NUMS["points"]) == list(range(256))
    assert NUMS["G_compressed_hex"] == P.G_COMPRESSED.hex()


@pytest.mark.parametrize("index", range(256))
def test_nums_points_all_indices(index):
    point, seed, counter = P.nums_point_search(index)
    detail = NUMS["derivation_detail"][str(index)]
    assert point.hex() == NUMS["points"][str(index)]
    assert seed == detail["seed_G"]
    assert counter == detail["counter"]
    assert P.nums_point(index).get_public_key_bytes(compressed=True) == point
    # the procedure, written out independently: the first counter giving a valid x is chosen
    for c in range(counter):
        assert not ecc.ECPubkey.is_pubkey_bytes(b"\x02" + sha256(P.G_COMPRESSED + bytes([index, c])))
    assert point == b"\x02" + sha256(P.G_COMPRESSED + bytes([index, counter]))


@pytest.mark.parametrize("bad", [-1, 256, 1000, True, "0", 1.0, None])
def test_nums_index_out_of_range(bad):
    with pytest.raises(P.PoDLEError):
        P.nums_point(bad)


# ------------------------------------------------------------------------------ podle.json

@pytest.mark.parametrize("v", PODLE, ids=[f"index{v['index']}" for v in PODLE])
def test_podle_vectors_byte_for_byte(v):
    p = P.generate_podle(bytes.fromhex(v["privkey"]), v["utxo"], v["index"], k=bytes.fromhex(v["nonce_k"]))
    assert P.nums_point(v["index"]).get_public_key_hex() == v["J"]
    assert p.P.hex() == v["P"]
    assert p.P2.hex() == v["P2"]
    assert p.commitment_hex == v["commitment_sha256_P2"]
    assert p.fill_commitment() == v["fill_commitment_field"]
    assert p.s.hex() == v["s"]
    assert p.e.hex() == v["e"]
    assert p.serialize_revelation() == v["auth_revelation_field"]
    assert P.podle_commitment(bytes.fromhex(v["privkey"]), v["index"]).hex() == v["commitment_sha256_P2"]


@pytest.mark.parametrize("v", PODLE, ids=[f"index{v['index']}" for v in PODLE])
def test_podle_vectors_verify(v):
    rev = P.parse_revelation(v["auth_revelation_field"])
    assert rev.utxo == v["utxo"] and rev.serialize_revelation() == v["auth_revelation_field"]
    c = P.parse_fill_commitment(v["fill_commitment_field"])
    assert P.verify_podle(rev.P, rev.P2, rev.s, rev.e, c, range(3)) is v["verify_with_range_0_3"]
    assert P.find_podle_index(rev.P, rev.P2, rev.s, rev.e, c) == v["index"]
    excluding = [i for i in range(3) if i != v["index"]]
    assert P.verify_podle(rev.P, rev.P2, rev.s, rev.e, c, excluding) is v["verify_with_range_excluding_index"]
    # hex case of the commitment does not matter (T5)
    assert rev.verify(v["commitment_sha256_P2"].upper())
    assert rev.verify(v["commitment_sha256_P2"])


def test_independent_equation_check_on_vector():
    """Re-check s*G == K_G + e*P with plain integer arithmetic on top of electrum_ecc."""
    v = PODLE[0]
    x = int(v["privkey"], 16)
    k = int(v["nonce_k"], 16)
    e = int(v["e"], 16)
    assert (k + x * e) % N_ORDER == int(v["s"], 16)
    KG = ecc.GENERATOR * k
    KJ = P.nums_point(0) * k
    assert sha256(KG.get_public_key_bytes() + KJ.get_public_key_bytes() + bytes.fromhex(v["P"])
                  + bytes.fromhex(v["P2"])).hex() == v["e"]


# ---------------------------------------------------------------------------- T6 / T7 etc.

KEY = bytes.fromhex(PODLE[0]["privkey"])
UTXO = PODLE[0]["utxo"]


def test_t6_index_3_rejected_by_default():
    p = P.generate_podle(KEY, UTXO, 3)
    assert not P.verify_podle(p.P, p.P2, p.s, p.e, p.commitment)
    assert not p.verify(p.commitment)
    assert P.find_podle_index(p.P, p.P2, p.s, p.e, p.commitment, range(4)) == 3  # proof itself is fine
    p255 = P.generate_podle(KEY, UTXO, 255)
    assert not p255.verify(p255.commitment)
    assert p255.verify(p255.commitment, [255])


def test_index_range_beyond_nums_refused():
    p = P.generate_podle(KEY, UTXO, 0)
    with pytest.raises(P.PoDLEError):
        p.verify(p.commitment, range(300))
    with pytest.raises(P.PoDLEError):
        P.generate_podle(KEY, UTXO, 256)


def test_t7_wrong_p2_rejected():
    p0 = P.generate_podle(KEY, UTXO, 0)
    p1 = P.generate_podle(KEY, UTXO, 1)
    # P2 of another index: commitment mismatch
    assert not P.verify_podle(p0.P, p1.P2, p0.s, p0.e, p0.commitment)
    # P2 and commitment of index 1 but the proof of index 0: equations fail
    assert not P.verify_podle(p0.P, p1.P2, p0.s, p0.e, p1.commitment)
    # P2 of another key, commitment adjusted to match
    other = P.generate_podle(bytes(31) + b"\x07", UTXO, 0)
    assert not P.verify_podle(p0.P, other.P2, p0.s, p0.e, other.commitment)


def test_tampered_fields_rejected():
    p = P.generate_podle(KEY, UTXO, 1)
    assert p.verify(p.commitment)
    s_plus = ((int.from_bytes(p.s, "big") + 1) % N_ORDER).to_bytes(32, "big")
    e_plus = ((int.from_bytes(p.e, "big") + 1) % N_ORDER).to_bytes(32, "big")
    other_P = ecc.ECPrivkey(bytes(31) + b"\x09").get_public_key_bytes()
    assert not P.verify_podle(p.P, p.P2, s_plus, p.e, p.commitment)
    assert not P.verify_podle(p.P, p.P2, p.s, e_plus, p.commitment)
    assert not P.verify_podle(other_P, p.P2, p.s, p.e, p.commitment)
    # P2 with flipped parity: a valid point, but not x*J
    flipped = bytes([p.P2[0] ^ 1]) + p.P2[1:]
    assert not P.verify_podle(p.P, flipped, p.s, p.e, sha256(flipped))
    # s = 0 / s = n / e = 0: out of range, rejected without raising
    for s_bad in (bytes(32), N_ORDER.to_bytes(32, "big"), b"\xff" * 32):
        assert not P.verify_podle(p.P, p.P2, s_bad, p.e, p.commitment)
    assert not P.verify_podle(p.P, p.P2, p.s, bytes(32), p.commitment)
    # wrong types / lengths
    assert not P.verify_podle(p.P[:32], p.P2, p.s, p.e, p.commitment)
    assert not P.verify_podle(p.P, p.P2, p.s + b"\x00", p.e, p.commitment)
    assert not P.verify_podle(p.P.hex(), p.P2, p.s, p.e, p.commitment)
    assert not P.verify_podle(p.P, p.P2, p.s, p.e, "zz" * 32)
    assert not P.verify_podle(p.P, p.P2, p.s, p.e, p.commitment[:31])


def test_random_nonce_proofs_verify_and_differ():
    priv = ecc.ECPrivkey.generate_random_key().get_secret_bytes()
    a = P.generate_podle(priv, UTXO, 2)
    b = P.generate_podle(priv, UTXO, 2)
    assert a.commitment == b.commitment and a.P2 == b.P2
    assert a.s != b.s and a.e != b.e
    assert a.verify(a.commitment) and b.verify(b.commitment)
    assert P.find_podle_index(b.P, b.P2, b.s, b.e, b.commitment) == 2


@pytest.mark.parametrize("k", [bytes(32), N_ORDER.to_bytes(32, "big"), b"\x01" * 31, "00" * 32])
def test_bad_fixed_nonce_rejected(k):
    with pytest.raises(P.PoDLEError):
        P.generate_podle(KEY, UTXO, 0, k=k)


@pytest.mark.parametrize("priv", [bytes(32), N_ORDER.to_bytes(32, "big"), b"\x01" * 31])
def test_bad_private_key_rejected(priv):
    with pytest.raises(P.PoDLEError):
        P.generate_podle(priv, UTXO, 0)


def test_generate_rejects_bad_utxo():
    with pytest.raises(P.PoDLEParseError):
        P.generate_podle(KEY, "nothex:1", 0)


def test_33_byte_compressed_flag_key_accepted():
    v = PODLE[0]
    p = P.generate_podle(bytes.fromhex(v["privkey"]) + b"\x01", v["utxo"], 0, k=bytes.fromhex(v["nonce_k"]))
    assert p.serialize_revelation() == v["auth_revelation_field"]


# ------------------------------------------------------------------------------ wire parsing

GOOD = PODLE[0]["auth_revelation_field"]


def test_parse_revelation_canonicalises_case():
    rev = P.parse_revelation(GOOD.upper().replace("|", "|"))
    assert rev == P.parse_revelation(GOOD)
    assert rev.serialize_revelation() == GOOD


def _replace_field(i: int, value: str) -> str:
    parts = GOOD.split("|")
    parts[i] = value
    return "|".join(parts)


BAD_REVELATIONS = [
    "", "|||", GOOD + "|", "|".join(GOOD.split("|")[:4]), GOOD.replace("|", ","),
    _replace_field(0, "0f" * 32), _replace_field(0, "0f" * 32 + ":-1"), _replace_field(0, "0f" * 32 + ":01"),
    _replace_field(0, "0f" * 32 + ": 1"), _replace_field(0, "0f" * 32 + ":+1"),
    _replace_field(0, "0f" * 31 + ":1"),
    _replace_field(0, "0f" * 32 + ":4294967296"), _replace_field(0, "0f" * 32 + ":1:0014aa:100"),
    _replace_field(0, "zz" * 32 + ":1"), _replace_field(0, "0f" * 32 + ":1\u0661"),
    _replace_field(1, "04" + "00" * 32), _replace_field(1, "02" + "ff" * 32),
    _replace_field(1, "03" + "00" * 32),
    _replace_field(1, GOOD.split("|")[1][:-2]), _replace_field(2, "0x" + GOOD.split("|")[2][2:]),
    _replace_field(3, "00" * 32), _replace_field(3, format(N_ORDER, "064x")), _replace_field(3, "ff" * 32),
    _replace_field(4, "00" * 32), _replace_field(4, GOOD.split("|")[4] + "00"),
    _replace_field(4, " " + GOOD.split("|")[4][1:]),
    GOOD + "0" * 500, GOOD.replace("|", "| ", 1),
]


@pytest.mark.parametrize("text", BAD_REVELATIONS)
def test_parse_revelation_rejects_malformed(text):
    with pytest.raises(P.PoDLEParseError):
        P.parse_revelation(text)


def test_parse_revelation_type_check():
    with pytest.raises(P.PoDLEParseError):
        P.parse_revelation(GOOD.encode())


def test_parse_fill_commitment():
    v = PODLE[1]
    assert P.parse_fill_commitment(v["fill_commitment_field"]).hex() == v["commitment_sha256_P2"]
    assert P.parse_fill_commitment("P" + v["commitment_sha256_P2"].upper()).hex() == v["commitment_sha256_P2"]
    with pytest.raises(P.UnsupportedCommitmentType) as ei:
        P.parse_fill_commitment("Q" + v["commitment_sha256_P2"])
    assert ei.value.commitment_type == "Q"
    assert str(ei.value) == "Unsupported commitment type: Q"
    for bad in ("", "P", "P" + v["commitment_sha256_P2"][:-1], "P" + v["commitment_sha256_P2"] + "0",
                "p" + v["commitment_sha256_P2"], "P" + "g" * 64, "P " + v["commitment_sha256_P2"][1:], None):
        with pytest.raises(P.PoDLEParseError):
            P.parse_fill_commitment(bad)


def test_normalize_commitment():
    c = PODLE[0]["commitment_sha256_P2"]
    assert P.normalize_commitment(c.upper()) == c
    assert P.normalize_commitment(bytes.fromhex(c)) == c
    for bad in (c[:-1], c + "0", "P" + c, b"\x00" * 31, c.replace("e", " ", 1), 5):
        with pytest.raises(P.PoDLEParseError):
            P.normalize_commitment(bad)


def test_pubkey_matches_script_via_electrum_addresses():
    priv = ecc.ECPrivkey(bytes(31) + b"\x05")
    pub = priv.get_public_key_bytes()
    other = ecc.ECPrivkey(bytes(31) + b"\x06").get_public_key_bytes()
    for txin_type in ("p2wpkh", "p2wpkh-p2sh", "p2pkh"):
        spk = bitcoin.address_to_script(bitcoin.pubkey_to_address(txin_type, pub.hex()))
        assert P.pubkey_matches_script(pub, spk)
        assert not P.pubkey_matches_script(other, spk)
    p2tr_like = b"\x51\x20" + pub[1:]
    assert not P.pubkey_matches_script(pub, p2tr_like)
    assert not P.pubkey_matches_script(pub[:32], b"")


# -------------------------------------------------------------------- taker utxo choice §7.4

def U(i: int) -> str:
    return f"{i:064x}:{i % 3}"


def C(i: int, value: int = 1_000_000, confs: int = 10, used=(), **kw) -> P.CommitmentCandidate:
    return P.CommitmentCandidate(utxo=U(i), value=value, confirmations=confs, used_indices=frozenset(used),
                                 **kw)


CJ = 1_000_000  # min value 200 000


def test_choice_first_tx_utxo_index_0():
    r = P.choose_commitment_utxo([C(1), C(2)], CJ)
    assert r == P.CommitmentChoice(U(1), 0, "tx") and not r.external


@pytest.mark.parametrize("used,expected",
                         [((), 0), ((0,), 1), ((0, 1), 2), ((1,), 2), ((5,), 0), ((0, 7), 1)])
def test_choice_index_is_one_above_highest_used(used, expected):
    r = P.choose_commitment_utxo([C(1, used=used)], CJ)
    assert isinstance(r, P.CommitmentChoice) and r.index == expected
    assert P.next_commitment_index(used, 3) == expected


def test_choice_exhausted_utxo_moves_on():
    r = P.choose_commitment_utxo([C(1, used=(0, 1, 2)), C(2, used=(0,))], CJ)
    assert r == P.CommitmentChoice(U(2), 1, "tx")
    r = P.choose_commitment_utxo([C(1, used=(2,))], CJ)
    assert isinstance(r, P.NoCommitmentAvailable) and r.exhausted == (U(1),)
    # a higher retries setting allows index 3
    r = P.choose_commitment_utxo([C(1, used=(2,))], CJ, P.CommitmentPolicy(taker_utxo_retries=4))
    assert r == P.CommitmentChoice(U(1), 3, "tx")


def test_choice_age_and_amount_boundaries():
    assert isinstance(P.choose_commitment_utxo([C(1, confs=4)], CJ), P.NoCommitmentAvailable)
    assert P.choose_commitment_utxo([C(1, confs=5)], CJ) == P.CommitmentChoice(U(1), 0, "tx")
    assert isinstance(P.choose_commitment_utxo([C(1, value=199_999)], CJ), P.NoCommitmentAvailable)
    assert P.choose_commitment_utxo([C(1, value=200_000)], CJ) == P.CommitmentChoice(U(1), 0, "tx")
    # Ref: int(cj_amount * 20 / 100.0)
    assert P.CommitmentPolicy().min_value(1_000_004) == int(1_000_004 * 20 / 100.0) == 200_000


MIN_VALUE_EXAMPLES = 500


@settings(max_examples=MIN_VALUE_EXAMPLES, deadline=None)
@given(st.integers(min_value=0, max_value=2**53 // 100), st.integers(min_value=0, max_value=100))
def test_min_value_is_exact_floor_in_float_safe_range(amount, pct):
    """Ref's float formula is the exact integer floor while amount*pct < 2**53."""
    assert P.CommitmentPolicy(taker_utxo_amtpercent=pct).min_value(amount) == amount * pct // 100


def test_choice_skips_spent_and_nonstandard():
    r = P.choose_commitment_utxo([C(1, unspent=False), C(2, standard=False), C(3)], CJ)
    assert r == P.CommitmentChoice(U(3), 0, "tx")


def test_choice_falls_back_to_wallet_then_external():
    tx = [C(1, confs=1)]
    wallet = [C(1, confs=1), C(4, value=10), C(5, used=(0,))]
    r = P.choose_commitment_utxo(tx, CJ, wallet_utxos=wallet, external=[C(9, external_reveals=3)])
    assert r == P.CommitmentChoice(U(5), 1, "wallet")
    wallet = [C(5, used=(0, 1, 2))]
    r = P.choose_commitment_utxo(tx, CJ, wallet_utxos=wallet, external=[C(9, external_reveals=3, used=(0,))])
    assert r == P.CommitmentChoice(U(9), 1, "external") and r.external


def test_choice_external_limited_by_reveals():
    ext = [C(9, external_reveals=2, used=(0, 1)), C(8, external_reveals=0), C(7, external_reveals=None)]
    r = P.choose_commitment_utxo([], CJ, external=ext)
    assert isinstance(r, P.NoCommitmentAvailable)
    assert set(r.exhausted_externals) == {U(9), U(8), U(7)}
    r = P.choose_commitment_utxo([], CJ, external=[C(9, external_reveals=2, used=(0,))])
    assert r == P.CommitmentChoice(U(9), 1, "external")
    # external entries obey age and amount too
    r = P.choose_commitment_utxo([], CJ, external=[C(9, external_reveals=3, confs=2)])
    assert isinstance(r, P.NoCommitmentAvailable) and r.too_young == (U(9),)


def test_choice_failure_reasons():
    r = P.choose_commitment_utxo([C(1, confs=2), C(2, confs=3)], CJ)
    assert isinstance(r, P.NoCommitmentAvailable)
    assert r.retry_later and r.too_young == (U(1), U(2)) and not r.too_small
    assert "too young" in r.reason and "retry" in r.reason
    r = P.choose_commitment_utxo([C(1, value=5, confs=2)], CJ)
    assert not r.retry_later and r.too_small == (U(1),) and r.too_young == (U(1),)
    assert "too small" in r.reason
    r = P.choose_commitment_utxo([], CJ)
    assert isinstance(r, P.NoCommitmentAvailable) and not r.retry_later


def test_choice_ignores_malformed_candidate_and_canonicalises():
    bad = P.CommitmentCandidate(utxo="xyz:1", value=10**9, confirmations=100)
    upper = P.CommitmentCandidate(utxo=U(3).upper(), value=10**9, confirmations=100)
    r = P.choose_commitment_utxo([bad, upper], CJ)
    assert r == P.CommitmentChoice(U(3), 0, "tx")


def test_policy_and_amount_validation():
    for kw in ({"taker_utxo_retries": 0}, {"taker_utxo_retries": 257}, {"taker_utxo_age": -1},
               {"taker_utxo_amtpercent": 1.5}):
        with pytest.raises(ValueError):
            P.CommitmentPolicy(**kw)
    for amt in (-1, 1.5, None, True):
        with pytest.raises(ValueError):
            P.choose_commitment_utxo([C(1)], amt)


def test_end_to_end_choice_generate_verify():
    """Taker chooses, generates, maker verifies; the chosen index is the proved index."""
    priv = ecc.ECPrivkey.generate_random_key().get_secret_bytes()
    used_c = {P.podle_commitment(priv, 0).hex()}
    used_idx = frozenset(i for i in range(3) if P.podle_commitment(priv, i).hex() in used_c)
    choice = P.choose_commitment_utxo([C(1, used=used_idx)], CJ)
    p = P.generate_podle(priv, choice.utxo, choice.index)
    fill = p.fill_commitment()
    rev = P.parse_revelation(p.serialize_revelation())
    assert P.find_podle_index(rev.P, rev.P2, rev.s, rev.e, P.parse_fill_commitment(fill)) == 1
    assert rev.commitment_hex not in used_c


# ---------------------------------------------------------------------------------- fuzzing

FUZZ_EXAMPLES = 500
_hexchars = "0123456789abcdefABCDEF"


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.text(max_size=450))
def test_fuzz_parse_revelation_text(text):
    try:
        rev = P.parse_revelation(text)
    except P.PoDLEParseError:
        return
    assert rev.serialize_revelation().lower() == text.lower()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.lists(st.one_of(st.text(_hexchars + ":", max_size=80), st.text(max_size=10)),
                min_size=0, max_size=7))
def test_fuzz_parse_revelation_fields(fields):
    text = "|".join(fields)
    try:
        P.parse_revelation(text)
    except P.PoDLEParseError:
        pass


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.sampled_from(["02", "03"]), st.text("0123456789abcdef", min_size=64, max_size=64),
       st.sampled_from(["02", "03"]), st.text("0123456789abcdef", min_size=64, max_size=64),
       st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_fuzz_structured_revelation_never_verifies(p_prefix, p_x, p2_prefix, p2_x, s, e):
    text = "|".join([UTXO, p_prefix + p_x, p2_prefix + p2_x, s.hex(), e.hex()])
    try:
        rev = P.parse_revelation(text)
    except P.PoDLEParseError:
        return
    assert rev.verify(rev.commitment) is False


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.text(max_size=70))
def test_fuzz_fill_commitment(text):
    try:
        c = P.parse_fill_commitment(text)
    except P.PoDLEParseError:
        return
    assert len(c) == 32 and text[0] == "P" and text[1:].lower() == c.hex()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40), st.binary(max_size=40), st.binary(max_size=40),
       st.one_of(st.binary(max_size=40), st.text(max_size=70)))
def test_fuzz_verify_podle_raw_never_raises(Pb, P2b, s, e, c):
    assert P.verify_podle(Pb, P2b, s, e, c) is False
