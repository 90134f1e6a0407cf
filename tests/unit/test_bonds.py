"""Fidelity bond proofs and values against the Ref 0.9.12 vector (docs/protocol.md §11)."""
from __future__ import annotations

import base64
import json

import electrum_ecc as ecc
import pytest
from electrum import bitcoin
from hypothesis import given, settings
from hypothesis import strategies as st

from electrum_joinmarket.protocol import bonds as B
from tests.vectors import VECTORS

with open(VECTORS / "fidelity_bond.json", encoding="utf-8") as _f:
    V = json.load(_f)

PROOF = V["tbond_base64"]
TAKER, MAKER = V["taker_nick"], V["maker_nick"]
RAW = base64.b64decode(PROOF)


def _proof():
    return B.parse_and_verify_bond_proof(PROOF, MAKER, TAKER)


def _spk():
    return bytes.fromhex(V["bond_p2wsh_scriptpubkey_hex"])


# ----------------------------------------------------------------------------- the vector

def test_decoded_fields():
    assert len(RAW) == V["decoded_length"] == B.PROOF_LEN == 252
    assert len(PROOF) == B.PROOF_B64_LEN
    f = V["decoded_fields_hex"]
    assert RAW[:72].hex() == f["nick_sig_padded72"]
    assert RAW[72:144].hex() == f["cert_sig_padded72"]
    p = _proof()
    assert p.nick_sig == bytes.fromhex(f["nick_sig_padded72"]).lstrip(b"\xff")
    assert p.cert_sig == bytes.fromhex(f["cert_sig_padded72"]).lstrip(b"\xff")
    assert p.cert_pub.hex() == f["cert_pub"] == V["cert_pubkey"]
    assert p.cert_expiry == f["cert_expiry_u16le"] == V["cert_expiry"]
    assert p.utxo_pub.hex() == f["utxo_pub"] == V["utxo_pubkey"]
    assert p.txid == f["txid"] == V["utxo_txid_display_order"]
    assert p.vout == f["vout_u32le"] == V["utxo_vout"]
    assert p.locktime == f["locktime_u32le"] == V["locktime"]
    assert p.cert_valid_until_height == V["cert_valid_until_height"]
    assert p.utxo == f"{V['utxo_txid_display_order']}:{V['utxo_vout']}"
    assert p.serialize() == PROOF


def test_keys_and_messages():
    cert_priv = ecc.ECPrivkey(bytes.fromhex(V["cert_privkey"])[:32])
    utxo_priv = ecc.ECPrivkey(bytes.fromhex(V["utxo_privkey"])[:32])
    assert cert_priv.get_public_key_hex() == V["cert_pubkey"]
    assert utxo_priv.get_public_key_hex() == V["utxo_pubkey"]
    assert B.nick_message(TAKER, MAKER).decode() == V["nick_msg_signed"]
    assert B.cert_message(bytes.fromhex(V["cert_pubkey"]), V["cert_expiry"]).hex() == V["cert_msg_signed_hex"]


def test_proof_recreated_byte_for_byte():
    cert_sig = B.sign_bond_certificate(bytes.fromhex(V["utxo_privkey"]), bytes.fromhex(V["cert_pubkey"]),
                                       V["cert_expiry"])
    assert cert_sig == _proof().cert_sig
    proof = B.create_bond_proof(
        cert_privkey=bytes.fromhex(V["cert_privkey"]), cert_sig=cert_sig, cert_expiry=V["cert_expiry"],
        utxo_pub=bytes.fromhex(V["utxo_pubkey"]), txid=V["utxo_txid_display_order"], vout=V["utxo_vout"],
        locktime=V["locktime"], maker_nick=MAKER, taker_nick=TAKER)
    assert proof == PROOF
    assert V["privmsg_form"].startswith("!tbond " + proof + " ")


def test_redeem_script_and_p2wsh():
    pub = bytes.fromhex(V["utxo_pubkey"])
    assert B.bond_redeem_script(pub, V["locktime"]).hex() == V["bond_redeem_script_hex"]
    assert B.bond_script_pubkey(pub, V["locktime"]).hex() == V["bond_p2wsh_scriptpubkey_hex"]
    # cross-check through Electrum's own address code
    addr = bitcoin.script_to_p2wsh(bytes.fromhex(V["bond_redeem_script_hex"]))
    assert bitcoin.address_to_script(addr).hex() == V["bond_p2wsh_scriptpubkey_hex"]


