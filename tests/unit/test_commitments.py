"""CommitmentStore: used/external PoDLE commitments in the wallet's plugin storage (§7.4, T5)."""
from __future__ import annotations

import json

import electrum_ecc as ecc
import pytest
from electrum.json_db import JsonDB
from hypothesis import given, settings
from hypothesis import strategies as st

from electrum_joinmarket.protocol import podle as P
from electrum_joinmarket.protocol.commitments import STORAGE_KEY, CommitmentStore, ExternalCommitment

C_LOWER = "e90900469e3c76d54bd9d0f792eb9616b65b474713f564bdac7549401bbc7807"


class SavingDict(dict):
    """A dict with a save hook, like the plugin storage + wallet.save_db."""

    def __init__(self):
        super().__init__()
        self.saves = 0

    def save(self):
        self.saves += 1


def _electrum_storage(db: JsonDB):
    # what BasePlugin.get_storage(wallet) returns in Electrum 4.8
    return db.get_dict("plugin_data").setdefault("joinmarket", {})


def test_mark_used_and_is_used():
    s = CommitmentStore({})
    assert not s.is_used(C_LOWER)
    assert s.mark_used(C_LOWER) is True
    assert s.is_used(C_LOWER)
    assert s.mark_used(C_LOWER) is False
    assert s.used() == frozenset({C_LOWER})


def test_t5_changed_hex_case_is_the_same_commitment():
    s = CommitmentStore({})
    s.mark_used(C_LOWER)
    assert s.is_used(C_LOWER.upper())
    mixed = "".join(ch.upper() if i % 2 else ch for i, ch in enumerate(C_LOWER))
    assert s.is_used(mixed)
    assert s.mark_used(C_LOWER.upper()) is False  # not a new entry
    assert s.used() == frozenset({C_LOWER})
    # and the other way round: an upper-case mark is stored canonically
    s2 = CommitmentStore({})
    s2.mark_used(C_LOWER.upper())
    assert s2.used() == frozenset({C_LOWER})
    assert s2.is_used(bytes.fromhex(C_LOWER))


@pytest.mark.parametrize("bad", ["", C_LOWER[:-1], C_LOWER + "0", "P" + C_LOWER, "g" * 64, b"\x00" * 31,
                                 None, 42,
                                 " " + C_LOWER[1:]])
def test_malformed_commitments_raise(bad):
    s = CommitmentStore({})
    with pytest.raises(P.PoDLEParseError):
        s.mark_used(bad)
    with pytest.raises(P.PoDLEParseError):
        s.is_used(bad)
    assert s.used() == frozenset()


def test_on_change_runs_before_mark_used_returns_and_sees_the_record():
    storage = SavingDict()
    seen = []

    def save():
        # at save time the commitment is already in the storage object being saved
        seen.append(C_LOWER in storage[STORAGE_KEY]["used"])
        storage.save()

    s = CommitmentStore(storage, on_change=save)
    base = storage.saves
    s.mark_used(C_LOWER)
    assert storage.saves == base + 1 and seen[-1] is True
    s.mark_used(C_LOWER.upper())  # not new: no extra write
    assert storage.saves == base + 1


def test_failed_save_propagates_so_caller_does_not_send():
    def failing_save():
        raise OSError("disk full")

    s = CommitmentStore({}, on_change=failing_save)
    with pytest.raises(OSError):
        s.mark_used(C_LOWER)


def test_persistence_through_electrum_wallet_db():
    db = JsonDB("")
    s = CommitmentStore(_electrum_storage(db))
    s.mark_used(C_LOWER.upper())
    assert any(C_LOWER in p for p in db.pending_changes)  # a json-patch reached the wallet DB
    dumped = db.dump()
    assert C_LOWER.upper() not in dumped
    db2 = JsonDB(dumped)
    s2 = CommitmentStore(_electrum_storage(db2))
    assert s2.is_used(C_LOWER) and s2.is_used(C_LOWER.upper())
    # other keys of the plugin storage are left alone
    _electrum_storage(db2)["history"] = [1, 2]
    s2.mark_used("11" * 32)
    db3 = JsonDB(db2.dump())
    assert _electrum_storage(db3)["history"] == [1, 2]
    assert CommitmentStore(_electrum_storage(db3)).used() == frozenset({C_LOWER, "11" * 32})


