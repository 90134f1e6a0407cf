"""A complete taker<->maker conversation driven through two real daemons (shared by the IRC and
onion tests): !orderbook, offers, !fill, !pubkey, !auth, !ioauth, !tx, !sig, !push."""
from __future__ import annotations

import asyncio
import base64
import hashlib

from devstack.daemons import TestClient

OFFERS = [
    {"oid": 0, "ordertype": "sw0reloffer", "minsize": 27300, "maxsize": 99988888, "txfee": 0,
     "cjfee": "0.00002"},
    {"oid": 1, "ordertype": "sw0absoffer", "minsize": 27300, "maxsize": 99988888, "txfee": 0,
     "cjfee": 250},
]
COMMITMENT_HEX = hashlib.sha256(b"P2 of the taker").hexdigest()
REVELATION = ("%064x:1" % 0x0F) + "|" + "02" + "aa" * 32 + "|" + "03" + "bb" * 32 + "|" \
    + "cc" * 32 + "|" + "dd" * 32
UNSIGNED_TX = bytes(range(256)) * 3          # synthetic "raw tx": 768 bytes, chunked on IRC
SIGNED_TX = b"\x02" + bytes(range(200))


def onion_config(directory, serving=False, port=0):
    """The onion channel in test mode through our directory node, configured with Ref's keys
    (``regtest_count`` switches Ref's test mode on); ``serving`` opens the peer's own listener."""
    cfg = {"type": "onion", "directory_nodes": "127.0.0.1:%d" % directory.port,
           "regtest_count": "1, 1", "socks5_host": "localhost", "socks5_port": 9050,
           "tor_control_host": "localhost", "tor_control_port": 9051,
           "onion_serving_host": "127.0.0.1", "serving": serving, "hidden_service_dir": "",
           "welcome_timeout": 10}
    if serving:
        cfg["onion_serving_port"] = port
    return [cfg]


async def wait_book(taker: TestClient, pred, what: str, timeout=60.0):
    """Ask the daemon for its orderbook (JMRequestOffers -> JMOffers) until ``pred(book)`` holds;
    return ``(book, bonds)``. An offer a peer sent after some other input is a barrier: once it
    is in the book, the daemon has processed everything that peer sent before it."""
    import json
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        before = taker.count("JMOffers")
        assert (await taker.call("JMRequestOffers")) == {"accepted": True}
        ev = await taker.wait_for("JMOffers", count=before + 1)
        book = json.loads(ev["orderbook"])
        if pred(book):
            return book, json.loads(ev["fidelitybonds"])
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("orderbook never had %s: %s" % (what, book))
        await asyncio.sleep(0.2)


def has_offer(nick: str, oid: int):
    return lambda book: any(o["counterparty"] == nick and o["oid"] == oid for o in book)


async def wait_offers(taker: TestClient, maker_nick: str, n_offers: int, timeout=60.0):
    """The book once it holds ``n_offers`` offers of ``maker_nick``."""
    return await wait_book(
        taker, lambda book: sum(o["counterparty"] == maker_nick for o in book) >= n_offers,
        "%d offers of %s" % (n_offers, maker_nick), timeout)