def test_verifies_is_true():
    assert V["verifies"] is True
    _proof().verify_signatures(TAKER, MAKER)


def test_hex_variant_certificate_is_accepted():
    utxo_priv = ecc.ECPrivkey(bytes.fromhex(V["utxo_privkey"])[:32])
    cert_pub = bytes.fromhex(V["cert_pubkey"])
    msg = B.cert_message_hex_variant(cert_pub, V["cert_expiry"])
    assert msg == b"fidelity-bond-cert|" + V["cert_pubkey"].encode() + b"|470"
    hex_sig = B._sign_der(utxo_priv, msg)
    proof = B.create_bond_proof(
        cert_privkey=bytes.fromhex(V["cert_privkey"]), cert_sig=hex_sig, cert_expiry=V["cert_expiry"],
        utxo_pub=utxo_priv.get_public_key_bytes(), txid=V["utxo_txid_display_order"], vout=3,
        locktime=V["locktime"], maker_nick=MAKER, taker_nick=TAKER)
    assert B.parse_and_verify_bond_proof(proof, MAKER, TAKER).cert_sig == hex_sig


# ------------------------------------------------------------------------------- negatives

def test_proof_bound_to_the_nick_pair():
    for maker, taker in ((TAKER, MAKER), (MAKER, "J5xxxxxxxxxxxxxx"), ("J5yyyyyyyyyyyyyy", TAKER),
                         (MAKER, TAKER + "O")):
        with pytest.raises(B.BondProofError, match="nick sig"):
            B.parse_and_verify_bond_proof(PROOF, maker, taker)
    with pytest.raises(B.BondProofError):
        B.parse_and_verify_bond_proof(PROOF, MAKER, "J5caf\u00e9xxxxxxxxx")


def _tamper(offset: int, xor: int = 0x01) -> str:
    raw = bytearray(RAW)
    raw[offset] ^= xor
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("offset,expect", [
    (30, "nick sig"),                   # inside nick_sig
    (72 + 40, "cert sig"),              # inside cert_sig
    (144 + 33, "cert sig"),             # cert_expiry (signed by the cert sig)
])
def test_tampered_signed_fields_rejected(offset, expect):
    with pytest.raises(B.BondProofError, match=expect):
        B.parse_and_verify_bond_proof(_tamper(offset), MAKER, TAKER)


def test_tampered_pubkeys_rejected():
    # flipping the parity byte keeps a valid point but breaks the signatures
    with pytest.raises(B.BondProofError, match="nick sig"):
        B.parse_and_verify_bond_proof(_tamper(144, 0x01), MAKER, TAKER)
    with pytest.raises(B.BondProofError, match="cert sig"):
        B.parse_and_verify_bond_proof(_tamper(179, 0x01), MAKER, TAKER)
    # not a point at all
    raw = bytearray(RAW)
    raw[144:177] = b"\x02" + b"\xff" * 32
    with pytest.raises(B.BondProofError, match="cert_pub"):
        B.parse_bond_proof(base64.b64encode(bytes(raw)).decode())
    raw = bytearray(RAW)
    raw[179] = 0x04
    with pytest.raises(B.BondProofError, match="utxo_pub"):
        B.parse_bond_proof(base64.b64encode(bytes(raw)).decode())


def test_unsigned_fields_are_caught_by_the_chain_check():
    """txid/vout/locktime are not covered by a signature; the scriptPubKey check binds locktime
    and the utxo lookup binds txid:vout."""
    p = B.parse_and_verify_bond_proof(_tamper(252 - 1), MAKER, TAKER)  # locktime high byte
    assert p.locktime != V["locktime"]
    with pytest.raises(B.BondProofError, match="scriptPubKey"):
        B.check_bond_utxo(p, script_pubkey=_spk(), confirmations=10, current_block_height=900_000)
    B.check_bond_utxo(_proof(), script_pubkey=_spk(), confirmations=10, current_block_height=900_000)


def test_check_bond_utxo_conditions():
    p = _proof()
    ok = dict(script_pubkey=_spk(), confirmations=1, current_block_height=V["cert_valid_until_height"])
    B.check_bond_utxo(p, **ok)
    for change, msg in (({"script_pubkey": None}, "spent"), ({"confirmations": 0}, "unconfirmed"),
                        ({"current_block_height": V["cert_valid_until_height"] + 1}, "expired"),
                        ({"script_pubkey": _spk()[:-1] + b"\x00"}, "scriptPubKey")):
        with pytest.raises(B.BondProofError, match=msg):
            B.check_bond_utxo(p, **{**ok, **change})


