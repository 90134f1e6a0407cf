"""chain.py against the real stack: SPV-verified transactions and UTXO lookups through Electrum's
network to ElectrumX, with the number of server queries pinned; unknown/tampered txids and
tampered merkle proofs refused; malformed input refused before any query."""
from __future__ import annotations

import threading

import pytest
from electrum.bitcoin import address_to_script

from electrum_joinmarket.chain.server import (
    BadOutpoint,
    ChainBackend,
    ChainProofError,
    ChainUnavailable,
    ElectrumChain,
    TxNotFound,
    canonical_outpoint,
    verify_merkle_proof,
)
from electrum_joinmarket.chain.utxo import UtxoInfo

pytestmark = pytest.mark.stack


def _vout_for(bitcoind, txid, address):
    raw = bitcoind.rpc("getrawtransaction", txid, True)
    for o in raw["vout"]:
        if o["scriptPubKey"].get("address") == address:
            return o["n"], raw
    raise AssertionError("address not paid")


@pytest.fixture
def funded(bitcoind, electrum_node, sync_tip):
    """A confirmed payment from bitcoind to a fresh address: (txid, vout, address, sats)."""
    address = bitcoind.rpc("getnewaddress", "", "bech32", wallet="miner")
    txid = bitcoind.fund(address, 1_234_567, confirm=True)
    sync_tip()
    n, _ = _vout_for(bitcoind, txid, address)
    return txid, n, address, 1_234_567


def test_electrum_chain_is_a_chain_backend(chain):
    assert isinstance(chain, ChainBackend)
    with pytest.raises(ChainUnavailable):
        ElectrumChain(None)


def test_confirmed_tx_merkle_proof_verified(chain, electrum_node, bitcoind, funded):
    txid, n, address, sats = funded
    vt = electrum_node.run(chain.get_verified_transaction(txid))
    info = bitcoind.rpc("getrawtransaction", txid, True)
    block = bitcoind.rpc("getblock", info["blockhash"])
    assert vt.tx.txid() == txid
    assert vt.height == block["height"] and vt.confirmations == info["confirmations"] >= 1
    assert vt.tx.outputs()[n].value == sats
    assert dict(chain.query_counts) == {"get_transaction": 1, "get_history": 1, "get_merkle": 1}
    # asked again: the transaction and its proof come from memory (the header is unchanged)
    chain.query_counts.clear()
    tx = electrum_node.run(chain.get_transaction(txid, height=block["height"]))
    assert tx.txid() == txid
    assert dict(chain.query_counts) == {}
    assert dict(chain.cache_hits) == {"get_transaction": 1, "get_merkle": 1}
    # with the height already known (e.g. from listunspent) no history lookup is needed
    fresh = ElectrumChain(electrum_node.network)
    tx = electrum_node.run(fresh.get_transaction(txid, height=block["height"]))
    assert tx.txid() == txid
    assert dict(fresh.query_counts) == {"get_transaction": 1, "get_merkle": 1}


def test_wrong_height_claim_is_refused(chain, electrum_node, funded, bitcoind):
    txid, *_ = funded
    height = bitcoind.rpc("getrawtransaction", txid, True)["confirmations"]
    real = bitcoind.rpc("getblockcount") - height + 1
    with pytest.raises(ChainProofError):
        electrum_node.run(chain.get_transaction(txid, height=real - 1))


def test_unknown_and_tampered_txid_refused(chain, electrum_node, funded):
    txid, *_ = funded
    tampered = txid[:-1] + ("0" if txid[-1] != "0" else "1")
    for bad in (tampered, "00" * 32):
        with pytest.raises(TxNotFound):
            electrum_node.run(chain.get_transaction(bad))
    assert chain.query_counts["get_transaction"] == 2 and chain.query_counts["get_merkle"] == 0


