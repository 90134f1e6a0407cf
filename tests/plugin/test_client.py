"""The plugin's daemon client: signing only the protocol's layout, verifying incoming private
messages (M13: the key must derive the sender's nick; Ref's lower-case hostid variant)."""
from __future__ import annotations

import asyncio

from electrum_joinmarket.link.client import DaemonClient, verify_privmsg
from electrum_joinmarket.protocol.nick import NickKey

HOSTID = "onion-network"


def test_verify_privmsg_accepts_good_and_lowercase_hostid_rejects_m13():
    key, other = NickKey(), NickKey()
    body = "!fill 0 5000000 " + "ab" * 32 + " P" + "cd" * 32
    sig = key.sign(body, HOSTID)
    assert verify_privmsg(body + HOSTID, sig, key.pubkey_hex, key.nick, 10, 14, HOSTID)
    upper = "IRC-Net"
    sig_lower = key.sign(body, upper.lower())          # some servers lower-case NETWORK=
    assert verify_privmsg(body + upper, sig_lower, key.pubkey_hex, key.nick, 10, 14, upper)
    # M13: a valid signature by a key that does not derive the sender's nick
    assert not verify_privmsg(body + HOSTID, sig, key.pubkey_hex, other.nick, 10, 14, HOSTID)
    # signed for another channel (hostid stops cross-channel replay)
    assert not verify_privmsg(body + "hackint", sig, key.pubkey_hex, key.nick, 10, 14, "hackint")
    # garbage never raises
    assert not verify_privmsg(body, "%%%", "zz", key.nick, 10, 14, HOSTID)


def test_client_signs_only_body_plus_hostid():
    """The daemon may ask us to sign only ``msg + hostid``; anything else is refused, so a
    compromised daemon cannot use the nick key as a signing oracle."""
    calls = []

    async def main():
        client = DaemonClient(network="regtest", chan_configs=[])
        client.key = NickKey()

        async def record(name, **kw):
            calls.append((name, kw))
        client.call = record
        client._on_JMRequestMsgSig("J5xxxxxxxxxxxxxx", "fill", "body", "something else", HOSTID)
        client._on_JMRequestMsgSig("J5xxxxxxxxxxxxxx", "fill", "body", "body" + HOSTID, HOSTID)
        while client._tasks:                   # barrier: every call the client started is done
            await asyncio.gather(*list(client._tasks))
        return client
    client = asyncio.run(main())
    assert len(calls) == 1 and client.signed == 1
    name, kw = calls[0]
    assert name == "JMMsgSignature" and kw["hostid"] == HOSTID
    body, pub, sig = kw["msg_to_return"].split(" ")
    assert body == "body" and pub == client.key.pubkey_hex
    assert verify_privmsg("body" + HOSTID, sig, pub, client.key.nick, 10, 14, HOSTID)
