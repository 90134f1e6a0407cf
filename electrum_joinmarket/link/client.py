"""The plugin's side of the AMP link to a jmdaemon (asyncio, jmcore.amp).

One ``DaemonClient`` per wallet session. It owns the session's nick key (the daemon never sees a
key): it signs every outgoing private message on ``JMRequestMsgSig`` and verifies every incoming
one on ``JMRequestMsgSigVerify`` — a signature that does not verify, or a pubkey that does not
derive the sender's nick (M13), is answered ``verif_result=False`` and the daemon drops the message.
Before anything else the link is authenticated both ways with the daemon's cookie file
(:mod:`jmcore.linkauth`, docs/daemon-auth.md): the daemon proves it knows the cookie before we send
it a single JoinMarket command, and a daemon that cannot is refused with the reason (L1).
Only when the user turned authentication off (``plugins.joinmarket.daemon_authentication``, for
a reference ``joinmarketd``; applied per daemon address by
:func:`jmcore.linkauth.set_authentication`) does the client connect without it, with a warning;
``authenticated`` then stays False.

Everything else the daemon reports is handed to a role handler (taker or maker) through
``RoleHandler`` methods; a handler exception is logged and never reaches the daemon connection.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional, Protocol

from electrum_joinmarket.errors import Failure, UserError
from electrum_joinmarket.link.chanstatus import ChannelReport
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.protocol.nick import NickKey, nick_matches_pubkey, verify_message_signature
from jmcore import amp as jamp
from jmcore import linkauth
from jmcore.aio import wait_for
from jmcore.channels import ChannelConfigError, complete_configs, no_directories_message
from jmcore.commands import COMMANDS
from jmcore.constants import DUST_THRESHOLD
from jmcore.errors import AMPConnectionLost, AMPRemoteError, JMCoreError

log = get_logger(__name__)

DEFAULT_DUST = DUST_THRESHOLD
UNAUTHENTICATED_WARNING = (
    "the link to jmdaemon at {addr} is NOT authenticated (plugins.joinmarket."
    "daemon_authentication is off): whatever program answers there sees your coinjoins, and any "
    "program that can connect to it can drive it")


class DaemonError(UserError):
    """The daemon refused a command or the connection to it failed (message says which)."""

    failure = Failure.DAEMON


class RoleHandler(Protocol):
    """What a taker or maker implements; every method is optional (looked up by name)."""


class DaemonClient:
    """An AMP connection to jmdaemon for one role (TAKER or MAKER) of one wallet."""

    def __init__(self, *, network: str, chan_configs: list[dict[str, Any]],
                 minmakers: int = 1, maker_timeout_sec: int = 60,
                 dust_threshold: int = DEFAULT_DUST,
                 blacklist_location: str = "cmtdata/commitmentlist",
                 handler: Any = None, nick_key: Optional[NickKey] = None,
                 cookie_path: Optional[str] = None, authenticate: Optional[bool] = None):
        self.network = network
        try:
            # every key the reference daemon reads, whatever the caller left out
            self.chan_configs = complete_configs(chan_configs, network) if chan_configs else []
        except ChannelConfigError as exc:
            raise DaemonError(str(exc)) from None
        self.minmakers = minmakers
        self.maker_timeout_sec = maker_timeout_sec
        self.dust_threshold = dust_threshold
        self.blacklist_location = blacklist_location
        self.handler = handler
        self._preset_key = nick_key
        self.cookie_path = cookie_path
        self.authenticate = authenticate   # None: linkauth.authentication_required(host, port)
        self.authenticated = False                # True once both proofs were exchanged
        self.key: Optional[NickKey] = None
        self.proto: Optional[jamp.AMPProtocol] = None
        self.up = asyncio.Event()
        self.setup_done = asyncio.Event()
        self.closed = asyncio.Event()
        self._closing = False
        self._tasks: set[asyncio.Task] = set()
        self.signed = 0
        self.verified = 0
        self.rejected_signatures = 0
        self.status_supported: Optional[bool] = None   # None: not asked yet
        self.last_report: Optional[ChannelReport] = None

    # ------------------------------------------------------------------ connection
    @property
    def nick(self) -> Optional[str]:
        return self.key.nick if self.key else None

    @property
    def connected(self) -> bool:
        """The AMP connection is open (connected and neither closed by us nor lost)."""
        return self.proto is not None and not self.closed.is_set() and not self._closing

    async def connect(self, host: str, port: int, timeout: float = 10.0) -> None:
        """Open the AMP connection, authenticate it both ways with the daemon's cookie
        (``cookie_path``, else :func:`jmcore.linkauth.cookie_path_for`) unless authentication
        is off for this daemon (a warning is logged), and run JMInit → JMInitProto → JMStartMC;
        returns when the daemon has accepted JMInit (use ``wait_up`` for the channels)."""
        try:
            self.proto = await wait_for(
                jamp.connect(host, port, self._responders(), commands=linkauth.LINK_COMMANDS),
                timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise DaemonError(f"no JoinMarket daemon answers at {host}:{port} ({exc}); start "
                              f"jmdaemon or check the daemon host/port in the settings") from exc
        required = (self.authenticate if self.authenticate is not None
                    else linkauth.authentication_required(host, port))
        if required:
            await self._authenticate(host, port, timeout)
        else:
            log.warning(UNAUTHENTICATED_WARNING.format(addr=f"{host}:{port}"))
        self._watcher = asyncio.ensure_future(self._watch_close())     # keep a reference
        try:
            await self.init()
        except DaemonError as exc:
            if required or not isinstance(exc.__cause__, (AMPConnectionLost, ConnectionError)):
                raise
            raise DaemonError(f"{exc}: the daemon closed the connection; it probably requires "
                              f"authentication (plugins.joinmarket.daemon_authentication is off: "
                              f"turn it on, or start jmdaemon with --allow-unauthenticated)"
                              ) from exc

    async def _authenticate(self, host: str, port: int, timeout: float) -> None:
        """Both proofs (:func:`jmcore.linkauth.authenticate`), or DaemonError saying why not.
        Without a cookie file the daemon is still asked for its proof (of a zero cookie, which
        cannot match), only to tell the user whether it speaks our authentication at all."""
        assert self.proto is not None
        path = self.cookie_path or linkauth.cookie_path_for(host, port)
        no_cookie: Optional[linkauth.LinkAuthError] = None
        try:
            cookie = linkauth.read_cookie(path)
        except linkauth.LinkAuthError as exc:
            cookie, no_cookie = bytes(32), exc
        try:
            if no_cookie is not None:
                await linkauth.verify_daemon(self.proto, cookie, timeout)
                raise no_cookie                            # pragma: no cover - cannot match
            await linkauth.authenticate(self.proto, cookie, timeout)
        except linkauth.LinkAuthError as exc:
            self.proto.close()
            why = no_cookie if no_cookie is not None and exc.kind == "bad_proof" else exc
            raise DaemonError(f"refusing the program at {host}:{port}: {why}") from exc
        self.authenticated = True

    async def init(self) -> None:
        """JMInit with our complete channel configs (also between rounds: the same configs
        keep the daemon's channels). A refusal says why when the daemon can tell."""
        self.up.clear()
        if not self.chan_configs:
            raise DaemonError(no_directories_message(self.network))
        try:
            await self.call("JMInit", bcsource="electrum", network=self.network,
                            chan_configs=self.chan_configs, minmakers=self.minmakers,
                            maker_timeout_sec=self.maker_timeout_sec,
                            dust_threshold=self.dust_threshold,
                            blacklist_location=self.blacklist_location)
        except DaemonError as exc:
            report = await self.channel_status()
            if report is not None and report.error:
                raise DaemonError(f"the daemon refused JMInit: {report.error}") from exc
            raise

    async def channel_status(self) -> Optional[ChannelReport]:
        """The daemon's report on our channels (the ``EJMChannelStatus`` extension), or None
        when the daemon does not support it (a reference joinmarketd answers with an AMP error;
        we then stop asking) or the connection is gone."""
        if self.status_supported is False or self.proto is None or self.closed.is_set():
            return None
        try:
            answer = await self.proto.call_remote("EJMChannelStatus")
        except AMPRemoteError as exc:
            log.info("the daemon does not report channel status (%s); per-directory state "
                     "unavailable", exc)
            self.status_supported = False
            return None
        except (AMPConnectionLost, ConnectionError, JMCoreError):
            return None
        self.status_supported = True
        self.last_report = ChannelReport.from_json(answer.get("status"))
        return self.last_report

    async def follow_offers(self) -> bool:
        """Ask the daemon to push JMOffers whenever its orderbook changes (our ``EJMFollowOffers``
        extension) until JMFill/JMStartMC; False if it does not (a reference joinmarketd answers
        with an AMP error: the caller then polls JMRequestOffers)."""
        if self.proto is None or self.closed.is_set():
            return False
        try:
            answer = await self.proto.call_remote("EJMFollowOffers")
        except AMPRemoteError as exc:
            log.info("the daemon does not push offers (%s); polling it", exc)
            return False
        except (AMPConnectionLost, ConnectionError, JMCoreError):
            return False
        return bool(answer.get("accepted"))

    async def fill_refusals(self) -> dict[str, str]:
        """Taker, after JMFillResponse: the makers of the last JMFill that refused it with
        ``!error``, nick -> what they said (our ``EJMFillRefusals`` extension); empty when the
        daemon does not know the command (a reference joinmarketd) or gives nothing usable."""
        if self.proto is None or self.closed.is_set():
            return {}
        try:
            answer = await self.proto.call_remote("EJMFillRefusals")
        except (AMPRemoteError, AMPConnectionLost, ConnectionError, JMCoreError):
            return {}
        got = answer.get("refusals")
        if not answer.get("accepted") or not isinstance(got, dict):
            return {}
        def text(x: object, limit: int) -> str:       # remote text: printable only
            return "".join(c for c in str(x)[:limit] if c.isprintable())
        return {text(n, 64): text(r, 120) for n, r in list(got.items())[:100]}

    async def refuse(self, nick: str, reason: str) -> bool:
        """Maker: tell the taker ``nick`` we refuse its !auth/!tx (our ``EJMRefuse`` extension);
        False if the daemon does not support it or had no session with that taker."""
        if self.proto is None or self.closed.is_set():
            return False
        try:
            answer = await self.proto.call_remote("EJMRefuse", nick=nick, reason=reason)
        except (AMPRemoteError, AMPConnectionLost, ConnectionError, JMCoreError):
            return False
        return bool(answer.get("accepted"))

    async def _watch_close(self) -> None:
        if self.proto is not None:
            await self.proto.wait_closed()
        self.closed.set()
        self._dispatch("on_daemon_lost")

    async def wait_up(self, timeout: float,
                      on_report: Optional[Callable[[ChannelReport], None]] = None,
                      poll: float = 1.0) -> None:
        """Wait until the daemon's message channels are up (JMUp). Meanwhile the daemon's channel
        report (if it gives one) is polled and handed to ``on_report`` when it changes; a report
        that says the channels cannot come up (no Tor, the onion service refused, every
        directory refused) ends the wait at once with that reason."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_text = None
        while not self.up.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            report = await self.channel_status() if self.status_supported is not False else None
            if report is not None:
                text = report.summary()
                if text != last_text:
                    last_text = text
                    log.info("JoinMarket channels: %s", text)
                    if on_report is not None:
                        try:
                            on_report(report)
                        except Exception:
                            log.exception("channel report callback failed")
                fatal = report.fatal()
                if fatal:
                    raise DaemonError(fatal)
            try:
                await wait_for(self.up.wait(), min(poll, max(0.01, left)))
            except asyncio.TimeoutError:
                pass
        if self.up.is_set():
            report = await self.channel_status() if self.status_supported else None
            if report is not None and on_report is not None and report.summary() != last_text:
                try:
                    on_report(report)
                except Exception:
                    log.exception("channel report callback failed")
        else:
            report = await self.channel_status()
            detail = f": {report.summary()}" if report is not None else \
                " (check the channel settings and Tor)"
            raise DaemonError(f"the daemon's message channels did not come up within "
                              f"{timeout:.0f}s{detail}")

    async def setup(self, role: str, offers: Optional[list] = None, use_fidelity_bond: bool = False,
                    timeout: float = 30.0) -> None:
        """JMSetup for ``role``; returns on JMSetupDone."""
        self.setup_done.clear()
        await self.call("JMSetup", role=role, initdata=offers, use_fidelity_bond=use_fidelity_bond)
        try:
            await wait_for(self.setup_done.wait(), timeout)
        except asyncio.TimeoutError:
            raise DaemonError(f"the daemon did not finish JMSetup({role}) in {timeout:.0f}s") from None

    async def call(self, command: str, **kwargs: Any) -> None:
        """Call a client→daemon command; raise DaemonError unless it was accepted."""
        if self.proto is None or self.closed.is_set():
            raise DaemonError("not connected to the JoinMarket daemon")
        log.debug("-> daemon %s", command)
        try:
            answer = await self.proto.call_remote(command, **kwargs)
        except (AMPConnectionLost, ConnectionError) as exc:
            raise DaemonError(f"lost the connection to the JoinMarket daemon during {command}") from exc
        except JMCoreError as exc:
            raise DaemonError(f"the daemon answered {command} with an error: {exc}") from exc
        if not answer.get("accepted"):
            raise DaemonError(f"the daemon refused {command}")

    def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self.proto is not None:
            self.proto.close()

    # ------------------------------------------------------------------ daemon → client
    def _responders(self) -> dict[str, Callable[..., dict]]:
        responders = {}
        for name, spec in COMMANDS.items():
            if spec.direction == "daemon->client" and spec.group == "coinjoin":
                responders[name] = self._responder(name)
        return responders

    def _responder(self, name: str) -> Callable[..., dict]:
        own = getattr(self, "_on_" + name, None)

        def respond(**kwargs: Any) -> dict:
            log.debug("<- daemon %s", name)
            if own is not None:
                own(**kwargs)
            else:
                self._dispatch("on_" + name, **kwargs)
            return {"accepted": True}
        return respond

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("JoinMarket client task failed: %r", task.exception())

    def _dispatch(self, method: str, **kwargs: Any) -> None:
        """Hand a daemon event to the role handler; sync or async; never raises."""
        fn = getattr(self.handler, method, None)
        if fn is None:
            if method != "on_daemon_lost":
                log.debug("no handler for %s", method)
            return
        try:
            result = fn(**kwargs)
        except Exception:
            log.exception("handler %s failed", method)
            return
        if asyncio.iscoroutine(result):
            self._spawn(result)

    def _on_JMInitProto(self, nick_hash_length: int, nick_max_encoded: int,
                        joinmarket_nick_header: str, joinmarket_version: int) -> None:
        params: dict[str, Any] = dict(hash_len=nick_hash_length, max_encoded=nick_max_encoded,
                      header=joinmarket_nick_header, version=joinmarket_version)
        if self.key is None:
            if self._preset_key is not None:
                self.key = self._preset_key
            else:
                self.key = NickKey(**params)
        log.info("JoinMarket nick %s", self.key.nick)
        self._spawn(self.call("JMStartMC", nick=self.key.nick))

    def _on_JMUp(self) -> None:
        self.up.set()
        self._dispatch("on_JMUp")

    def _on_JMSetupDone(self) -> None:
        self.setup_done.set()
        self._dispatch("on_JMSetupDone")

    def _on_JMRequestMsgSig(self, nick: str, cmd: str, msg: str, msg_to_be_signed: str,
                            hostid: str) -> None:
        # ``nick`` is the recipient (Ref): we sign with our own nick key, and only the layout of
        # PROTOCOL §6.2 (body + hostid), so the daemon cannot use us to sign anything else.
        if self.key is None or not isinstance(msg, str) or msg_to_be_signed != msg + hostid:
            log.warning("daemon asked to sign a malformed message for %r: refused", nick)
            return
        sig = self.key.sign_string(msg_to_be_signed)
        self.signed += 1
        self._spawn(self.call("JMMsgSignature", nick=nick, cmd=cmd,
                              msg_to_return=f"{msg} {self.key.pubkey_hex} {sig}", hostid=hostid))

    def _on_JMRequestMsgSigVerify(self, msg: str, fullmsg: str, sig: str, pubkey: str, nick: str,
                                  hashlen: int, max_encoded: int, hostid: str) -> None:
        ok = verify_privmsg(msg, sig, pubkey, nick, hashlen, max_encoded, hostid)
        if ok:
            self.verified += 1
        else:
            self.rejected_signatures += 1
            log.info("dropped a private message from %s: bad signature or nick/key mismatch", nick)
        self._spawn(self.call("JMMsgSignatureVerify", verif_result=ok, nick=nick, fullmsg=fullmsg,
                              hostid=hostid))


def verify_privmsg(msg: str, sig: str, pubkey: str, nick: str, hashlen: int, max_encoded: int,
                   hostid: str) -> bool:
    """The client's check of an incoming private message: ``msg`` is body + hostid as the daemon
    built it. True only if ``pubkey`` derives ``nick`` and ``sig`` signs ``msg`` (or, as the
    reference accepts, body + lower-case hostid). Never raises."""
    try:
        if not nick_matches_pubkey(nick, pubkey, hash_len=hashlen, max_encoded=max_encoded):
            return False
        if verify_message_signature(pubkey, sig, msg):
            return True
        if hostid and msg.endswith(hostid) and hostid.lower() != hostid:
            return verify_message_signature(pubkey, sig, msg[: -len(hostid)] + hostid.lower())
        return False
    except Exception:
        log.debug("signature check raised", exc_info=True)
        return False