def test_tampered_merkle_proof_refused(electrum_node, funded, bitcoind, chain):
    """The real proof verifies against Electrum's verified header; every tampering fails."""
    txid, *_ = funded
    conf = bitcoind.rpc("getrawtransaction", txid, True)["confirmations"]
    height = bitcoind.rpc("getblockcount") - conf + 1
    net = electrum_node.network
    proof = electrum_node.run(net.get_merkle_for_transaction(txid, height))
    header = chain.header_at(height)
    assert header is not None and len(proof["merkle"]) >= 1      # coinbase + our tx at least
    verify_merkle_proof(txid, proof, header, height)               # genuine: passes

    flipped = dict(proof, merkle=[("0" if proof["merkle"][0][0] != "0" else "1") + proof["merkle"][0][1:]]
                   + proof["merkle"][1:])
    bad_pos = dict(proof, pos=proof["pos"] ^ 1)
    too_far = dict(proof, pos=proof["pos"] + (1 << len(proof["merkle"])))
    other_height = dict(proof, block_height=height - 1)
    cases = [
        (flipped, header, height),
        (bad_pos, header, height),
        (too_far, header, height),
        (other_height, header, height),                   # proof names another block
        (proof, chain.header_at(height - 1), height),      # header of another block
        (proof, None, height),                             # no verified header
        (dict(proof, merkle="00"), header, height),        # malformed
        (dict(proof, merkle=["zz" * 32]), header, height),
        (dict(proof, pos=-1), header, height),
        (dict(proof, merkle=proof["merkle"] * 31), header, height),   # too long
        ("not a dict", header, height),
    ]
    for p, h, ht in cases:
        with pytest.raises(ChainProofError):
            verify_merkle_proof(txid, p, h, ht)
    # a proof for a different tx in the same block does not prove ours
    with pytest.raises(ChainProofError):
        verify_merkle_proof("11" * 32, proof, header, height)


def test_get_utxo_confirmed_unspent(chain, electrum_node, bitcoind, funded):
    txid, n, address, sats = funded
    info = electrum_node.run(chain.get_utxo(f"{txid.upper()}:{n}"))
    assert isinstance(info, UtxoInfo)
    raw = bitcoind.rpc("getrawtransaction", txid, True)
    assert info.outpoint == f"{txid}:{n}"
    assert info.value == sats and info.address == address
    assert info.script_pubkey == address_to_script(address)
    assert info.unspent is True
    assert info.confirmations == raw["confirmations"] >= 1
    assert info.height == bitcoind.rpc("getblockcount") - raw["confirmations"] + 1
    assert dict(chain.query_counts) == {"get_transaction": 1, "listunspent": 1, "get_merkle": 1}


def test_get_utxo_confirmations_follow_new_blocks(chain, electrum_node, bitcoind, funded, sync_tip):
    txid, n, *_ = funded
    before = electrum_node.run(chain.get_utxo(f"{txid}:{n}")).confirmations
    bitcoind.mine(2)
    sync_tip()
    assert electrum_node.run(chain.get_utxo(f"{txid}:{n}")).confirmations == before + 2


def test_get_utxo_unconfirmed(chain, electrum_node, bitcoind, wait_utxo):
    address = bitcoind.rpc("getnewaddress", "", "bech32", wallet="miner")
    txid = bitcoind.fund(address, 777_777, confirm=False)
    n, _ = _vout_for(bitcoind, txid, address)
    # e-x indexes the mempool up to DAEMON_POLL_INTERVAL_MEMPOOL later than bitcoind returns the
    # tx: wait for what is asserted below (listed as unspent), not only for the tx to exist
    wait_utxo(chain, f"{txid}:{n}", lambda i: i is not None and i.unspent)
    info = electrum_node.run(chain.get_utxo(f"{txid}:{n}"))
    assert info.unspent and info.confirmations == 0 and info.height <= 0 and info.value == 777_777
    assert dict(chain.query_counts) == {"get_transaction": 1, "listunspent": 1}   # no proof exists
    vt = electrum_node.run(chain.get_verified_transaction(txid))
    assert vt.height <= 0 and vt.confirmations == 0
    assert chain.query_counts["get_transaction"] == 1       # remembered, not fetched again
    bitcoind.mine(1)


