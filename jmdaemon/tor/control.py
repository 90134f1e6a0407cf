"""Onion services through Tor's control port (txtorcon): a maker's ephemeral v3 service and a
directory node's persistent one.

* The control connection authenticates with the cookie tor advertises (SAFECOOKIE/COOKIE) or a
  password; its failures become :class:`TorControlError` with a message saying what to set.
* The service maps virtual port 5222 to a listener on 127.0.0.1 that the caller opened.
* It is tied to our control connection (no ``Detach``): :meth:`OnionService.remove` deletes it
  (``DEL_ONION``) and closes the connection, and if the daemon dies tor drops it anyway.
* A maker's key is never written anywhere (``DiscardPK``). A directory's key persists in
  ``<hidden_service_dir>/hs_ed25519_secret_key`` in tor's own file format (so the same directory
  can be served by a tor ``HiddenServiceDir`` too), mode 0600, and is handed to tor through
  ``ADD_ONION`` (tor never needs to read our files).
"""
import base64
import logging
import os

from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint

from jmcore.constants import ONION_SERVING_PORT
from jmcore.torcheck import control_auth_message, control_port_message

log = logging.getLogger(__name__)

__all__ = ["TorControlError", "OnionService", "publish_onion", "load_or_create_key",
           "KEY_FILE"]

KEY_FILE = "hs_ed25519_secret_key"
_KEY_HEADER = b"== ed25519v1-secret: type0 ==\x00\x00\x00"


class TorControlError(Exception):
    """The onion service could not be published; ``str()`` is the message for the user."""


class OnionService:
    def __init__(self, tor, service, hostname):
        self.tor = tor
        self.service = service
        self.hostname = hostname

    @defer.inlineCallbacks
    def remove(self):
        """DEL_ONION, then close the control connection; never raises."""
        try:
            yield self.service.remove()
            log.info("onion service %s removed", self.hostname)
        except Exception as exc:
            log.info("removing onion service %s: %s", self.hostname, exc)
        try:
            transport = self.tor.protocol.transport
            if transport is not None:
                transport.loseConnection()
        except Exception:
            pass


def load_or_create_key(hs_dir):
    """The directory's ADD_ONION key blob (``ED25519-V3:…``) from ``hs_dir``, or None if there is
    none yet (the caller saves the new one with :func:`save_key`)."""
    path = os.path.join(hs_dir, KEY_FILE)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(_KEY_HEADER) or len(data) != len(_KEY_HEADER) + 64:
        raise TorControlError("%s is not a tor v3 onion key file" % path)
    return "ED25519-V3:" + base64.b64encode(data[len(_KEY_HEADER):]).decode("ascii")


def save_key(hs_dir, blob):
    os.makedirs(hs_dir, mode=0o700, exist_ok=True)
    raw = base64.b64decode(blob.split(":", 1)[1])
    path = os.path.join(hs_dir, KEY_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_KEY_HEADER + raw)


async def _connect(reactor, host, port, password):
    import txtorcon
    address = "%s:%d" % (host, port)
    try:
        return await txtorcon.connect(
            reactor, TCP4ClientEndpoint(reactor, host, port, timeout=10),
            password_function=(lambda: password) if password else None)
    except (error.ConnectionRefusedError, error.ConnectError, error.TimeoutError,
            error.DNSLookupError) as exc:
        raise TorControlError(control_port_message(address, exc.__class__.__name__)) from exc
    except RuntimeError as exc:      # txtorcon: authentication problems
        raise TorControlError(control_auth_message(address, str(exc).strip())) from exc
    except Exception as exc:
        text = str(exc).strip() or exc.__class__.__name__
        if "auth" in text.lower() or "515" in text or "password" in text.lower():
            raise TorControlError(control_auth_message(address, text)) from exc
        raise TorControlError(control_port_message(address, text)) from exc


async def publish_onion(reactor, control_host, control_port, local_host, local_port,
                        virtual_port=ONION_SERVING_PORT, password=None, hs_dir=None):
    """Publish ``<onion>:virtual_port -> local_host:local_port``; returns an
    :class:`OnionService` once the first descriptor is uploaded. ``hs_dir`` None: an ephemeral
    service whose key tor discards (a maker)."""
    import txtorcon
    tor = await _connect(reactor, control_host, control_port, password)
    key = txtorcon.DISCARD
    if hs_dir is not None:
        key = load_or_create_key(hs_dir)
    ports = [(virtual_port, "%s:%d" % (local_host, local_port))]

    def progress(percent, tag, message):
        log.debug("onion service: %s%% %s", percent, message)
    try:
        service = await tor.create_onion_service(ports, private_key=key, version=3,
                                                 progress=progress, await_all_uploads=False)
    except Exception as exc:
        try:
            tor.protocol.transport.loseConnection()
        except Exception:
            pass
        raise TorControlError("Tor refused to publish the onion service (ADD_ONION): %s"
                              % (str(exc).strip() or exc.__class__.__name__)) from exc
    if hs_dir is not None and key is None and service.private_key:
        save_key(hs_dir, service.private_key)
    return OnionService(tor, service, service.hostname)