async def full_conversation(taker: TestClient, maker: TestClient, chan_taker, chan_maker,
                            amount=5_000_000, hostid_check=None, bond_proof=None,
                            before_fill=None):
    """Runs the whole conversation; returns a dict of what each side saw."""
    await maker.init(chan_maker)
    maker.bond_proof = bond_proof
    assert (await maker.call("JMSetup", role="MAKER", initdata=OFFERS,
                             use_fidelity_bond=bool(bond_proof))) == {"accepted": True}
    await maker.wait_for("JMSetupDone")
    await taker.init(chan_taker)
    assert (await taker.call("JMSetup", role="TAKER", initdata=None,
                             use_fidelity_bond=False)) == {"accepted": True}
    await taker.wait_for("JMSetupDone")

    # the taker's !orderbook is answered privately (signed by the maker's client, verified by ours)
    book, bonds = await wait_offers(taker, maker.nick, len(OFFERS))
    mine = sorted((o for o in book if o["counterparty"] == maker.nick), key=lambda o: o["oid"])
    assert mine[0] == {"counterparty": maker.nick, "oid": 0, "ordertype": "sw0reloffer",
                       "minsize": 27300, "maxsize": 99988888, "txfee": 0, "cjfee": "0.00002"}
    assert mine[1]["cjfee"] == "250" and mine[1]["ordertype"] == "sw0absoffer"
    if bond_proof:
        req = await maker.wait_for("JMFidelityBondProofRequest")
        assert req == {"takernick": taker.nick, "makernick": maker.nick}
        assert bonds == [{"counterparty": maker.nick, "takernick": taker.nick, "proof": bond_proof}]

    if before_fill is not None:
        await before_fill()
    # stage 1: !fill -> !pubkey -> !auth (encrypted) -> !ioauth (encrypted)
    r = await taker.call("JMFill", amount=amount, commitment="P" + COMMITMENT_HEX,
                         revelation=REVELATION, filled_offers={maker.nick: mine[0]})
    assert r == {"accepted": True}
    auth = await maker.wait_for("JMAuthReceived")
    assert auth["nick"] == taker.nick
    assert auth["revelation"] == REVELATION            # decrypted by the maker's daemon
    assert auth["commitment"] == COMMITMENT_HEX
    assert auth["amount"] == amount
    assert auth["offer"]["oid"] == 0
    fill = await taker.wait_for("JMFillResponse")
    assert fill["success"] is True
    io = fill["ioauth_data"][maker.nick]
    assert io[0] == maker.last_utxos
    assert io[1] == "02" + "11" * 32 and io[2] == "bcrt1qmakercj" and io[3] == "bcrt1qmakerchange"
    assert io[4] == "c2lnbmF0dXJl"
    assert io[5] == auth["kphex"]                     # the maker's NaCl key, for the btc_sig check

    # stage 2: !tx (encrypted) -> !sig x2 (encrypted) -> !push
    assert (await taker.call("JMMakeTx", nick_list=[maker.nick], tx=UNSIGNED_TX)) == {"accepted": True}
    txr = await maker.wait_for("JMTXReceived")
    assert txr["tx"] == UNSIGNED_TX and txr["nick"] == taker.nick
    assert txr["offer"]["cjaddr"] == "bcrt1qmakercj"
    await taker.wait_for("JMSigReceived", count=2)
    sigs = sorted(kw["sig"] for n, kw in taker.events if n == "JMSigReceived")
    assert sigs == sorted(maker.maker_sigs)
    assert (await taker.call("JMPushTx", nick=maker.nick, tx=SIGNED_TX)) == {"accepted": True}
    pushed = await maker.wait_for("JMTXBroadcast")
    assert pushed["tx"] == SIGNED_TX

    # what crossed the AMP boundary for signing: encrypted bodies only, never the plaintext
    cmds = [r["cmd"] for r in taker.sign_requests]
    assert {"fill", "auth", "tx", "push"} <= set(cmds)
    auth_req = [r for r in taker.sign_requests if r["cmd"] == "auth"][0]
    assert REVELATION not in auth_req["msg"]
    assert auth_req["msg_to_be_signed"] == auth_req["msg"] + auth_req["hostid"]
    base64.b64decode(auth_req["msg"], validate=True)
    mcmds = [r["cmd"] for r in maker.sign_requests]
    assert {"sw0reloffer", "pubkey", "ioauth", "sig"} <= set(mcmds)
    for req in taker.verify_requests + maker.verify_requests:
        assert req["msg"].endswith(req["hostid"]) and req["hashlen"] == 10 and req["max_encoded"] == 14
        if hostid_check:
            assert req["hostid"] == hostid_check
    return {"taker_verify": taker.verify_requests, "maker_verify": maker.verify_requests}