def test_migration_canonicalises_existing_keys():
    storage = {STORAGE_KEY: {"used": {C_LOWER.upper(): 1, "junk": 2}, "external": {}}}
    s = CommitmentStore(storage)
    assert s.used() == frozenset({C_LOWER})


# ---------------------------------------------------------------------- used indices per key

def test_used_indices_for_key_drive_the_choice():
    priv = ecc.ECPrivkey.generate_random_key().get_secret_bytes()
    s = CommitmentStore({})
    utxo = "ab" * 32 + ":0"
    cand = lambda: P.CommitmentCandidate(utxo, 10**8, 10, s.used_indices_for_key(priv, 3))
    seen_indices = []
    for _ in range(3):
        choice = P.choose_commitment_utxo([cand()], 10**7)
        assert isinstance(choice, P.CommitmentChoice)
        proof = P.generate_podle(priv, choice.utxo, choice.index)
        s.mark_used(proof.commitment_hex.upper())  # BEFORE sending; case must not matter
        seen_indices.append(choice.index)
    assert seen_indices == [0, 1, 2]
    assert s.used_indices_for_key(priv, 3) == frozenset({0, 1, 2})
    r = P.choose_commitment_utxo([cand()], 10**7)
    assert isinstance(r, P.NoCommitmentAvailable) and r.exhausted == (utxo,)


# ------------------------------------------------------------------------------ externals

def _external_proofs(n=3):
    priv = ecc.ECPrivkey(bytes(31) + b"\x2a").get_secret_bytes()
    utxo = "cd" * 32 + ":7"
    return utxo, [P.generate_podle(priv, utxo, i) for i in range(n)]


def test_add_and_read_external():
    utxo, proofs = _external_proofs()
    storage = SavingDict()
    s = CommitmentStore(storage, on_change=storage.save)
    ext = s.add_external(utxo.upper(), proofs[0].P, {p.index: (p.P2, p.s, p.e) for p in proofs})
    assert isinstance(ext, ExternalCommitment) and ext.utxo == utxo
    got = s.external_for(utxo)
    assert got == ext
    for p in proofs:
        assert got.podle(p.index).serialize_revelation() == p.serialize_revelation()
        assert got.commitment_hex(p.index) == p.commitment_hex
    assert [e.utxo for e in s.externals()] == [utxo]
    assert storage.saves >= 1
    # JSON-serialisable, Ref file layout
    reloaded = json.loads(json.dumps(storage))[STORAGE_KEY]
    assert reloaded["external"][utxo]["reveal"]["2"]["P2"] == proofs[2].P2.hex()


def test_external_candidate_and_choice():
    utxo, proofs = _external_proofs(2)
    s = CommitmentStore({})
    s.add_external(utxo, proofs[0].P, {p.index: (p.P2, p.s, p.e) for p in proofs})
    cand = s.external_candidate(utxo, value=10**8, confirmations=50)
    assert cand.external_reveals == 2 and cand.used_indices == frozenset()
    r = P.choose_commitment_utxo([], 10**7, external=[cand])
    assert r == P.CommitmentChoice(utxo, 0, "external")
    proof = s.external_for(utxo).podle(r.index)
    assert proof.verify(proof.commitment)
    s.mark_used(proof.commitment)
    r = P.choose_commitment_utxo([], 10**7, external=[s.external_candidate(utxo, 10**8, 50)])
    assert r.index == 1
    s.mark_used(s.external_for(utxo).commitment_hex(1))
    r = P.choose_commitment_utxo([], 10**7, external=[s.external_candidate(utxo, 10**8, 50)])
    assert isinstance(r, P.NoCommitmentAvailable) and r.exhausted_externals == (utxo,)
    assert s.remove_external(utxo) is True
    assert s.external_for(utxo) is None and s.external_candidate(utxo, 1, 1) is None
    assert s.remove_external(utxo) is False


