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


def _proof(maker: str, i: int, txid: str, vout: int, taker: str = TAKER) -> str:
    utxo_key, cert_key = _key(i), _key(100 + i)
    cert_sig = B.sign_bond_certificate(utxo_key, _pub(cert_key), EXPIRY)
    return B.create_bond_proof(cert_privkey=cert_key, cert_sig=cert_sig, cert_expiry=EXPIRY,
                               utxo_pub=_pub(utxo_key), txid=txid, vout=vout, locktime=LOCKTIME,
                               maker_nick=maker, taker_nick=taker)


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


def test_d11_one_bond_many_nicks_counts_once(chain, electrum_node, bitcoind, sync_tip):
    """D11: 20 sybil nicks present one bond (its owner holds the certificate key, so each proof
    verifies for its own nick): the bond's value is counted once in total, for the first of them
    in book order.  An honest maker's bond is unaffected, also when a nick listed before it
    claims the honest bond utxo with a script of its own key (a claim that fails the chain check
    does not use the utxo up), and a sybil whose certificate fails counts zero.  The shared bond
    is looked up on the chain once, not once per nick."""
    sybil_i, honest_i, false_i = 30, 31, 32
    sybil_sats, honest_sats = 40_000_000, 15_000_000
    coins = {}
    for i, sats in ((sybil_i, sybil_sats), (honest_i, honest_sats)):
        addr = script_to_p2wsh(B.bond_redeem_script(_pub(_key(i)), LOCKTIME))
        coins[i] = _fund(bitcoind, addr, sats)
    sybils = [f"J5sybil{k:02d}xxxxxxx" for k in range(20)]
    entries = [{"counterparty": "J5falseclaimxxxx",      # honest maker's utxo, its own utxo key
                "proof": _proof("J5falseclaimxxxx", false_i, *coins[honest_i])}]
    entries += [{"counterparty": n, "proof": _proof(n, sybil_i, *coins[sybil_i])} for n in sybils]
    entries.append({"counterparty": "J5honestxxxxxxxx",
                    "proof": _proof("J5honestxxxxxxxx", honest_i, *coins[honest_i])})
    # one more sybil, listed first, whose nick signature was made for another taker
    entries.insert(0, {"counterparty": "J5sybilbadsigxxx",
                       "proof": _proof("J5sybilbadsigxxx", sybil_i, *coins[sybil_i],
                                       taker="J5someoneelsexxx")})
    bitcoind.mine(1)
    sync_tip()
    now = time.time()
    values = electrum_node.run(B.bond_values(chain, entries, taker_nick=TAKER,
                                             tip_height=chain.local_height(),
                                             header_at=chain.header_at, now=now))

    def worth(i: int, sats: int) -> float:
        info = electrum_node.run(chain.get_utxo(f"{coins[i][0]}:{coins[i][1]}"))
        return B.calculate_timelocked_fidelity_bond_value(
            sats, chain.header_at(info.height)["timestamp"], LOCKTIME, now)
    sybil_value, honest_value = worth(sybil_i, sybil_sats), worth(honest_i, honest_sats)
    assert sybil_value > 0 and honest_value > 0
    # the sybils' bond: counted once in total, for the first sybil in book order
    assert sum(values.get(n, 0) for n in sybils + ["J5sybilbadsigxxx"]) == sybil_value
    assert values[sybils[0]] == sybil_value
    assert [n for n in sybils if n in values] == [sybils[0]]
    # the honest bond: its full value, the false claim nothing
    assert values["J5honestxxxxxxxx"] == honest_value
    assert "J5falseclaimxxxx" not in values and "J5sybilbadsigxxx" not in values
    assert sum(values.values()) == sybil_value + honest_value
    # one lookup per claimed (utxo, script): the sybils' bond, the honest bond and the false
    # claim (another script) — one batch of 2 transactions + 3 unspent lists, not 21 of each
    assert sorted(chain.batch_log[0]) == ["get_transaction"] * 2 + ["listunspent"] * 3, \
        list(chain.batch_log)
