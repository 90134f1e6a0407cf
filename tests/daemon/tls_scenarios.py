"""TLS scenarios for tests/daemon/test_tls.py, each in a process of its own with a real reactor
and real sockets on 127.0.0.1: ``python -m tests.daemon.tls_scenarios NAME CERTDIR`` prints one
JSON line of what happened (the test asserts on it). Peers: our own TLS (jmdaemon.tls) on both
sides, the standard library's blocking ``ssl`` sockets in a thread (another TLS stack's view), and
raw TCP that speaks no TLS at all."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import ssl
import sys
import threading

from jmdaemon.tls import MAX_PENDING, client_endpoint, import_twisted, server_factory

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import_twisted()
from twisted.internet import defer, protocol, reactor  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402
from twisted.logger import globalLogPublisher  # noqa: E402

CERTDIR = sys.argv[2] if len(sys.argv) > 2 else "."
CERT, KEY = os.path.join(CERTDIR, "cert.pem"), os.path.join(CERTDIR, "key.pem")
ERRORS: list[str] = []            # anything Twisted logged as an error (an unhandled exception)


def _observe(event):
    if event.get("isError") or event.get("log_failure") is not None:
        f = event.get("log_failure")
        ERRORS.append(f.getTraceback() if f is not None else str(event.get("log_format")))


globalLogPublisher.addObserver(_observe)  # type: ignore[arg-type]


def reason_of(failure) -> str:
    return "%s: %s" % (failure.type.__name__, failure.getErrorMessage())


class Recorder(protocol.Protocol):
    """An application protocol that records what it got and how it ended."""

    def __init__(self, on_connect=None, on_data=None):
        self.buf = b""
        self.on_connect, self.on_data = on_connect, on_data
        self.lost: defer.Deferred = defer.Deferred()
        self.reason = None

    def connectionMade(self):
        if self.on_connect:
            self.on_connect(self)

    def dataReceived(self, data):
        self.buf += data
        if self.on_data:
            self.on_data(self, data)

    def connectionLost(self, reason=protocol.connectionDone):
        if self.reason is not None:
            raise AssertionError("connectionLost twice")
        self.reason = reason_of(reason)
        self.lost.callback(self.reason)


class OneFactory(protocol.Factory):
    def __init__(self, **kw):
        self.kw, self.protocols = kw, []
        self.first: defer.Deferred = defer.Deferred()

    def buildProtocol(self, addr):
        p = Recorder(**self.kw)
        self.protocols.append(p)
        if not self.first.called:
            self.first.callback(p)
        return p


def listen(app_factory, **kw):
    return reactor.listenTCP(0, server_factory(app_factory, KEY, CERT, **kw), interface="127.0.0.1")


def connect(port, app_factory, **kw):
    return client_endpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", port), **kw).connect(app_factory)


def in_thread(fn, *args):
    """Run blocking ``fn`` in a thread; Deferred firing with its result (or failure)."""
    from twisted.internet import threads
    return threads.deferToThread(fn, *args)


def stdlib_client_context():
    ctx = ssl.create_default_context(cafile=CERT)      # verifies our certificate for real
    return ctx


def recv_exactly(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(min(1 << 16, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


# ------------------------------------------------------------------------------------ scenarios

BIG = os.urandom(3 << 20)


@defer.inlineCallbacks
def ours_both_ways():
    """Our server and our client: both write before the handshake, 3 MiB each way, the client
    closes (close_notify)."""
    def server_data(p, data):
        if len(p.buf) == 5 + len(BIG):
            p.transport.write(hashlib.sha256(p.buf).digest() + BIG)

    def client_data(p, data):
        if p.buf == b"ready":
            p.transport.write(BIG)
        elif len(p.buf) == 5 + 32 + len(BIG):
            p.transport.loseConnection()
    sf = OneFactory(on_connect=lambda p: p.transport.write(b"ready"), on_data=server_data)
    port = listen(sf)
    client = yield connect(port.getHost().port, protocol.Factory.forProtocol(
        lambda: Recorder(on_connect=lambda p: p.transport.write(b"hello"), on_data=client_data)))
    server = yield sf.first
    yield defer.DeferredList([client.lost, server.lost])
    return {"server_got": hashlib.sha256(server.buf).hexdigest() ==
            hashlib.sha256(b"hello" + BIG).hexdigest(),
            "client_got": client.buf == b"ready" + hashlib.sha256(b"hello" + BIG).digest() + BIG,
            "client_reason": client.reason, "server_reason": server.reason}


@defer.inlineCallbacks
def stdlib_client():
    """Our server, the standard library's client (verifying our certificate): 1 MiB each way,
    then the client's close_notify; a second client vanishes without close_notify."""
    sf = OneFactory(on_data=lambda p, d: p.transport.write(d))         # echo
    port = listen(sf)
    payload = os.urandom(1 << 20)

    def client(clean):
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as raw:
            s = stdlib_client_context().wrap_socket(raw, server_hostname="localhost")
            s.sendall(payload)
            echoed = recv_exactly(s, len(payload))
            version = s.version()
            if clean:
                s.unwrap()
            return echoed == payload, version
    first = yield in_thread(client, True)
    server1 = sf.protocols[0]
    yield server1.lost
    second = yield in_thread(client, False)
    server2 = sf.protocols[1]
    yield server2.lost
    return {"echo_ok": first[0] and second[0], "version": first[1],
            "clean_reason": server1.reason, "unclean_reason": server2.reason}