def test_get_utxo_spent(chain, electrum_node, bitcoind, make_wallet, sync_tip, wait_utxo):
    w = make_wallet(fund=[5_000_000])
    coin = w.get_utxos()[0]
    outpoint = coin.prevout.to_str()
    assert electrum_node.run(chain.get_utxo(outpoint)).unspent
    electrum_node.pay(w, make_wallet().get_receiving_address(), 1_000_000)
    bitcoind.mine(1)
    sync_tip()
    wait_utxo(chain, outpoint, lambda i: i is not None and not i.unspent)
    chain = ElectrumChain(electrum_node.network)          # count from an empty memory
    info = electrum_node.run(chain.get_utxo(outpoint))
    assert info.unspent is False and info.value == 5_000_000 and info.confirmations >= 2
    assert dict(chain.query_counts) == {"get_transaction": 1, "listunspent": 1, "get_history": 1}


def test_get_utxo_nonexistent(chain, electrum_node, funded):
    txid, n, *_ = funded
    assert electrum_node.run(chain.get_utxo("ab" * 32 + ":0")) is None
    assert dict(chain.query_counts) == {"get_transaction": 1}
    assert electrum_node.run(chain.get_utxo(f"{txid}:{4000}")) is None     # no such output
    assert dict(chain.query_counts) == {"get_transaction": 2}


def test_get_utxos_in_order_on_electrums_loop(chain, electrum_node, funded):
    txid, n, *_ = funded
    seen_threads = []

    async def run():
        seen_threads.append(threading.current_thread().name)
        return await chain.get_utxos([f"{txid}:{n}", "cd" * 32 + ":1", f"{txid}:{n}"])

    a, b, c = electrum_node.run(run())
    assert seen_threads == ["EventLoop"]                 # Electrum's loop thread, not ours
    assert a.outpoint == c.outpoint == f"{txid}:{n}" and b is None


def test_malformed_input_refused_before_any_query(chain, electrum_node):
    for bad in ("zz" * 32 + ":0", "ab" * 32, "ab" * 32 + ":-1", "ab" * 32 + ":01",
                "ab" * 32 + ":4294967296", "ab" * 31 + ":0", "", "ab" * 32 + ":0:00"):
        with pytest.raises(BadOutpoint):
            electrum_node.run(chain.get_utxo(bad))
        with pytest.raises(BadOutpoint):
            electrum_node.run(chain.get_utxos(["ab" * 32 + ":0", bad]))
    for bad in ("xyz", "ab" * 33, 5):
        with pytest.raises(BadOutpoint):
            electrum_node.run(chain.get_transaction(bad))
    assert sum(chain.query_counts.values()) == 0
    assert canonical_outpoint("AB" * 32 + ":7") == "ab" * 32 + ":7"


def test_each_question_asked_once(chain, electrum_node, bitcoind, sync_tip):
    """Two outputs of one transaction looked up together: one get_transaction, one proof, one
    listunspent per script; asked again later, only the unspent status is asked again."""
    a1 = bitcoind.rpc("getnewaddress", "", "bech32", wallet="miner")
    a2 = bitcoind.rpc("getnewaddress", "", "bech32", wallet="miner")
    txid = bitcoind.rpc("sendmany", "", {a1: 0.01, a2: 0.02}, wallet="miner")
    bitcoind.mine(1)
    sync_tip()
    n1, _ = _vout_for(bitcoind, txid, a1)
    n2, _ = _vout_for(bitcoind, txid, a2)
    ops = [f"{txid}:{n1}", f"{txid}:{n2}", f"{txid}:{n1}"]
    infos = electrum_node.run(chain.get_utxos(ops))
    assert [i.value for i in infos] == [1_000_000, 2_000_000, 1_000_000]
    assert all(i.unspent and i.confirmations >= 1 for i in infos)
    assert dict(chain.query_counts) == {"get_transaction": 1, "listunspent": 2, "get_merkle": 1}
    chain.query_counts.clear()
    again = electrum_node.run(chain.get_utxo(ops[1]))
    assert again == infos[1]
    assert dict(chain.query_counts) == {"listunspent": 1}


