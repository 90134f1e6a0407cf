"""Mutual authentication of the plugin <-> jmdaemon AMP link with a cookie file (issue 12 H5;
TESTING.md L1, L2). Documented for users in ``docs/daemon-auth.md``.

The daemon writes a fresh random **cookie** (32 bytes, 64 hex characters and a newline) to
``<datadir>/.cookie`` with mode 0600 each time it starts, like bitcoind's ``.cookie``, and removes
it when it stops. Whoever can read that file is the daemon's user. Before any JoinMarket command the
client runs two extension AMP commands (not in the reference's 50; a reference daemon answers
them with an ``UNHANDLED`` error box):

1. ``EJMLinkAuthHello(version, client_nonce)`` -> ``(accepted, version, daemon_nonce,
   daemon_proof)``: the daemon proves it knows the cookie *first*, so a client never proves
   anything to an impostor;
2. ``EJMLinkAuthProof(client_proof)`` -> ``(accepted)``: the client proves it knows the cookie.

``proof(role) = HMAC-SHA256(cookie, "jmdaemon-link-auth-v1" 0 role 0 client_nonce 0
daemon_nonce 0 server_address)`` with ``role`` ``daemon`` or ``client``. Invariants:

* a proof is useless for anything but this one connection: both nonces are fresh (32 random
  bytes each) and the two directions use different labels, so no proof can be replayed or
  reflected;
* a relay cannot forward the exchange to the real daemon: ``server_address`` is the daemon's
  listening address as each side sees the TCP connection (``ip|port``), and an impostor that a
  client reaches necessarily listens at another address than the real daemon;
* nothing here reveals the cookie: only HMAC outputs cross the wire; comparisons are
  constant-time.

Standard library only.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import secrets
from typing import Any, Optional

from .aio import wait_for
from .commands import ALL_COMMANDS, EXTENSION_COMMANDS, CommandSpec
from .errors import AMPConnectionLost, AMPRemoteError, JMCoreError

__all__ = ["AUTH_VERSION", "HELLO", "PROOF", "LINK_AUTH_COMMANDS", "LINK_COMMANDS",
           "COOKIE_NAME", "LinkAuthError", "default_datadir", "cookie_file", "write_cookie",
           "read_cookie", "remove_cookie", "new_nonce", "proof", "server_address",
           "remember_cookie", "cookie_path_for", "set_authentication", "authentication_required",
           "verify_daemon", "authenticate"]

AUTH_VERSION = 1
HELLO = "EJMLinkAuthHello"
PROOF = "EJMLinkAuthProof"
COOKIE_NAME = ".cookie"
_LABEL = b"jmdaemon-link-auth-v1"

LINK_AUTH_COMMANDS: dict[str, CommandSpec] = {n: EXTENSION_COMMANDS[n]
                                               for n in (HELLO, PROOF)}
"""The two extension commands (client -> daemon; schema in jmcore.commands)."""
LINK_COMMANDS: dict[str, CommandSpec] = ALL_COMMANDS
"""The reference's 50 commands plus our extensions: what both ends of our link speak."""


class LinkAuthError(JMCoreError):
    """The other end of the link did not authenticate. ``kind``: ``no_cookie`` (cannot read the
    cookie file), ``no_answer`` (no AMP answer at all: not an AMP peer, or it hung up),
    ``no_auth`` (an AMP peer without our authentication: a reference joinmarketd or another
    program), ``bad_proof`` (it answered but does not know the cookie), ``refused`` (the
    daemon refused our proof: the cookie we read is not its current one)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------- cookie file

def default_datadir() -> str:
    """The daemon's default data dir: ``$JMDAEMON_DATADIR``, else ``~/.jmdaemon``."""
    return os.environ.get("JMDAEMON_DATADIR") or os.path.expanduser("~/.jmdaemon")


def cookie_file(datadir: Optional[str] = None) -> str:
    return os.path.join(os.path.abspath(datadir or default_datadir()), COOKIE_NAME)