def test_external_that_does_not_verify_is_refused():
    utxo, proofs = _external_proofs()
    s = CommitmentStore({})
    p0, p1 = proofs[0], proofs[1]
    with pytest.raises(P.PoDLEParseError):  # s and e swapped between proofs
        s.add_external(utxo, p0.P, {0: (p0.P2, p1.s, p0.e)})
    with pytest.raises(P.PoDLEParseError):  # filed under the wrong index
        s.add_external(utxo, p0.P, {1: (p0.P2, p0.s, p0.e)})
    with pytest.raises(P.PoDLEParseError):  # index 256 does not exist
        s.add_external(utxo, p0.P, {256: (p0.P2, p0.s, p0.e)})
    for weird_index in ("\u00b2", "\u0661", "00", "-0", " 0"):
        with pytest.raises(P.PoDLEParseError):
            s.import_commitments_json({"external": {utxo: {"P": p0.P.hex(), "reveal": {
                weird_index: {"P2": p0.P2.hex(), "s": p0.s.hex(), "e": p0.e.hex()}}}}})
    with pytest.raises(P.PoDLEParseError):
        s.add_external("not-a-utxo", p0.P, {0: (p0.P2, p0.s, p0.e)})
    with pytest.raises(P.PoDLEParseError):
        s.add_external(utxo, p0.P, {})
    assert s.externals() == []


def test_corrupt_external_entry_is_ignored():
    utxo, proofs = _external_proofs(1)
    s = CommitmentStore({})
    s.add_external(utxo, proofs[0].P, {0: (proofs[0].P2, proofs[0].s, proofs[0].e)})
    s._external[utxo]["reveal"]["0"]["s"] = "00" * 32
    assert s.external_for(utxo) is None
    assert s.externals() == []
    assert s.external_for("garbage") is None


# ---------------------------------------------------------------- Ref commitments.json interop

def test_import_export_ref_commitments_json():
    utxo, proofs = _external_proofs()
    ref_file = {
        "used": [C_LOWER.upper(), "22" * 32],
        "external": {utxo: {"P": proofs[0].P.hex(), "reveal": {
            str(p.index): {"P2": p.P2.hex(), "s": p.s.hex(), "e": p.e.hex()} for p in proofs}}},
    }
    s = CommitmentStore({})
    s.mark_used("22" * 32)
    assert s.import_commitments_json(ref_file) == (1, 1)
    out = s.export_commitments_json()
    assert out["used"] == sorted([C_LOWER, "22" * 32])
    assert out["external"] == {utxo: ref_file["external"][utxo]}
    s2 = CommitmentStore({})
    s2.import_commitments_json(json.loads(json.dumps(out)))
    assert s2.export_commitments_json() == out


def test_import_is_all_or_nothing():
    utxo, proofs = _external_proofs(1)
    bad = {"used": ["33" * 32], "external": {utxo: {"P": proofs[0].P.hex(), "reveal": {
        "0": {"P2": proofs[0].P2.hex(), "s": "00" * 32, "e": proofs[0].e.hex()}}}}}
    s = CommitmentStore({})
    with pytest.raises(P.PoDLEParseError):
        s.import_commitments_json(bad)
    assert s.used() == frozenset() and s.externals() == []
    for junk in ({"used": "abc"}, {"external": []}, [], {"used": ["zz"]}):
        with pytest.raises(P.PoDLEParseError):
            s.import_commitments_json(junk)
    assert s.used() == frozenset()


# ---------------------------------------------------------------------------------- fuzzing

FUZZ_EXAMPLES = 300


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_is_used_only_clean_errors(text):
    s = CommitmentStore({})
    try:
        s.mark_used(text)
    except P.PoDLEParseError:
        assert s.used() == frozenset()
        return
    assert s.is_used(text.lower()) and s.is_used(text.upper())
    assert s.used() == frozenset({text.lower()})


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                    lambda ch: st.one_of(st.lists(ch, max_size=4),
                                         st.dictionaries(st.text(max_size=6), ch, max_size=4)),
                    max_leaves=15))
def test_fuzz_import_json_only_clean_errors(data):
    s = CommitmentStore({})
    try:
        s.import_commitments_json(data)
    except P.PoDLEParseError:
        assert s.used() == frozenset() and s.externals() == []