def test_script_hint_asks_tx_and_unspent_together(chain, electrum_node, funded):
    """With the right hint the transaction and the unspent list leave in one batch (one padding
    window instead of two), the proof in the next; a wrong hint costs one extra listunspent and
    changes nothing else; without a hint the three requests go one after another."""
    txid, n, address, sats = funded
    script = address_to_script(address)
    info = electrum_node.run(chain.get_utxo(f"{txid}:{n}", script_hint=script))
    assert info.value == sats and info.unspent and info.confirmations >= 1
    assert list(chain.batch_log) == [("get_transaction", "listunspent"), ("get_merkle",)]
    assert dict(chain.query_counts) == {"get_transaction": 1, "listunspent": 1, "get_merkle": 1}

    other = ElectrumChain(electrum_node.network)
    wrong = bytes([0x00, 0x14]) + bytes(20)             # p2wpkh of nobody
    info2 = electrum_node.run(other.get_utxo(f"{txid}:{n}", script_hint=wrong))
    assert info2 == info
    assert dict(other.query_counts) == {"get_transaction": 1, "listunspent": 2, "get_merkle": 1}

    plain = ElectrumChain(electrum_node.network)
    assert electrum_node.run(plain.get_utxo(f"{txid}:{n}")) == info
    assert list(plain.batch_log) == [("get_transaction",), ("listunspent",), ("get_merkle",)]


def test_requests_of_one_moment_leave_as_one_batch(chain, electrum_node, funded):
    """Lookups started together share their messages: three outpoints (one real, two unknown)
    cost one batch of transactions; answers reach the right callers."""
    txid, n, *_ = funded
    ops = [f"{txid}:{n}", "cd" * 32 + ":1", "ef" * 32 + ":0"]
    a, b, c = electrum_node.run(chain.get_utxos(ops))
    assert a.outpoint == ops[0] and b is None and c is None
    assert chain.batch_log[0] == ("get_transaction",) * 3
    assert list(chain.batch_log)[1:] == [("listunspent",), ("get_merkle",)]


def test_remembered_proof_is_reproved_after_a_reorg(chain, electrum_node, bitcoind, sync_tip):
    """A proof is reused only while the local header at its height keeps the merkle root it was
    checked against: after a reorg replaces that block, the proof is asked and checked again."""
    address = bitcoind.rpc("getnewaddress", "", "bech32", wallet="miner")
    txid = bitcoind.fund(address, 2_345_678, confirm=False)
    [block] = bitcoind.mine(1)
    sync_tip()
    n, _ = _vout_for(bitcoind, txid, address)
    height = bitcoind.rpc("getblock", block)["height"]
    first = electrum_node.run(chain.get_utxo(f"{txid}:{n}"))
    assert first.height == height and chain.query_counts["get_merkle"] == 1
    electrum_node.run(chain.get_utxo(f"{txid}:{n}"))
    assert chain.query_counts["get_merkle"] == 1 and chain.cache_hits["get_merkle"] == 1
    old_root = chain.header_at(height)["merkle_root"]

    bitcoind.rpc("invalidateblock", block)              # the tx goes back to the mempool ...
    new_blocks = bitcoind.mine(2)                       # ... and into a new block at `height`
    assert bitcoind.rpc("getblock", new_blocks[0])["height"] == height
    assert txid in bitcoind.rpc("getblock", new_blocks[0])["tx"]
    sync_tip()
    electrum_node.wait(lambda: chain.header_at(height) is not None
                       and chain.header_at(height)["merkle_root"] != old_root, 30, "reorg seen")
    after = electrum_node.run(chain.get_utxo(f"{txid}:{n}"))
    assert after.height == height and after.unspent
    assert chain.query_counts["get_merkle"] == 2         # proved again against the new header
