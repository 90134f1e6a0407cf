"""TLS on demand: pyOpenSSL and cryptography (about 13 MiB of RSS and 0.3 s of imports) are loaded
only by a daemon that uses TLS — an IRC server with ``usessl``, AMP with ``--ssl-cert`` — or Tor
(txtorcon needs both).

Twisted probes for pyOpenSSL when some of its modules are first imported (twisted.internet.tcp and
twisted.internet.posixbase through the reactor, twisted.protocols.amp, twisted.internet.endpoints)
and imports all of it when it is installed, TLS used or not. :func:`import_twisted` imports those
modules once, at start, with ``OpenSSL`` hidden: ``sys.modules["OpenSSL"] = None`` makes ``import
OpenSSL`` raise ImportError, which is how they learn that pyOpenSSL is not installed. Afterwards it is
importable again, and Twisted's TLS layer (twisted.protocols.tls, twisted.internet.ssl) loads
normally on first use.

Invariants:

* In a process where :func:`import_twisted` made those first imports, the reactor's own TLS
  shortcuts (``connectSSL``, ``listenSSL``, ``SSL4ClientEndpoint``, ``wrapClientTLS``,
  ``startTLS``) are unavailable. jmdaemon makes TLS connections only through
  :func:`client_endpoint` and :func:`server_factory`, which wrap a plain TCP connection in
  ``TLSMemoryBIOFactory`` (what ``connectSSL``/``listenSSL`` do themselves) and work whether or
  not the modules were imported this way.
* Where OpenSSL or those modules were imported before (a test process, the plugin's in-process
  daemon), :func:`import_twisted` hides nothing.
"""
from __future__ import annotations

import importlib
import sys

from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

# the modules whose first import looks for pyOpenSSL and that the daemon uses
PROBING_MODULES = ("twisted.internet.reactor", "twisted.protocols.amp", "twisted.internet.endpoints")


def import_twisted() -> bool:
    """Import Twisted's reactor, AMP and endpoints without loading pyOpenSSL.

    Returns True if OpenSSL was hidden for these imports (this process had not loaded either)."""
    hide = "OpenSSL" not in sys.modules and not all(m in sys.modules for m in PROBING_MODULES)
    if hide:
        sys.modules["OpenSSL"] = None  # type: ignore[assignment]
    try:
        for name in PROBING_MODULES:
            importlib.import_module(name)
    finally:
        if hide and sys.modules.get("OpenSSL", False) is None:
            del sys.modules["OpenSSL"]
    return hide


@implementer(IStreamClientEndpoint)
class _TLSClientEndpoint:
    """TLS over another stream client endpoint (what endpoints.wrapClientTLS builds); connect()
    fires with the application protocol, as SSL4ClientEndpoint's does."""

    def __init__(self, options, wrapped):
        self._options = options
        self._wrapped = wrapped

    def connect(self, factory):
        from twisted.protocols.tls import TLSMemoryBIOFactory
        d = self._wrapped.connect(TLSMemoryBIOFactory(self._options, True, factory))
        return d.addCallback(lambda tls_protocol: tls_protocol.wrappedProtocol)


def client_options_unverified():
    """TLS client options that accept any server certificate (the reference IRC client does not
    verify IRC certificates either; the JoinMarket messages it carries are signed and, where
    private, encrypted end to end)."""
    from twisted.internet import ssl
    return ssl.CertificateOptions(verify=False)


def client_endpoint(wrapped, options=None):
    """``wrapped`` (any stream client endpoint: TCP, a SOCKS endpoint) with TLS on top;
    ``options`` default: unverified."""
    return _TLSClientEndpoint(options if options is not None else client_options_unverified(),
                              wrapped)


def server_factory(factory, key_path: str, cert_path: str):
    """``factory`` behind TLS with this key and certificate (PEM files), to listen on with
    ``listenTCP``. Raises if the files cannot be loaded or do not match."""
    from twisted.internet import ssl
    from twisted.protocols.tls import TLSMemoryBIOFactory
    return TLSMemoryBIOFactory(ssl.DefaultOpenSSLContextFactory(key_path, cert_path), False, factory)