@defer.inlineCallbacks
def stdlib_server():
    """Our client against the standard library's server: our pre-handshake write arrives, the
    server answers and sends close_notify; our application sees a clean close."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = lsock.accept()
        with ctx.wrap_socket(conn, server_side=True) as s:
            got = recv_exactly(s, 5)
            s.sendall(b"answer:" + got)
            try:
                s.unwrap()                       # close_notify, then wait for the peer's
            except OSError:
                pass
            return got
    served = in_thread(serve)
    client = yield connect(lsock.getsockname()[1], protocol.Factory.forProtocol(
        lambda: Recorder(on_connect=lambda p: p.transport.write(b"early"))))
    yield client.lost
    got = yield served
    lsock.close()
    return {"server_got": got.decode(), "client_got": client.buf.decode(),
            "client_reason": client.reason}


@defer.inlineCallbacks
def garbage_to_server():
    """A peer that speaks no TLS: our server's application loses the connection with a TLS
    error; the server then still serves a good client."""
    sf = OneFactory(on_data=lambda p, d: p.transport.write(d))
    port = listen(sf)

    def raw():
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n" * 50)
            return s.recv(1000)
    answer = yield in_thread(raw)
    bad = sf.protocols[0]
    yield bad.lost
    good = yield connect(port.getHost().port, protocol.Factory.forProtocol(
        lambda: Recorder(on_connect=lambda p: p.transport.write(b"ping"),
                         on_data=lambda p, d: p.transport.loseConnection())))
    yield good.lost
    return {"bad_reason": bad.reason, "answered_bytes": len(answer), "good_got": good.buf.decode(),
            "good_reason": good.reason}


@defer.inlineCallbacks
def garbage_from_server():
    """Our client against a server that answers garbage: a TLS error, no crash."""
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = lsock.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b":irc.example NOTICE * :*** Looking up your hostname\r\n" * 20)
            conn.recv(4096)
    served = in_thread(serve)
    client = yield connect(lsock.getsockname()[1], protocol.Factory.forProtocol(Recorder))
    yield client.lost
    yield served
    lsock.close()
    return {"client_reason": client.reason, "client_got": len(client.buf)}


@defer.inlineCallbacks
def garbage_after_handshake():
    """A peer that finishes the handshake, then writes plain bytes into the TLS stream."""
    sf = OneFactory(on_data=lambda p, d: p.transport.write(d))
    port = listen(sf)

    def client():
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as raw:
            s = stdlib_client_context().wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"hi")
            echoed = recv_exactly(s, 2)
            os.write(s.fileno(), b"\x17\x03\x03\x00\x10" + b"not a record....")
            try:
                rest = s.recv(100)
            except (ssl.SSLError, OSError) as exc:
                rest = exc.__class__.__name__.encode()
            return echoed, rest
    echoed, rest = yield in_thread(client)
    server = sf.protocols[0]
    yield server.lost
    return {"echoed": echoed.decode(), "server_got": server.buf.decode(),
            "server_reason": server.reason}


@defer.inlineCallbacks
def handshake_timeout():
    """A peer that connects and says nothing: the handshake times out."""
    sf = OneFactory()
    port = listen(sf, handshake_timeout=0.5)

    def silent():
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as s:
            s.settimeout(10)
            try:
                return len(s.recv(100))          # 0: we closed it
            except TimeoutError:
                return -1
    closed = in_thread(silent)
    server = yield sf.first
    yield server.lost
    n = yield closed
    return {"server_reason": server.reason, "peer_read": n}


@defer.inlineCallbacks
def closed_mid_handshake():
    """A peer that sends half a ClientHello and closes."""
    sf = OneFactory()
    port = listen(sf)

    def half():
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as s:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    yield in_thread(half)
    server = yield sf.first
    yield server.lost
    return {"server_reason": server.reason}


@defer.inlineCallbacks
def pending_bound():
    """Before the handshake (a server that never answers) an application writes more than
    MAX_PENDING: the connection ends instead of holding it all."""
    lsock = socket.create_server(("127.0.0.1", 0))
    conns = []

    def accept():
        conn, _ = lsock.accept()
        conns.append(conn)
    accepted = in_thread(accept)

    def flood(p):
        for _ in range(MAX_PENDING // 4096 + 2):
            p.transport.write(b"x" * 4096)
    client = yield connect(lsock.getsockname()[1], protocol.Factory.forProtocol(
        lambda: Recorder(on_connect=flood)))
    yield accepted
    timer = reactor.callLater(5, lambda: client.lost.called or client.lost.callback("still open"))
    yield client.lost
    if timer.active():
        timer.cancel()
    for c in conns:
        c.close()
    lsock.close()
    return {"client_reason": client.reason}


@defer.inlineCallbacks
def backpressure():
    """Our server's application registers a streaming producer; a client that does not read
    makes the TCP transport pause it (our wrapper passes the producer API through), so what
    is buffered stays bounded; when the client reads, it is resumed and everything arrives."""
    from twisted.internet.interfaces import IPushProducer
    from zope.interface import implementer
    state = {"written": 0, "paused": 0, "resumed": 0, "max_unpaused": 0, "limit_hit": False}
    LIMIT = 64 << 20
    chunk = b"y" * 65536

    @implementer(IPushProducer)
    class Producer:
        def __init__(self, transport):
            self.transport, self.paused, self.done = transport, False, False

        def pauseProducing(self):
            state["paused"] += 1
            self.paused = True

        def resumeProducing(self):
            state["resumed"] += 1
            self.paused = False
            reactor.callLater(0, self.produce)

        def stopProducing(self):
            self.done = True

        def produce(self):
            while not self.paused and not self.done:
                if state["written"] >= LIMIT:
                    state["limit_hit"] = True
                    self.done = True
                    self.transport.unregisterProducer()
                    self.transport.loseConnection()
                    return
                self.transport.write(chunk)
                state["written"] += len(chunk)
            if self.paused and not state["paused_at"]:
                state["paused_at"] = state["written"]

    state["paused_at"] = 0

    def start(p):
        prod = Producer(p.transport)
        p.transport.registerProducer(prod, True)
        reactor.callLater(0, prod.produce)
    sf = OneFactory(on_data=lambda p, d: start(p))
    port = listen(sf)

    def client():
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as raw:
            s = stdlib_client_context().wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"go")
            import time
            time.sleep(1.5)                      # not reading: the server must pause
            total = 0
            s.settimeout(10)
            while total < 8 << 20:
                data = s.recv(1 << 16)
                if not data:
                    break
                total += len(data)
            return total
    got = yield in_thread(client)
    return {"paused_at": state["paused_at"], "paused": state["paused"],
            "resumed": state["resumed"], "client_read": got, "limit_hit": state["limit_hit"]}


SCENARIOS = {f.__name__: f for f in (ours_both_ways, stdlib_client, stdlib_server,
                                     garbage_to_server, garbage_from_server,
                                     garbage_after_handshake, handshake_timeout,
                                     closed_mid_handshake, pending_bound, backpressure)}


def main():
    result = {}

    def done(value):
        result.update(value if isinstance(value, dict) else {"failure": str(value)})

    def failed(f):
        result["failure"] = f.getTraceback()

    def run():
        d = defer.maybeDeferred(SCENARIOS[sys.argv[1]])
        d.addCallbacks(done, failed)
        d.addBoth(lambda _: reactor.callLater(0.1, reactor.stop))
    reactor.callWhenRunning(run)
    watchdog = reactor.callLater(30, lambda: (result.setdefault("failure", "watchdog"),
                                              reactor.stop()))
    reactor.run()
    if watchdog.active():
        watchdog.cancel()
    result["errors"] = ERRORS
    result["openssl_loaded"] = "OpenSSL" in sys.modules or "cryptography" in sys.modules
    print(json.dumps(result))


if __name__ == "__main__":
    threading.current_thread().name = "main"
    main()
