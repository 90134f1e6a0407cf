"""Nick derivation and private-message signatures against the Ref 0.9.12 vectors (docs/protocol.md §6)."""
from __future__ import annotations

import base64
import json
import pickle

import electrum_ecc as ecc
import pytest
from electrum.bitcoin import base_encode
from electrum.crypto import sha256
from hypothesis import given, settings
from hypothesis import strategies as st

from electrum_joinmarket.protocol import nick as N
from tests.vectors import VECTORS


def _load(name: str) -> dict:
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)


NICKS = _load("nicks.json")["nick_vectors"]
SIGNING = _load("privmsg_signing.json")
SIGNED_EXAMPLES = [ex for ex in SIGNING["examples"] if "sig_base64_der" in ex]


def _keys():
    taker = N.NickKey.from_secret(bytes.fromhex(SIGNING["taker_nick_privkey"]))
    maker = N.NickKey.from_secret(bytes.fromhex(SIGNING["maker_nick_privkey"]))
    return taker, maker


def _body(ex: dict) -> str:
    if "body" in ex:
        return ex["body"]
    assert ex["signed_string"].endswith(ex["hostid"])
    return ex["signed_string"][: -len(ex["hostid"])]


def _signer(ex: dict):
    taker, maker = _keys()
    return maker if ex.get("from") == SIGNING["maker_nick"] else taker


# ---------------------------------------------------------------------------------- nicks.json

def test_vector_count():
    assert len(NICKS) == 4
    assert any(v["padded"] for v in NICKS)
    assert len(SIGNED_EXAMPLES) == 4


@pytest.mark.parametrize("v", NICKS, ids=[v["nick"] for v in NICKS])
def test_nick_vectors(v):
    key = N.NickKey.from_secret(bytes.fromhex(v["nick_privkey_33B_compressed_flag"]))
    assert key.pubkey_hex == v["pubkey"]
    # intermediate steps of §6.1, byte for byte
    assert sha256(v["pubkey"].encode("ascii"))[:10].hex() == v["sha256_of_ascii_hex_pubkey_first10"]
    assert N.nick_from_pubkey(v["pubkey"]) == v["nick"]
    assert key.nick == v["nick"]
    assert len(key.nick) == 16 and key.nick.startswith("J5")
    assert key.nick[2:].rstrip("O") == v["base58"]
    assert key.nick.endswith("O") == v["padded"]
    assert N.nick_matches_pubkey(v["nick"], v["pubkey"]) is v["verifies"]


def test_nick_from_32_byte_secret_equals_33_byte_form():
    v = NICKS[0]
    raw = bytes.fromhex(v["nick_privkey_33B_compressed_flag"])
    assert N.NickKey.from_secret(raw[:32]).nick == v["nick"]


def test_nick_hash_is_of_hex_string_not_bytes():
    v = NICKS[0]
    from_bytes = base_encode(sha256(bytes.fromhex(v["pubkey"]))[:10], base=58)
    assert "J5" + from_bytes.ljust(14, "O") != v["nick"]
    # the upper-case hex string is a different string and so a different nick
    assert N.nick_from_pubkey(v["pubkey"].upper()) != v["nick"]


@pytest.mark.parametrize("bad", [b"", b"\x00" * 32, bytes.fromhex("ff" * 32), b"\x01" * 31, 123])
def test_from_secret_rejects_bad_secrets(bad):
    with pytest.raises((N.NickError, TypeError)):
        N.NickKey.from_secret(bad)


def test_fresh_keys_are_random_and_secret_is_not_shown():
    a, b = N.NickKey(), N.NickKey()
    assert a.nick != b.nick and a.pubkey_hex != b.pubkey_hex
    for k in (a, b):
        assert len(k.nick) == 16 and k.nick.startswith("J5")
        assert N.nick_from_pubkey(k.pubkey_hex) == k.nick
        secret_hex = k._priv.get_secret_bytes().hex()
        assert secret_hex not in repr(k) and secret_hex not in str(k)
    with pytest.raises(TypeError):
        pickle.dumps(a)


