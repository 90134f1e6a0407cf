"""In-process fakes for unit tests of the message layer: a recording session and channels driven
through twisted's StringTransport (no reactor needed)."""
from twisted.internet.testing import StringTransport

from jmdaemon.channels.onion import OnionMessageChannel
from jmdaemon.channels.onion_proto import OnionLineProtocol
from jmdaemon.messaging import MessageChannelCollection


class RecordingSession:
    """Stands in for JMDaemonProtocol: records everything the message layer calls."""

    def __init__(self, boxes=None):
        self.calls = []
        self.boxes = boxes or {}

    def get_crypto_box(self, nick):
        return self.boxes.get(nick)

    def __getattr__(self, name):
        if name.startswith("on_") or name.startswith("request_"):
            def rec(*args):
                self.calls.append((name, args))
            return rec
        raise AttributeError(name)

    def named(self, name):
        return [a for n, a in self.calls if n == name]


def onion_channel_with_directory(nick, network="mainnet", directory_nick="J56eK5GFGnQBECnX",
                                 session=None):
    """An onion channel handshaked with one directory over a StringTransport."""
    ch = OnionMessageChannel({"directory_nodes": "127.0.0.1:5222", "test_mode": True},
                             network=network)
    session = session or RecordingSession()
    mcc = MessageChannelCollection([ch], session)
    mcc.set_nick(nick)
    link = ch.directories["127.0.0.1:5222"]
    proto = OnionLineProtocol(ch, link)
    tr = StringTransport()
    proto.makeConnection(tr)
    from jmdaemon import wire
    proto.dataReceived(wire.encode_onion_line(795, wire.directory_handshake(
        directory_nick, ch.network, True, "motd")).encode() + b"\r\n")
    assert link.handshaked
    return ch, mcc, session, proto, tr


def sent_lines(tr):
    data = tr.value().decode()
    tr.clear()
    return [l for l in data.split("\r\n") if l]
