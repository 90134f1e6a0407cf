"""Run by test_tcp_nodelay.py in its own interpreter (a real reactor): the daemon's AMP server,
IRC channel (direct and through a SOCKS5 proxy) and onion-channel protocol each make or accept
one TCP connection to/from a plain socket of this script; then every TCP connection in the
reactor is listed with its TCP_NODELAY option, as JSON on stdout."""
import json
import socket
import sys

from jmdaemon.tls import import_twisted

import_twisted()

from twisted.internet import reactor, tcp  # noqa: E402
from twisted.internet.protocol import ServerFactory  # noqa: E402

from jmdaemon.channels.irc import IRCMessageChannel  # noqa: E402
from jmdaemon.channels.onion_proto import OnionLineProtocol  # noqa: E402
from jmdaemon.server import JMDaemonServerFactory  # noqa: E402

peer = socket.socket()
peer.bind(("127.0.0.1", 0))
peer.listen(8)
peer_port = peer.getsockname()[1]
accepted: list[socket.socket] = []


class Owner:
    def on_connection_made(self, proto):
        pass

    def on_connection_lost(self, proto):
        pass


amp = reactor.listenTCP(0, JMDaemonServerFactory(datadir=sys.argv[1]), interface="127.0.0.1")
onion_factory = ServerFactory()
onion_factory.buildProtocol = lambda addr: OnionLineProtocol(Owner())  # type: ignore[method-assign]
onion = reactor.listenTCP(0, onion_factory, interface="127.0.0.1")
clients = [socket.create_connection(("127.0.0.1", p.getHost().port))  # type: ignore[attr-defined]
           for p in (amp, onion)]
base = {"type": "irc", "channel": "joinmarket-pit", "usessl": "false", "line_rate": 0}
channels = [IRCMessageChannel(dict(base, host="127.0.0.1", port=peer_port, socks5="false"),
                              network="regtest"),
            IRCMessageChannel(dict(base, host="irc.example.org", port=6667, socks5="true",
                                   socks5_host="127.0.0.1", socks5_port=peer_port),
                              network="regtest")]
for ch in channels:
    ch.nick = "J5nodelay"
    ch.run()


def accept():
    peer.setblocking(False)
    try:
        accepted.append(peer.accept()[0])
    except BlockingIOError:
        pass
    conns = [r for r in reactor.getReaders() if isinstance(r, tcp.Connection)]
    if len(accepted) < 2 or len(conns) < 4:
        reactor.callLater(0.05, accept)
        return
    out = [{"kind": type(c).__name__, "protocol": type(c.protocol).__name__,
            "nodelay": c.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)}
           for c in conns]
    print(json.dumps(out))
    reactor.stop()


reactor.callLater(0.05, accept)
reactor.callLater(20, reactor.stop)
reactor.run()