# ---------------------------------------------------------------------- privmsg_signing.json

@pytest.mark.parametrize("ex", SIGNED_EXAMPLES, ids=[f"{e['cmd']}-{e['hostid']}" for e in SIGNED_EXAMPLES])
def test_signature_vectors_byte_for_byte(ex):
    key = _signer(ex)
    body = _body(ex)
    assert body + ex["hostid"] == ex["signed_string"]
    sig = key.sign(body, ex["hostid"])
    assert sig == ex["sig_base64_der"]
    assert key.sign_string(ex["signed_string"]) == ex["sig_base64_der"]
    ok = N.verify_nick_signature(key.nick, key.pubkey_hex, ex["sig_base64_der"], body, ex["hostid"])
    assert ok is ex["verifies"]


@pytest.mark.parametrize("ex", [e for e in SIGNED_EXAMPLES if "onion_json_line_without_CRLF" in e],
                         ids=lambda e: e["cmd"])
def test_onion_line_assembly(ex):
    key = _signer(ex)
    body = _body(ex)
    fields = key.signed_privmsg_fields(body, ex["hostid"])  # JMMsgSignature msg_to_return
    line = f"{ex['from']}!{ex['to']}!{ex['cmd']} {fields}"
    assert json.dumps({"type": 685, "line": line}) == ex["onion_json_line_without_CRLF"]
    # the receiver's parse (§4.1): body = tokens[1:-2], pub, sig = last two tokens
    tokens = line.split("!", 2)[2].split(" ")
    assert " ".join(tokens[1:-2]) == body
    assert N.verify_nick_signature(ex["from"], tokens[-2], tokens[-1], body, ex["hostid"])


def test_receiver_view_and_irc_message():
    fill = SIGNED_EXAMPLES[0]
    expected = f"!fill {_body(fill)} {SIGNING['taker_nick_pubkey']} {fill['sig_base64_der']}"
    assert fill["receiver_view_message"] == expected
    irc = [e for e in SIGNED_EXAMPLES if e["hostid"] == "hackint"][0]
    taker, _ = _keys()
    assert irc["message"] == "!fill " + taker.signed_privmsg_fields(_body(irc), "hackint")


def test_cross_channel_replay_fails_both_ways():
    onion = [e for e in SIGNED_EXAMPLES if e["cmd"] == "fill" and e["hostid"] == "onion-network"][0]
    irc = [e for e in SIGNED_EXAMPLES if e["hostid"] == "hackint"][0]
    taker, _ = _keys()
    body = _body(onion)
    assert _body(irc) == body
    assert N.verify_nick_signature(taker.nick, taker.pubkey_hex, irc["sig_base64_der"], body, "hackint")
    under_onion = N.verify_nick_signature(taker.nick, taker.pubkey_hex, irc["sig_base64_der"], body,
                                          "onion-network")
    assert under_onion is irc["verifies_under_onion_hostid (must be false)"]
    assert not N.verify_nick_signature(taker.nick, taker.pubkey_hex, onion["sig_base64_der"], body, "hackint")


def test_lowercase_hostid_fallback_like_ref():
    taker, _ = _keys()
    body = "some body"
    sig = taker.sign(body, "hackint")  # the server reported the name in lower case
    assert N.verify_nick_signature(taker.nick, taker.pubkey_hex, sig, body, "HackInt")
    assert not N.verify_nick_signature(taker.nick, taker.pubkey_hex, sig, body, "HackInt",
                                       accept_lowercase_hostid=False)
    # the fallback only lower-cases; it does not make arbitrary hostids match
    assert not N.verify_nick_signature(taker.nick, taker.pubkey_hex, sig, body, "hackint2")


# ------------------------------------------------------------------------------ negative cases

