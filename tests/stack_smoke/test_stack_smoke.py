"""Smoke tests of the real regtest stack: bitcoind, ElectrumX, Electrum 4.8 wallets, ngircd."""
from __future__ import annotations

import socket
import time

import pytest

pytestmark = pytest.mark.stack


def test_electrum_payment_seen_unconfirmed_then_confirmed(bitcoind, electrum_node, make_wallet):
    """A pays B with Electrum's own coin selection, signing and broadcast; B sees it unconfirmed,
    then confirmed after one block (Electrum's SPV check); amounts to the satoshi."""
    a = make_wallet(fund=[50_000_000])
    b = make_wallet()
    assert a.get_balance() == (50_000_000, 0, 0)
    tx = electrum_node.pay(a, b.get_receiving_address(), 12_345_678)
    fee = tx.get_fee()
    assert 0 < fee < 10_000
    assert electrum_node.wait_tx(b, tx.txid(), confirmations=0) == 0
    assert b.get_balance() == (0, 12_345_678, 0)
    bitcoind.mine(1)
    assert electrum_node.wait_tx(b, tx.txid(), confirmations=1) == 1
    electrum_node.wait_tx(a, tx.txid(), confirmations=1)
    assert b.get_balance() == (12_345_678, 0, 0)
    assert a.get_balance() == (50_000_000 - 12_345_678 - fee, 0, 0)
    # bitcoind agrees on the output amount
    raw = bitcoind.rpc("getrawtransaction", tx.txid(), True)
    assert raw["confirmations"] == 1
    values = sorted(round(o["value"] * 10**8) for o in raw["vout"])
    assert values == sorted([12_345_678, 50_000_000 - 12_345_678 - fee])


def test_tampered_signature_rejected_and_error_reaches_caller(bitcoind, electrum_node, make_wallet):
    """A signed transaction with one signature byte flipped is refused by bitcoind, both through
    Electrum's broadcast (via ElectrumX) and directly over RPC; the error names the failure."""
    from electrum.interface import TxBroadcastServerReturnedError
    from electrum.transaction import Transaction

    from devstack.bitcoind import RPCError

    a = make_wallet(fund=[10_000_000])
    b = make_wallet()
    from electrum.fee_policy import FeePolicy
    from electrum.transaction import PartialTxOutput
    tx = a.make_unsigned_transaction(
        outputs=[PartialTxOutput.from_address_and_value(b.get_receiving_address(), 1_000_000)],
        fee_policy=FeePolicy("feerate:2000"))
    a.sign_transaction(tx, None)
    assert tx.is_complete()
    good = Transaction(tx.serialize())
    witness = bytearray(good.inputs()[0].witness_elements()[0])
    witness[10] ^= 0x01                        # inside the DER signature's r value
    bad_tx = Transaction(tx.serialize())
    bad_tx.inputs()[0].witness = bytes([2, len(witness)]) + bytes(witness) + \
        bytes([33]) + good.inputs()[0].witness_elements()[1]
    bad_tx.invalidate_ser_cache()
    assert bad_tx.serialize() != good.serialize()
    with pytest.raises(TxBroadcastServerReturnedError) as err:
        electrum_node.run(electrum_node.network.broadcast_transaction(bad_tx))
    assert "signature" in str(err.value).lower()      # bitcoind's script error, relayed by ElectrumX
    with pytest.raises(RPCError) as rpc_err:
        bitcoind.rpc("sendrawtransaction", bad_tx.serialize())
    assert rpc_err.value.code == -26 and "signature" in rpc_err.value.message.lower()
    # nothing was spent: the untampered transaction is still valid
    assert bitcoind.rpc("testmempoolaccept", [good.serialize()])[0]["allowed"] is True


def _irc_client(port: int, nick: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    _read_until(s, b" 001 ")
    return s


def _read_until(s: socket.socket, needle: bytes, timeout: float = 10) -> bytes:
    buf, deadline = b"", time.monotonic() + timeout
    while needle not in buf:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not received; got {buf[-500:]!r}")
        chunk = s.recv(4096)
        if not chunk:
            raise AssertionError("IRC server closed the connection")
        buf += chunk
        for line in buf.split(b"\r\n"):
            if line.startswith(b"PING "):
                s.sendall(b"PONG " + line[5:] + b"\r\n")
    return buf


def test_irc_privmsg_between_two_clients(ircd):
    """Two IRC clients join one channel on ngircd and exchange a channel PRIVMSG and a private one."""
    alice, bob = _irc_client(ircd.port, "alice1"), _irc_client(ircd.port, "bob1")
    try:
        for c in (alice, bob):
            c.sendall(b"JOIN #joinmarket-pit\r\n")
            _read_until(c, b"366 ")                    # end of NAMES: joined
        alice.sendall(b"PRIVMSG #joinmarket-pit :!orderbook\r\n")
        assert b":alice1!" in _read_until(bob, b"PRIVMSG #joinmarket-pit :!orderbook")
        bob.sendall(b"PRIVMSG alice1 :!sw0reloffer 0 27300 100000000 0 0.0002\r\n")
        got = _read_until(alice, b"PRIVMSG alice1 :!sw0reloffer 0 27300 100000000 0 0.0002")
        assert b":bob1!" in got
    finally:
        alice.close()
        bob.close()


def test_renotify_recovers_a_wallet_that_missed_a_notification(bitcoind, electrum_node, make_wallet):
    """devstack's workaround for a payment a funded wallet never saw (fund_wallets): with the
    wallet's notifications cut off, a confirmed payment stays unseen; handing the synchronizer
    the server's status of the address makes the wallet fetch and SPV-verify it."""
    from devstack.procs import StackError
    w = make_wallet()
    sync = w.adb.synchronizer
    electrum_node.run(_cut_notifications(sync))
    address = w.get_receiving_addresses()[0]
    txid = bitcoind.fund(address, 1_000_000, confirm=False)
    bitcoind.mine(1)
    with pytest.raises(StackError):
        electrum_node.wait_tx(w, txid, confirmations=1, timeout=3)
    assert electrum_node.renotify(w, address)
    assert electrum_node.wait_tx(w, txid, confirmations=1, timeout=30) == 1
    assert w.get_balance() == (1_000_000, 0, 0)


async def _cut_notifications(sync) -> None:
    sync.session.unsubscribe(sync.status_queue)
