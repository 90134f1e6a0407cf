"""Fidelity bonds checked on the real chain (bonds.bond_values through ElectrumChain): real
P2WSH timelocked bond utxos on regtest, proofs made with bonds.create_bond_proof. Valid bonds
are valued as the reference values them; a bond whose utxo is missing or pays another script
counts zero; every bond's lookups are issued at once."""
from __future__ import annotations

import time

import pytest
from electrum.bitcoin import script_to_p2wsh

from electrum_joinmarket.protocol import bonds as B

pytestmark = pytest.mark.stack

TAKER = "J5takerxxxxxxxxx"
LOCKTIME = int(time.time()) + 400 * 24 * 3600          # a timestamp locktime a year ahead
EXPIRY = 100                                            # certificate valid to height 201 600


def _key(i: int) -> bytes:
    return bytes([i + 1]) * 32


def _pub(secret: bytes) -> bytes:
    import electrum_ecc as ecc
    return ecc.ECPrivkey(secret).get_public_key_bytes(compressed=True)


def _proof(maker: str, i: int, txid: str, vout: int) -> str:
    utxo_key, cert_key = _key(i), _key(100 + i)
    cert_sig = B.sign_bond_certificate(utxo_key, _pub(cert_key), EXPIRY)
    return B.create_bond_proof(cert_privkey=cert_key, cert_sig=cert_sig, cert_expiry=EXPIRY,
                               utxo_pub=_pub(utxo_key), txid=txid, vout=vout, locktime=LOCKTIME,
                               maker_nick=maker, taker_nick=TAKER)


def _fund(bitcoind, address: str, sats: int) -> tuple[str, int]:
    txid = bitcoind.fund(address, sats, confirm=False)
    raw = bitcoind.rpc("getrawtransaction", txid, True)
    n = next(o["n"] for o in raw["vout"] if o["scriptPubKey"].get("address") == address)
    return txid, n


def test_bonds_valued_on_chain_concurrently(chain, electrum_node, bitcoind, sync_tip):
    entries, funded = [], {}
    for i, sats in enumerate((50_000_000, 20_000_000, 10_000_000)):
        script = B.bond_script_pubkey(_pub(_key(i)), LOCKTIME)
        addr = script_to_p2wsh(B.bond_redeem_script(_pub(_key(i)), LOCKTIME))
        txid, n = _fund(bitcoind, addr, sats)
        funded[f"J5maker{i}"] = (txid, n, sats, script)
        entries.append({"counterparty": f"J5maker{i}", "proof": _proof(f"J5maker{i}", i, txid, n)})
    # a proof for a coin that pays a plain address (not the bond script), one for no coin at all
    plain = bitcoind.rpc("getnewaddress", "", "bech32", wallet="miner")
    ptxid, pn = _fund(bitcoind, plain, 30_000_000)
    entries.append({"counterparty": "J5wrongscript", "proof": _proof("J5wrongscript", 7, ptxid, pn)})
    entries.append({"counterparty": "J5nocoin", "proof": _proof("J5nocoin", 8, "ab" * 32, 0)})
    # a second entry for a maker: the first one counts
    entries.append({"counterparty": "J5maker0", "proof": _proof("J5maker0", 1, *funded["J5maker1"][:2])})
    bitcoind.mine(1)
    sync_tip()
    now = time.time()
    values = electrum_node.run(B.bond_values(chain, entries, taker_nick=TAKER,
                                             tip_height=chain.local_height(),
                                             header_at=chain.header_at, now=now))
    assert set(values) == {"J5maker0", "J5maker1", "J5maker2"}
    # all five lookups left together, each bond's own script as the hint (not one bond after
    # another): one batch of 5 transactions + 5 unspent lists; then the 3 bonds' proofs with the
    # unspent list of the coin that is not a bond (its hint was wrong), then that coin's proof
    log = [sorted(b) for b in chain.batch_log]
    assert log == [["get_transaction"] * 5 + ["listunspent"] * 5,
                   ["get_merkle"] * 3 + ["listunspent"], ["get_merkle"]], log
    for maker, (txid, n, sats, script) in funded.items():
        info = electrum_node.run(chain.get_utxo(f"{txid}:{n}"))
        assert info.script_pubkey == script
        stamp = chain.header_at(info.height)["timestamp"]
        assert values[maker] == B.calculate_timelocked_fidelity_bond_value(sats, stamp, LOCKTIME, now)
    assert values["J5maker0"] > values["J5maker1"] > values["J5maker2"] > 0
    # a proof bound to another taker's nick counts zero
    assert electrum_node.run(B.bond_values(chain, entries, taker_nick="J5other",
                                           tip_height=chain.local_height(),
                                           header_at=chain.header_at, now=now)) == {}