def test_m13_signature_by_key_not_matching_nick_is_rejected():
    """A perfectly valid signature by the maker key, claimed to come from the taker's nick."""
    taker, maker = _keys()
    pub = [e for e in SIGNED_EXAMPLES if e["cmd"] == "pubkey"][0]
    body = _body(pub)
    assert N.verify_message_signature(maker.pubkey_hex, pub["sig_base64_der"], body + pub["hostid"])
    assert N.verify_nick_signature(maker.nick, maker.pubkey_hex, pub["sig_base64_der"], body, pub["hostid"])
    assert not N.verify_nick_signature(taker.nick, maker.pubkey_hex, pub["sig_base64_der"], body,
                                       pub["hostid"])
    # and the taker's pubkey with the maker's signature: nick matches but the signature does not
    assert not N.verify_nick_signature(taker.nick, taker.pubkey_hex, pub["sig_base64_der"], body,
                                       pub["hostid"])


def test_nick_with_other_version_or_truncation_rejected():
    taker, _ = _keys()
    sig = taker.sign("x y", "onion-network")
    for bad_nick in ("J6" + taker.nick[2:], "K5" + taker.nick[2:], taker.nick[:15], taker.nick + "O",
                     taker.nick.lower(), ""):
        assert not N.verify_nick_signature(bad_nick, taker.pubkey_hex, sig, "x y", "onion-network")


def test_tampered_signature_body_and_hostid_rejected():
    ex = SIGNED_EXAMPLES[0]
    key = _signer(ex)
    body, sig, hostid = _body(ex), ex["sig_base64_der"], ex["hostid"]
    assert N.verify_nick_signature(key.nick, key.pubkey_hex, sig, body, hostid)
    der = bytearray(base64.b64decode(sig))
    for pos in (10, 20, len(der) - 1):
        t = bytearray(der)
        t[pos] ^= 0x01
        tampered = base64.b64encode(bytes(t)).decode()
        assert not N.verify_nick_signature(key.nick, key.pubkey_hex, tampered, body, hostid)
    assert not N.verify_nick_signature(key.nick, key.pubkey_hex, sig, body + " ", hostid)
    changed = body.replace("5000000", "5000001")
    assert not N.verify_nick_signature(key.nick, key.pubkey_hex, sig, changed, hostid)
    assert not N.verify_nick_signature(key.nick, key.pubkey_hex, sig, body, "onion-network2")
    assert not N.verify_nick_signature(key.nick, key.pubkey_hex, sig, body, "")
    assert not N.verify_nick_signature(key.nick, key.pubkey_hex, sig, "", hostid)


def test_high_s_signature_is_accepted_like_ref():
    """Ref (python-bitcointx) normalises before verifying; a malleated high-S DER is valid."""
    taker, _ = _keys()
    ex = SIGNED_EXAMPLES[0]
    r, s = ecc.get_r_and_s_from_ecdsa_der_sig(base64.b64decode(ex["sig_base64_der"]))
    s_high = ecc.CURVE_ORDER - s

    def der_int(v: int) -> bytes:
        b = v.to_bytes(32, "big").lstrip(b"\x00")
        if b[0] & 0x80:
            b = b"\x00" + b
        return b"\x02" + bytes([len(b)]) + b

    body_der = der_int(r) + der_int(s_high)
    high = b"\x30" + bytes([len(body_der)]) + body_der
    assert N.verify_nick_signature(taker.nick, taker.pubkey_hex, base64.b64encode(high).decode(),
                                   _body(ex), ex["hostid"])


@pytest.mark.parametrize("bad_pub", [
    "", "03f4330f82aefba0920980776c4e2237395948545ff41ab5baa1eb5e4e75146be",   # 65 chars
    "03F4330F82AEFBA0920980776C4E2237395948545FF41AB5BAA1EB5E4E75146BE2",      # upper case
    "04" + "00" * 64, "05" + "11" * 32, "02" + "ff" * 32,                      # bad prefix / not on curve
    " 03f4330f82aefba0920980776c4e2237395948545ff41ab5baa1eb5e4e75146be2",
    "03f4330f82aefba0920980776c4e2237395948545ff41ab5baa1eb5e4e75146be2\n",
])
def test_malformed_pubkeys_rejected_cleanly(bad_pub):
    with pytest.raises(N.NickSignatureError):
        N.parse_pubkey_hex(bad_pub)
    ex = SIGNED_EXAMPLES[0]
    assert not N.verify_nick_signature(N.nick_from_pubkey(bad_pub), bad_pub, ex["sig_base64_der"], _body(ex),
                                       ex["hostid"])