def _with(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("bad", [
    "", PROOF[:-4], PROOF + "AAAA", PROOF[:-1] + "!", PROOF.replace("/", "_"), " " + PROOF[1:],
    PROOF[:-1] + "\n",
    _with(b"\xff" * 72 + RAW[72:]),                                         # no DER header in nick slot
    _with(b"\xff" + b"\x00" + RAW[2:]),                                     # padding not 0xff
    _with(RAW[:72] + b"\xff" * 72 + RAW[144:]),                             # no DER header in cert slot
    _with(b"\x30" + RAW[1:]),                                               # header early, length mismatch
])
def test_malformed_proofs_raise_bond_proof_error(bad):
    with pytest.raises(B.BondProofError):
        B.parse_and_verify_bond_proof(bad, MAKER, TAKER)


def test_non_string_proof():
    with pytest.raises(B.BondProofError):
        B.parse_bond_proof(RAW)


# ------------------------------------------------------------------------------ bond value

@pytest.mark.parametrize("ex", V["bond_value_examples"], ids=lambda e: str(e["value"]))
def test_bond_value_examples_exact(ex):
    v = B.calculate_timelocked_fidelity_bond_value(
        ex["utxo_value_sat"], ex["confirmation_time"], ex["locktime"], ex["current_time"],
        ex["interest_rate"], ex["exponent"])
    assert isinstance(v, float)
    assert v == ex["value"]  # exact float equality, same operation order as Ref
    assert B.calculate_timelocked_fidelity_bond_value(
        ex["utxo_value_sat"], ex["confirmation_time"], ex["locktime"], ex["current_time"]) == ex["value"]


def test_bond_value_constants():
    assert B.YEAR_SECONDS == 31_556_952
    assert B.DEFAULT_INTEREST_RATE == 0.015 and B.DEFAULT_BOND_VALUE_EXPONENT == 1.3


def test_bond_value_properties():
    conf, lock, now = 1_600_000_000, 1_900_000_000, 1_700_000_000
    v1 = B.calculate_timelocked_fidelity_bond_value(10**8, conf, lock, now)
    v2 = B.calculate_timelocked_fidelity_bond_value(2 * 10**8, conf, lock, now)
    assert v2 > 2 * v1 > 0  # superlinear: splitting a bond loses weight
    # longer lock is worth more; an expired lock decays to zero
    assert B.calculate_timelocked_fidelity_bond_value(10**8, conf, lock + 10**7, now) > v1
    assert B.calculate_timelocked_fidelity_bond_value(10**8, conf, lock, lock + 100 * B.YEAR_SECONDS) == 0.0


# ---------------------------------------------------------------------------------- fuzzing

FUZZ_EXAMPLES = 400


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_proof_text(text):
    try:
        B.parse_and_verify_bond_proof(text, MAKER, TAKER)
    except B.BondProofError:
        pass


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(min_size=252, max_size=252))
def test_fuzz_random_252_bytes(raw):
    with pytest.raises(B.BondProofError):
        B.parse_and_verify_bond_proof(_with(raw), MAKER, TAKER)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.integers(min_value=0, max_value=251), st.integers(min_value=1, max_value=255))
def test_fuzz_single_byte_mutation(offset, xor):
    """Any change in bytes 0..211 (sigs, cert_pub, expiry, utxo_pub) is rejected; txid/vout/locktime parse."""
    text = _tamper(offset, xor)
    if offset < 212:
        with pytest.raises(B.BondProofError):
            B.parse_and_verify_bond_proof(text, MAKER, TAKER)
    else:
        p = B.parse_and_verify_bond_proof(text, MAKER, TAKER)
        assert (p.txid, p.vout, p.locktime) != (V["utxo_txid_display_order"], V["utxo_vout"], V["locktime"])


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(min_size=0, max_size=72), st.binary(min_size=0, max_size=72))
def test_fuzz_signature_slots(nick_slot, cert_slot):
    raw = nick_slot.rjust(72, b"\xff") + cert_slot.rjust(72, b"\xff") + RAW[144:]
    try:
        B.parse_and_verify_bond_proof(_with(raw), MAKER, TAKER)
    except B.BondProofError:
        return
    # only the genuine signatures can pass
    assert raw == RAW
