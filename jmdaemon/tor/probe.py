"""Is the configured SOCKS port a Tor? The same local, network-free check as
:mod:`jmcore.torcheck` (Tor's RESOLVE of ``0.0.0.0``), on the Twisted reactor."""
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint

from jmcore.socks5 import TOR_PROBE_REPLY, TOR_PROBE_REQUEST
from jmcore.torcheck import ProbeResult

__all__ = ["probe_tor_socks"]


class _Probe(protocol.Protocol):
    def __init__(self, done):
        self.done = done
        self.buf = b""

    def connectionMade(self):
        self.transport.write(TOR_PROBE_REQUEST)

    def dataReceived(self, data):
        self.buf += data
        if len(self.buf) >= len(TOR_PROBE_REPLY):
            self._finish()

    def _finish(self):
        if not self.done.called:
            if self.buf[:len(TOR_PROBE_REPLY)] == TOR_PROBE_REPLY:
                self.done.callback((ProbeResult.TOR, ""))
            else:
                self.done.callback((ProbeResult.NOT_TOR, "answered %r" % self.buf[:12]))
        self.transport.loseConnection()

    def connectionLost(self, reason=protocol.connectionDone):
        if not self.done.called:
            self.done.callback((ProbeResult.NOT_TOR, "closed the connection"))


def probe_tor_socks(reactor, host, port, timeout=5.0):
    """Deferred firing ``(ProbeResult, detail)``; never fails."""
    done = defer.Deferred()
    ep = TCP4ClientEndpoint(reactor, host, int(port), timeout=timeout)
    d = ep.connect(protocol.Factory.forProtocol(lambda: _Probe(done)))

    def failed(failure):
        if not done.called:
            done.callback((ProbeResult.CLOSED, failure.getErrorMessage()))
    d.addErrback(failed)

    def timed_out():
        if not done.called:
            done.callback((ProbeResult.TIMEOUT, "no answer within %.0fs" % timeout))
    call = reactor.callLater(timeout + 1, timed_out)

    def cancel(result):
        if call.active():
            call.cancel()
        return result
    return done.addBoth(cancel)