@pytest.mark.parametrize("bad_sig", [
    "", "====", "MEQC", "not base64!", "A" * 97,
    "MEQCIDHwHd6bnXrFax/b4ETc71pGVy0uS6yUepY8pP0Ix87SAiAGSyQbczNHpV08S7WZ3c+uXt5prQhfL7SY6MZev8n7yQ",
    "MEQCIDHwHd6bnXrFax/b4ETc71pGVy0uS6yUepY8pP0Ix87SAiAGSyQbczNHpV08S7WZ3c+uXt5prQhfL7SY6MZev8n7yQ==\n",
    base64.b64encode(b"\x31" + bytes(70)).decode(),
    base64.b64encode(b"\x30\x06\x02\x01\x00\x02\x01\x00").decode(),
])
def test_malformed_signatures_rejected_cleanly(bad_sig):
    with pytest.raises(N.NickSignatureError):
        N.parse_signature_b64(bad_sig)
    taker, _ = _keys()
    assert not N.verify_nick_signature(taker.nick, taker.pubkey_hex, bad_sig, "a b", "onion-network")


def test_non_string_inputs_return_false():
    taker, _ = _keys()
    sig = taker.sign("a", "h")
    for args in [(None, taker.pubkey_hex, sig, "a", "h"), (taker.nick, None, sig, "a", "h"),
                 (taker.nick, taker.pubkey_hex, None, "a", "h"),
                 (taker.nick, taker.pubkey_hex, sig, b"a", "h"),
                 (taker.nick, taker.pubkey_hex, sig, "a", None),
                 (taker.nick, taker.pubkey_hex.encode(), sig, "a", "h")]:
        assert N.verify_nick_signature(*args) is False
    assert N.verify_nick_signature(taker.nick, taker.pubkey_hex, sig, "a", "h") is True


def test_non_ascii_body_is_signed_as_utf8():
    taker, _ = _keys()
    body = "error: caf\u00e9 \u2603"
    sig = taker.sign(body, "onion-network")
    assert taker.verify(sig, body, "onion-network")
    assert not taker.verify(sig, "error: cafe \u2603", "onion-network")


# ---------------------------------------------------------------------------------- fuzzing

FUZZ_EXAMPLES = 400


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_parse_signature(text):
    try:
        sig64 = N.parse_signature_b64(text)
    except N.NickSignatureError:
        return
    assert isinstance(sig64, bytes) and len(sig64) == 64


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(min_size=0, max_size=80))
def test_fuzz_der_bytes(raw):
    """Random bytes as a DER signature: clean error or a 64-byte sig; never verifies."""
    b64 = base64.b64encode(raw).decode()
    try:
        N.parse_signature_b64(b64)
    except N.NickSignatureError:
        pass
    taker, _ = _keys()
    assert N.verify_nick_signature(taker.nick, taker.pubkey_hex, b64, "fuzz body", "onion-network") is False


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(nick=st.text(max_size=20),
       pub=st.one_of(st.text(max_size=70), st.text("0123456789abcdef", min_size=66, max_size=66)),
       sig=st.text(max_size=100), body=st.text(max_size=50), hostid=st.text(max_size=20))
def test_fuzz_verify_never_raises(nick, pub, sig, body, hostid):
    assert N.verify_nick_signature(nick, pub, sig, body, hostid) is False


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.text("0123456789abcdef", min_size=66, max_size=66))
def test_fuzz_parse_pubkey(text):
    try:
        pt = N.parse_pubkey_hex(text)
    except N.NickSignatureError:
        return
    assert pt.get_public_key_hex(compressed=True) == text