def write_cookie(datadir: str) -> tuple[str, bytes]:
    """Create the data dir (0700 if new) and a fresh cookie file in it, mode 0600, replaced
    atomically. Returns (path, cookie bytes). Raises OSError."""
    os.makedirs(datadir, mode=0o700, exist_ok=True)
    path = cookie_file(datadir)
    cookie = secrets.token_bytes(32)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, cookie.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path, cookie


def read_cookie(path: str) -> bytes:
    """The cookie in ``path``; LinkAuthError(no_cookie) with what to do if it is unusable.
    Invariant: a cookie file that is not ours alone (another owner, or group/other permission
    bits — as the daemon never writes it) is refused: whoever could write it could make us trust
    their program."""
    try:
        with open(path, "rb") as f:
            if hasattr(os, "getuid"):
                st = os.fstat(f.fileno())
                if st.st_uid != os.getuid() or st.st_mode & 0o077:
                    raise LinkAuthError("no_cookie", f"the cookie file {path} is not private to "
                                        f"you (owner uid {st.st_uid}, mode "
                                        f"{st.st_mode & 0o777:o}); not trusting it")
            text = f.read(200).decode("ascii").strip()
        cookie = bytes.fromhex(text)
    except FileNotFoundError:
        raise LinkAuthError("no_cookie", f"no cookie file {path}: is jmdaemon running with "
                            f"this data directory? (set the daemon data dir to the one it uses)"
                            ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LinkAuthError("no_cookie", f"cannot read the cookie file {path}: {exc}") from exc
    if len(cookie) != 32:
        raise LinkAuthError("no_cookie", f"the cookie file {path} is not a jmdaemon cookie")
    return cookie


def remove_cookie(path: str, cookie: bytes) -> None:
    """Remove the cookie file if it still holds ``cookie`` (another daemon may have replaced it)."""
    try:
        if read_cookie(path) == cookie:
            os.unlink(path)
    except (LinkAuthError, OSError):
        pass


_known: dict[tuple[str, int], str] = {}


def remember_cookie(host: str, port: int, path: str) -> None:
    """Note where the cookie of the daemon at host:port lives (a daemon we started, or one the
    user pointed us to with its data dir)."""
    _known[(host, int(port))] = path


def cookie_path_for(host: str, port: int) -> str:
    """The cookie file for the daemon at host:port: remembered, else ``$JMDAEMON_COOKIE``, else
    the default data dir's."""
    return _known.get((host, int(port))) or os.environ.get("JMDAEMON_COOKIE") or cookie_file()


_unauthenticated: set[tuple[str, int]] = set()


def set_authentication(host: str, port: int, required: bool) -> None:
    """Whether the plugin's clients of the daemon at host:port authenticate the link (the
    default) or, ``required=False`` (the user turned it off, for a reference joinmarketd),
    connect without this extension."""
    if required:
        _unauthenticated.discard((host, int(port)))
    else:
        _unauthenticated.add((host, int(port)))


def authentication_required(host: str, port: int) -> bool:
    """True unless :func:`set_authentication` turned it off for host:port."""
    return (host, int(port)) not in _unauthenticated


# ---------------------------------------------------------------------------------- proofs

def new_nonce() -> str:
    return secrets.token_hex(32)


def server_address(host: Any, port: Any) -> str:
    """``ip|port`` of the daemon's end of the connection, normalised (an IPv4-mapped IPv6
    address as IPv4, IPv6 compressed)."""
    text = str(host)
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        text = ip.compressed
    except ValueError:
        pass
    return "%s|%d" % (text, int(port))


def _valid_nonce(nonce: Any) -> bool:
    if not isinstance(nonce, str) or len(nonce) != 64:
        return False
    try:
        bytes.fromhex(nonce)
    except ValueError:
        return False
    return True


def proof(cookie: bytes, role: str, client_nonce: str, daemon_nonce: str, server: str) -> str:
    """The proof of knowledge of ``cookie`` by ``role`` (``daemon`` or ``client``) for one
    connection (see the module docstring)."""
    if role not in ("daemon", "client"):
        raise ValueError("role must be daemon or client")
    msg = b"\x00".join([_LABEL, role.encode(), client_nonce.encode("ascii"),
                        daemon_nonce.encode("ascii"), server.encode("ascii")])
    return hmac.new(cookie, msg, hashlib.sha256).hexdigest()


def check_proof(cookie: bytes, role: str, client_nonce: str, daemon_nonce: str, server: str,
                given: Any) -> bool:
    if not isinstance(given, str) or not _valid_nonce(client_nonce) \
            or not _valid_nonce(daemon_nonce):
        return False
    want = proof(cookie, role, client_nonce, daemon_nonce, server)
    return hmac.compare_digest(want.encode(), given.encode("utf-8", "replace"))


# ---------------------------------------------------------------------------------- client side

def _server_of(proto: Any) -> str:
    peer = proto.transport.get_extra_info("peername") if proto.transport is not None else None
    if not peer:
        raise LinkAuthError("no_auth", "the connection has no peer address")
    return server_address(peer[0], peer[1])


async def verify_daemon(proto: Any, cookie: bytes, timeout: float = 10.0) -> tuple[str, str, str]:
    """Step 1 on a connected ``jmcore.amp.AMPProtocol`` (made with ``LINK_COMMANDS``): the daemon
    must prove it knows ``cookie``. Returns (client_nonce, daemon_nonce, server) for step 2;
    raises LinkAuthError saying why not."""
    server = _server_of(proto)
    client_nonce = new_nonce()
    try:
        answer = await wait_for(
            proto.call_remote(HELLO, version=AUTH_VERSION, client_nonce=client_nonce), timeout)
    except AMPRemoteError as exc:
        if exc.code == "UNHANDLED":
            raise LinkAuthError("no_auth", "it speaks AMP but not jmdaemon's link "
                                "authentication (a reference joinmarketd, or another program); "
                                "to use a reference joinmarketd anyway, turn off "
                                "plugins.joinmarket.daemon_authentication (docs/daemon-auth.md)"
                                ) from exc
        raise LinkAuthError("no_auth", f"it answered the authentication with an error: "
                            f"{exc.code} {str(exc)[:100]}") from exc
    except asyncio.TimeoutError:
        raise LinkAuthError("no_answer", f"no answer to the authentication within "
                            f"{timeout:.0f}s") from None
    except AMPConnectionLost as exc:
        raise LinkAuthError("no_answer", f"it closed the connection ({exc})") from exc
    except JMCoreError as exc:
        raise LinkAuthError("no_auth", f"the authentication exchange failed: {exc}") from exc
    daemon_nonce = answer.get("daemon_nonce")
    if not answer.get("accepted") or not check_proof(cookie, "daemon", client_nonce,
                                                     daemon_nonce, server,
                                                     answer.get("daemon_proof")):
        raise LinkAuthError("bad_proof", "it could not prove it knows the cookie of your "
                            "jmdaemon (another program, another user's daemon, or a daemon "
                            "using another data directory)")
    return client_nonce, daemon_nonce, server


async def authenticate(proto: Any, cookie: bytes, timeout: float = 10.0) -> None:
    """Both steps: the daemon proves itself, then we do. Raises LinkAuthError."""
    client_nonce, daemon_nonce, server = await verify_daemon(proto, cookie, timeout)
    mine = proof(cookie, "client", client_nonce, daemon_nonce, server)
    try:
        answer = await wait_for(proto.call_remote(PROOF, client_proof=mine), timeout)
    except (asyncio.TimeoutError, JMCoreError) as exc:
        raise LinkAuthError("refused", f"the daemon did not accept our proof: {exc!r}") from exc
    if not answer.get("accepted"):
        raise LinkAuthError("refused", "the daemon refused our proof of the cookie")
