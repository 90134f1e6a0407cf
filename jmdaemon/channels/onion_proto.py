"""The line protocol shared by onion clients, peers and directory nodes: one JSON object per
CRLF-terminated line (docs/protocol.md §3.1). Bad lines are dropped and the connection closed, as Ref
does; over-long lines close the connection."""
import logging

from twisted.internet import protocol
from twisted.protocols.basic import LineReceiver

from jmcore import constants as C

from .. import limits, wire
from ..tcp import send_at_once

log = logging.getLogger(__name__)


class OnionLineProtocol(LineReceiver):
    delimiter = b"\r\n"
    MAX_LENGTH = limits.MAX_ONION_LINE

    def __init__(self, owner, link=None):
        self.owner = owner
        self.link = link      # owner-defined object for this connection (None until known)
        self.closed = False
        self.peer_nick = None

    def connectionMade(self):
        send_at_once(self.transport)
        self.owner.on_connection_made(self)

    def connectionLost(self, reason=protocol.connectionDone):
        self.closed = True
        self.owner.on_connection_lost(self)

    def lineReceived(self, line):
        if self.closed:
            return
        try:
            msgtype, text = wire.decode_onion_line(line)
        except (ValueError, UnicodeDecodeError) as exc:
            log.info("malformed onion line from %s dropped, closing: %s", self.describe(), exc)
            self.close()
            return
        try:
            self.owner.on_line(self, msgtype, text)
        except Exception:
            log.exception("error handling onion line type %d from %s", msgtype, self.describe())

    def lineLengthExceeded(self, line):
        log.info("over-long onion line (%d bytes) from %s; closing", len(line), self.describe())
        self.close()

    def send(self, msgtype, text):
        """Send one line; a line over ``ONION_MAX_LINE_LENGTH`` bytes is never sent (a reference peer
        would drop the connection), only logged."""
        if self.closed or self.transport is None:
            return False
        data = wire.encode_onion_line(msgtype, text).encode("utf-8")
        if len(data) + len(self.delimiter) > C.ONION_MAX_LINE_LENGTH:
            log.warning("not sending an onion line of %d bytes (type %d) to %s: over the %d-byte "
                        "limit of reference peers", len(data), msgtype, self.describe(),
                        C.ONION_MAX_LINE_LENGTH)
            return False
        self.sendLine(data)
        return True

    def close(self):
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.loseConnection()

    def describe(self):
        try:
            peer = self.transport.getPeer()
            return "%s:%s" % (peer.host, peer.port)
        except Exception:
            return "?"


class OnionLineFactory(protocol.Factory):
    def __init__(self, owner, link=None):
        self.owner = owner
        self.link = link

    def buildProtocol(self, addr):
        return OnionLineProtocol(self.owner, self.link)
