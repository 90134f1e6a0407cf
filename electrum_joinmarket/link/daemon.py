"""Find, start and stop the jmdaemon the plugin talks to.

:meth:`DaemonLink.ensure` (a coroutine on Electrum's asyncio loop) tries, in order:

1. **a running daemon** at the configured ``host:port`` (default ``127.0.0.1:27183``), checked
   with a real AMP exchange (:func:`probe`): the daemon must prove it knows the cookie in its
   data dir (step 1 of :mod:`jmcore.linkauth`).  Something listening that does not speak AMP,
   or an AMP peer that cannot prove itself (another user's program, a reference
   ``joinmarketd``, a daemon with another data dir) is reported with the reason and never used
   (L1) — and nothing is started in its place;
2. **the installed daemon binary** (:func:`find_daemon_binary`), started with
   ``--host/--port`` (and ``--datadir`` if configured), waited for until it prints its
   ``listening on`` line *and* answers the AMP probe;
3. **the daemon in-process**, if Twisted and ``jmdaemon`` are importable (source/pip installs;
   never in official Electrum binaries): the Twisted reactor in a daemon thread.  Twisted and
   jmdaemon are imported lazily inside :func:`_start_in_process` only;
4. otherwise **unavailable**, with a detail naming what was tried.

With ``plugins.joinmarket.daemon_authentication`` off (``authentication=False``, for a reference
``joinmarketd``; docs/daemon-auth.md) step 1 accepts any AMP peer, the plugin's clients of that
address connect without authenticating (:func:`jmcore.linkauth.set_authentication`), a daemon the
link starts gets ``--allow-unauthenticated``, and the state says the link is unauthenticated
(logged as a warning).

Only a loopback ``host`` is ever *started* by the plugin; a non-loopback host is only used if a
daemon already answers there.  A daemon the link started is stopped by :meth:`DaemonLink.stop`
(SIGTERM, then SIGKILL of its process group after a grace period: a one-file binary's
Python child goes too) and, as a safety net, at interpreter exit
(``atexit``); one it found running is left alone.

**Ownership.** A started binary is recorded in
``<daemon datadir>/jmdaemon-started-by-electrum.<pid>.pid`` (its pid and process start time,
address, and the pid and start time of the Electrum that started it), removed when that Electrum
stops it.  If Electrum dies without stopping it (SIGKILL, a crash), the record stays:
the next :meth:`DaemonLink.ensure` on the same data dir finds a daemon whose recorded Electrum is
gone, stops it (it is an orphan this plugin started) and starts its own.  A daemon whose
Electrum still runs, or one started by anything else (no record, or a record that does not
match the live process — pid reuse), is never touched.

Binary lookup order (first executable file wins), documented for users:

* ``plugins.joinmarket.daemon_binary`` (Electrum config) or the ``binary=`` argument;
* ``$JMDAEMON_BINARY``;
* ``<Electrum data dir>/jmdaemon`` (e.g. ``~/.electrum/jmdaemon``, next to the ``plugins/``
  folder the zip lives in);
* ``~/.local/bin/jmdaemon``;
* ``jmdaemon`` on ``PATH`` (e.g. the console script of ``pip install electrum-joinmarket[daemon]``).

Other settings read by :meth:`DaemonLink.from_config` (Electrum config keys, all optional):
``plugins.joinmarket.daemon_host``, ``daemon_port``, ``daemon_datadir`` (the daemon's
``--datadir``; default: the daemon's own, ``~/.jmdaemon``), ``daemon_autostart`` (False: only
use a running daemon), ``daemon_in_process`` (False: never run it in-process),
``daemon_authentication`` (False: an unauthenticated link, see above).

Each outcome is a :class:`DaemonStatus` (a ``str`` enum, JSON-able) plus a human sentence in
:attr:`LinkState.text` for the GUI.  Standard library, jmcore and Electrum's logger only at module level.
"""
from __future__ import annotations

import asyncio
import atexit
import enum
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence, cast

from electrum_joinmarket.logs import get_logger
from jmcore import amp as jamp
from jmcore import linkauth
from jmcore.aio import wait_for
from jmcore.constants import DEFAULT_DAEMON_PORT
from jmcore.errors import AMPError
from jmcore.netaddr import is_loopback

__all__ = ["DaemonStatus", "LinkState", "DaemonLink", "probe", "ProbeResult",
           "find_daemon_binary", "binary_candidates", "in_process_available", "PROBE_COMMAND"]

log = get_logger(__name__)

PIDFILE = "jmdaemon-started-by-electrum.{pid}.pid"
"""Ownership record of a binary started by the link, in the daemon's data dir (one per daemon)."""
PROBE_COMMAND = linkauth.HELLO
"""The probe is the first step of the link authentication."""
LISTENING_RE = re.compile(r"listening on (\S+):(\d+)")


class DaemonStatus(str, enum.Enum):
    NOT_CHECKED = "not_checked"      # ensure() never ran
    CHECKING = "checking"            # probing / starting
    EXTERNAL = "external"            # a daemon was already running at host:port: reused
    STARTED_BINARY = "started_binary"  # we started the jmdaemon binary and it answers
    IN_PROCESS = "in_process"        # we run the daemon inside Electrum (Twisted importable)
    NOT_AMP = "not_amp"              # something listens at host:port but does not speak AMP
    NOT_AUTHENTIC = "not_authentic"  # an AMP peer there cannot prove it knows our cookie
    FAILED = "failed"                # a start was attempted and failed (see detail)
    UNAVAILABLE = "unavailable"      # no daemon running, nothing to start
    STOPPED = "stopped"              # we stopped the daemon we had started


STATUS_TEXT = {
    DaemonStatus.NOT_CHECKED: "JoinMarket daemon not checked yet",
    DaemonStatus.CHECKING: "Looking for the JoinMarket daemon…",
    DaemonStatus.EXTERNAL: "Using the JoinMarket daemon running at {addr}",
    DaemonStatus.STARTED_BINARY: "Started the JoinMarket daemon ({binary}) at {addr}",
    DaemonStatus.IN_PROCESS: "Running the JoinMarket daemon inside Electrum at {addr}",
    DaemonStatus.NOT_AMP: ("Something else is listening at {addr} (not a JoinMarket daemon): "
                           "set plugins.joinmarket.daemon_port to a free port"),
    DaemonStatus.NOT_AUTHENTIC: "Refusing the program at {addr}: {detail}",
    DaemonStatus.FAILED: "Could not start the JoinMarket daemon: {detail}",
    DaemonStatus.UNAVAILABLE: "No JoinMarket daemon: {detail}",
    DaemonStatus.STOPPED: "Stopped the JoinMarket daemon started by Electrum",
}

USABLE = frozenset({DaemonStatus.EXTERNAL, DaemonStatus.STARTED_BINARY, DaemonStatus.IN_PROCESS})


@dataclass
class LinkState:
    status: DaemonStatus = DaemonStatus.NOT_CHECKED
    host: str = "127.0.0.1"
    port: int = DEFAULT_DAEMON_PORT
    detail: str = ""
    binary: Optional[str] = None
    pid: Optional[int] = None
    started_by_us: bool = False
    authenticated: bool = True       # False: the user turned the link's authentication off
    since: float = field(default_factory=time.time)

    @property
    def usable(self) -> bool:
        return self.status in USABLE

    @property
    def text(self) -> str:
        text = STATUS_TEXT[self.status].format(addr=f"{self.host}:{self.port}",
                                               binary=self.binary or "?", detail=self.detail)
        if self.usable and not self.authenticated:
            text += (" — link NOT authenticated (plugins.joinmarket.daemon_authentication is "
                     "off)")
        return text

    def as_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        d["text"] = self.text
        d["usable"] = self.usable
        return d


# ---------------------------------------------------------------------------------------------
# probing

class ProbeResult(str, enum.Enum):
    AMP = "amp"                        # our jmdaemon: it proved it knows the cookie
    CLOSED = "closed"                  # nothing accepts connections there
    NOT_AMP = "not_amp"                # a connection, but no AMP answer
    NOT_AUTHENTIC = "not_authentic"    # an AMP peer that cannot prove it knows the cookie


async def probe_detail(host: str, port: int, timeout: float = 3.0,
                       cookie_path: Optional[str] = None,
                       authentication: bool = True) -> tuple[ProbeResult, str]:
    """One real AMP exchange with ``host:port``: the daemon's proof of the cookie (read from
    ``cookie_path``, else :func:`jmcore.linkauth.cookie_path_for`). Returns the result and, for
    NOT_AUTHENTIC, why. ``authentication=False``: any AMP answer (a reference joinmarketd's
    ``UNHANDLED`` error included) is AMP, whatever the proof."""
    path = cookie_path or linkauth.cookie_path_for(host, port)
    try:
        proto = await wait_for(jamp.connect(host, port, commands=linkauth.LINK_COMMANDS), timeout)
    except (OSError, asyncio.TimeoutError):
        return ProbeResult.CLOSED, ""
    try:
        try:
            cookie = linkauth.read_cookie(path)
        except linkauth.LinkAuthError as exc:
            cookie = None
            no_cookie = str(exc)
        try:
            # with no cookie, a daemon still shows whether it speaks our authentication at all
            await linkauth.verify_daemon(proto, cookie or bytes(32), timeout)
        except linkauth.LinkAuthError as exc:
            if exc.kind == "no_answer":
                return ProbeResult.NOT_AMP, str(exc)
            if not authentication:
                return ProbeResult.AMP, f"unauthenticated: {exc}"
            if cookie is None and exc.kind == "bad_proof":
                return ProbeResult.NOT_AUTHENTIC, no_cookie
            return ProbeResult.NOT_AUTHENTIC, str(exc)
        if cookie is None and authentication:    # pragma: no cover - a zero cookie cannot match
            return ProbeResult.NOT_AUTHENTIC, no_cookie
        return ProbeResult.AMP, "" if authentication else "unauthenticated"
    except (AMPError, OSError, asyncio.TimeoutError) as exc:
        return ProbeResult.NOT_AMP, repr(exc)
    finally:
        proto.close()


async def probe(host: str, port: int, timeout: float = 3.0,
                cookie_path: Optional[str] = None, authentication: bool = True) -> ProbeResult:
    """:func:`probe_detail` without the reason."""
    return (await probe_detail(host, port, timeout, cookie_path, authentication))[0]




# ---------------------------------------------------------------------------------------------
# binary lookup

def binary_candidates(setting: Optional[str] = None, electrum_dir: Optional[str] = None) -> list[str]:
    """Where the daemon binary is looked for, in order (see module docstring)."""
    out = []
    if setting:
        out.append(os.path.expanduser(setting))
    env = os.environ.get("JMDAEMON_BINARY")
    if env:
        out.append(os.path.expanduser(env))
    if electrum_dir:
        out.append(os.path.join(electrum_dir, "jmdaemon"))
    out.append(os.path.expanduser("~/.local/bin/jmdaemon"))
    which = shutil.which("jmdaemon")
    if which:
        out.append(which)
    return out


def binary_lookup_text(setting: Optional[str] = None, electrum_dir: Optional[str] = None) -> str:
    """Every place :func:`find_daemon_binary` looks, in order, for a message to the user."""
    env = os.environ.get("JMDAEMON_BINARY")
    places = [f"setting plugins.joinmarket.daemon_binary ({setting or 'unset'})",
              f"$JMDAEMON_BINARY ({env or 'unset'})"]
    if electrum_dir:
        places.append(os.path.join(electrum_dir, "jmdaemon"))
    places += [os.path.expanduser("~/.local/bin/jmdaemon"), "jmdaemon on PATH"]
    return ", ".join(places)


def find_daemon_binary(setting: Optional[str] = None, electrum_dir: Optional[str] = None) -> Optional[str]:
    for cand in binary_candidates(setting, electrum_dir):
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def in_process_available() -> bool:
    """True if Twisted and jmdaemon could be imported (checked without importing them)."""
    import importlib.util
    try:
        return all(importlib.util.find_spec(m) is not None
                   for m in ("twisted", "twisted.protocols.amp", "nacl", "jmdaemon"))
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# in-process daemon (lazy imports only)

class _InProcessDaemon:
    """jmdaemon's AMP server on Twisted's reactor, run in a daemon thread of this process."""

    def __init__(self, host: str, port: int, datadir: Optional[str], authentication: bool = True):
        self.host, self.requested_port, self.datadir = host, port, datadir
        self.authentication = authentication
        self.factory: Any = None
        self.listener: Any = None
        self.port: Optional[int] = None

    def start(self) -> int:
        """Blocking (call from a worker thread). Returns the port listened on."""
        from twisted.internet import (
            reactor,  # lazy: never at module level
            threads,
        )

        from jmdaemon import cli as jcli
        from jmdaemon.server import JMDaemonServerFactory

        argv = ["--host", self.host, "--port", str(self.requested_port)]
        if self.datadir:
            argv += ["--datadir", self.datadir]
        if not self.authentication:
            argv.append("--allow-unauthenticated")
        cfg = jcli.build_config(jcli._parser().parse_args(argv))
        os.makedirs(cfg.datadir, exist_ok=True)
        _ensure_reactor_thread(reactor)
        self.factory = JMDaemonServerFactory(datadir=cfg.datadir,
                                             channel_defaults=cfg.channel_defaults(),
                                             default_channels=cfg.channels,
                                             authentication=cfg.authentication)
        self.listener = threads.blockingCallFromThread(
            cast(Any, reactor), reactor.listenTCP, cfg.port, self.factory, interface=cfg.host)
        self.port = self.listener.getHost().port
        self.factory.write_cookie()
        if not is_loopback(cfg.host):
            log.warning("in-process jmdaemon listens on non-loopback %s", cfg.host)
        return self.port

    def stop(self) -> None:
        """Blocking; stops listening and drops clients (the reactor thread stays, idle)."""
        if self.listener is None:
            return
        from twisted.internet import reactor, threads

        factory, listener = self.factory, self.listener
        self.factory = self.listener = None

        def _stop():
            factory.shutdown()
            return listener.stopListening()
        if reactor.running:
            try:
                threads.blockingCallFromThread(cast(Any, reactor), _stop)
            except Exception as exc:   # pragma: no cover - best effort at shutdown
                log.warning("in-process jmdaemon: stop failed: %r", exc)


_reactor_thread: Optional[threading.Thread] = None
_reactor_lock = threading.Lock()


def _ensure_reactor_thread(reactor: Any) -> None:
    global _reactor_thread
    with _reactor_lock:
        if reactor.running or (_reactor_thread is not None and _reactor_thread.is_alive()):
            return
        started = threading.Event()
        reactor.callWhenRunning(started.set)
        _reactor_thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                                           name="jmdaemon-reactor", daemon=True)
        _reactor_thread.start()
        if not started.wait(10):
            raise RuntimeError("Twisted reactor did not start")


# ---------------------------------------------------------------------------------------------
# ownership records

def proc_start_ticks(pid: int) -> Optional[int]:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), so a
    recorded pid reused by another process is not mistaken for it; None if the process does not
    exist or is a zombie. On systems without ``/proc``: 0 if ``pid`` exists (no reuse check)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        if fields[0] == b"Z":
            return None
        return int(fields[19])
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
        return 0
    except OSError:
        return None


def _alive(pid: Any, start: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    now = proc_start_ticks(pid)
    return now is not None and (now == start or now == 0)


def read_pidfiles(directory: str) -> dict[str, dict]:
    """Every ownership record in ``directory``: {path: record}."""
    import glob
    out = {}
    for path in glob.glob(os.path.join(glob.escape(directory), PIDFILE.format(pid="*"))):
        try:
            with open(path, encoding="utf-8") as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict):
            out[path] = rec
    return out


def orphan_of(record: Optional[dict]) -> Optional[int]:
    """The pid of the daemon a record describes if it is an orphan: still running (same start
    time) while the Electrum that started it is gone; else None."""
    if not record:
        return None
    pid = record.get("pid")
    if not _alive(pid, record.get("start")):
        return None
    if _alive(record.get("owner_pid"), record.get("owner_start")):
        return None
    return pid


# ---------------------------------------------------------------------------------------------
# the link

class DaemonLink:
    """Make sure a jmdaemon answers at ``host:port``; remember whether we started it."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_DAEMON_PORT, *,
                 binary: Optional[str] = None, electrum_dir: Optional[str] = None,
                 datadir: Optional[str] = None, autostart: bool = True, in_process: bool = True,
                 extra_args: Sequence[str] = (), start_timeout: float = 30.0,
                 probe_timeout: float = 3.0, log_dir: Optional[str] = None,
                 on_change: Optional[Callable[[LinkState], None]] = None,
                 authentication: bool = True):
        self.host, self.port = host, int(port)
        self.binary_setting, self.electrum_dir, self.datadir = binary, electrum_dir, datadir
        self.settings = (host, int(port), binary, datadir, bool(autostart), bool(in_process))
        """What the user configured (a change means another link): see :meth:`settings_diff`."""
        self.autostart, self.in_process = autostart, in_process
        self.extra_args = list(extra_args)
        self.start_timeout, self.probe_timeout = start_timeout, probe_timeout
        self.log_dir = log_dir
        self.on_change = on_change
        self.authentication = authentication
        self.state = LinkState(host=host, port=self.port)
        self._proc: Optional[subprocess.Popen] = None
        self._inproc: Optional[_InProcessDaemon] = None
        self._lock: Optional[asyncio.Lock] = None
        self._atexit_registered = False
        self.orphans_stopped: list[int] = []     # pids of orphans this link stopped
        self._pidfile: Optional[str] = None

    @property
    def cookie_path(self) -> str:
        """The daemon's cookie: in the configured data dir, else where we learnt it is for this
        address, else in the daemon's default data dir."""
        if self.datadir:
            return linkauth.cookie_file(self.datadir)
        return linkauth.cookie_path_for(self.host, self.port)

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> "DaemonLink":
        """A link from Electrum's ``SimpleConfig``, read through the plugin's ConfigVars
        (:class:`electrum_joinmarket.settings.DaemonSettings`; keys in the module docstring)."""
        from electrum_joinmarket.settings import DaemonSettings
        d = DaemonSettings.from_config(config)
        return cls(d.host, d.port, binary=d.binary, electrum_dir=d.electrum_dir,
                   datadir=d.datadir, autostart=d.autostart, in_process=d.in_process,
                   authentication=d.authentication, **kwargs)

    # -- state -------------------------------------------------------------------------------
    def _set(self, status: DaemonStatus, detail: str = "", **kw: Any) -> LinkState:
        self.state = LinkState(status=status, host=self.host, port=self.port, detail=detail,
                               binary=kw.get("binary"),
                               pid=kw.get("pid"), started_by_us=kw.get("started_by_us", False),
                               authenticated=self.authentication)
        linkauth.set_authentication(self.host, self.port, self.authentication)
        if self.state.usable and not self.authentication:
            log.warning("daemon link: %s", self.state.text)
        else:
            log.info("daemon link: %s", self.state.text)
        if self.on_change is not None:
            try:
                self.on_change(self.state)
            except Exception:
                log.exception("daemon link: on_change callback failed")
        return self.state

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    SETTING_NAMES = ("daemon_host", "daemon_port", "daemon_binary", "daemon_datadir",
                     "daemon_autostart", "daemon_in_process")

    def settings_diff(self, other: "DaemonLink") -> list[tuple[str, Any, Any]]:
        """(setting name, ours, other's) for every setting that differs."""
        return [(name, a, b) for name, a, b in zip(self.SETTING_NAMES, self.settings,
                                                   other.settings, strict=True) if a != b]

    def status_dict(self) -> dict:
        """The state for ``joinmarket_status``, with where a started daemon logs and the
        orphans this link stopped."""
        d = self.state.as_dict()
        if self._proc is not None:
            d["log"] = os.path.join(self._stdio_dir(), "jmdaemon-started-by-electrum.log")
        d["orphans_stopped"] = list(self.orphans_stopped)
        return d

    @property
    def started_by_us(self) -> bool:
        return self._proc is not None or self._inproc is not None

    async def _probe(self) -> tuple[ProbeResult, str]:
        """Probe host:port with our daemon's cookie; a daemon that proves itself is remembered
        so that :class:`~.client.DaemonClient` finds the cookie for this address."""
        found, detail = await probe_detail(self.host, self.port, self.probe_timeout,
                                           self.cookie_path, self.authentication)
        if found == ProbeResult.AMP and self.authentication:
            linkauth.remember_cookie(self.host, self.port, self.cookie_path)
        return found, detail

    # -- main entry --------------------------------------------------------------------------
    async def ensure(self) -> LinkState:
        """Return a usable state (EXTERNAL / STARTED_BINARY / IN_PROCESS) or say why not."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._ensure()

    async def _ensure(self) -> LinkState:
        prev = self.state
        if prev.usable and self.started_by_us and prev.authenticated == self.authentication:
            if self._proc is not None and self._proc.poll() is not None:
                self._forget_proc()
            elif (await self._probe())[0] == ProbeResult.AMP:
                return self.state
        if not prev.usable:
            self._set(DaemonStatus.CHECKING)
        if not self.started_by_us:
            await self._stop_orphan()
        found, detail = await self._probe()
        if found == ProbeResult.AMP:
            if self.started_by_us:
                return self._set(prev.status, prev.detail, binary=prev.binary, pid=prev.pid,
                                 started_by_us=True)
            return self._set(DaemonStatus.EXTERNAL, "already running" if self.authentication
                             else f"already running; {detail}")
        if found == ProbeResult.NOT_AMP:
            return self._set(DaemonStatus.NOT_AMP, f"{self.host}:{self.port} does not answer AMP")
        if found == ProbeResult.NOT_AUTHENTIC:
            log.warning("daemon link: refusing %s:%d: %s", self.host, self.port, detail)
            return self._set(DaemonStatus.NOT_AUTHENTIC, detail)
        if not self.autostart:
            return self._set(DaemonStatus.UNAVAILABLE,
                             f"none running at {self.host}:{self.port} (autostart is off)")
        if not is_loopback(self.host):
            return self._set(DaemonStatus.UNAVAILABLE,
                             f"none running at {self.host}:{self.port}; only a daemon on this "
                             "computer (127.0.0.1) is started automatically")
        tried = []
        binary = find_daemon_binary(self.binary_setting, self.electrum_dir)
        if binary is not None:
            state = await self._start_binary(binary)
            if state.usable:
                return state
            tried.append(f"binary {binary}: {state.detail}")
        else:
            home = os.path.join(self.electrum_dir, "jmdaemon") if self.electrum_dir else \
                "~/.local/bin/jmdaemon"
            tried.append(f"no jmdaemon binary found (looked at: "
                         f"{binary_lookup_text(self.binary_setting, self.electrum_dir)}); get "
                         f"one: 'make daemon-binary' in electrum-joinmarket builds dist/jmdaemon "
                         f"(or take it from a release), put it at {home}; or run a jmdaemon "
                         f"yourself and set plugins.joinmarket.daemon_port to its port")
        if self.in_process and in_process_available():
            state = await self._start_in_process()
            if state.usable:
                return state
            tried.append(f"in-process: {state.detail}")
        elif self.in_process:
            tried.append("no in-process daemon either (Twisted/jmdaemon not installed here)")
        status = DaemonStatus.FAILED if binary is not None else DaemonStatus.UNAVAILABLE
        return self._set(status, "; ".join(tried))

    # -- the binary --------------------------------------------------------------------------
    def _stdio_dir(self) -> str:
        d = self.log_dir or self.datadir or os.path.expanduser("~/.jmdaemon")
        os.makedirs(d, exist_ok=True)
        return d

    async def _start_binary(self, binary: str) -> LinkState:
        self._set(DaemonStatus.CHECKING, f"starting {binary}", binary=binary)
        argv = [binary, "--host", self.host, "--port", str(self.port)]
        if self.datadir:
            argv += ["--datadir", self.datadir]
        if not self.authentication:
            argv.append("--allow-unauthenticated")
        argv += self.extra_args
        d = self._stdio_dir()
        out_path = os.path.join(d, "jmdaemon-started-by-electrum.out")
        err_path = os.path.join(d, "jmdaemon-started-by-electrum.log")
        try:
            with open(out_path, "wb") as out, open(err_path, "ab") as err:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        close_fds=True, start_new_session=True)
        except OSError as exc:
            return self._set(DaemonStatus.FAILED, f"cannot execute {binary}: {exc}", binary=binary)
        self._proc = proc
        self._write_pidfile(proc, binary)
        self._register_atexit()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        port: Optional[int] = None
        while loop.time() < deadline:
            rc = proc.poll()
            if rc is not None:
                self._forget_proc()
                return self._set(DaemonStatus.FAILED,
                                 f"exited with status {rc}: {_tail(err_path)}", binary=binary)
            if port is None:
                m = LISTENING_RE.search(_read(out_path))
                if m:
                    port = int(m.group(2))
                    if self.port == 0:
                        self.port = port
            if port is not None and (await self._probe())[0] == ProbeResult.AMP:
                return self._set(DaemonStatus.STARTED_BINARY, f"pid {proc.pid}", binary=binary,
                                 pid=proc.pid, started_by_us=True)
            await asyncio.sleep(0.1)
        await self._stop_proc()
        return self._set(DaemonStatus.FAILED,
                         f"no AMP answer within {self.start_timeout:.0f}s: {_tail(err_path)}",
                         binary=binary)

    def _forget_proc(self) -> None:
        self._proc = None
        self._remove_pidfile()

    # -- ownership ---------------------------------------------------------------------------
    def _pid_dir(self) -> str:
        return self.log_dir or self.datadir or os.path.expanduser("~/.jmdaemon")

    def _write_pidfile(self, proc: subprocess.Popen, binary: str) -> None:
        rec = {"pid": proc.pid, "start": proc_start_ticks(proc.pid), "binary": binary,
               "host": self.host, "port": self.port, "owner_pid": os.getpid(),
               "owner_start": proc_start_ticks(os.getpid()), "time": time.time()}
        path = os.path.join(self._stdio_dir(), PIDFILE.format(pid=proc.pid))
        try:
            with open(path + ".new", "w", encoding="utf-8") as f:
                json.dump(rec, f)
            os.replace(path + ".new", path)
        except OSError as exc:
            log.warning("daemon link: cannot record the daemon we started in %s: %s", path, exc)
        self._pidfile = path

    def _remove_pidfile(self) -> None:
        path, self._pidfile = self._pidfile, None
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass

    async def _stop_orphan(self, grace: float = 10.0) -> list[int]:
        """Stop every daemon this plugin started for an Electrum that is gone (module docstring);
        returns their pids."""
        stopped = []
        for path, rec in read_pidfiles(self._pid_dir()).items():
            pid = orphan_of(rec)
            if pid is None:
                if not _alive(rec.get("pid"), rec.get("start")):
                    _unlink(path)                 # the daemon is gone too: a stale record
                continue
            log.warning("daemon link: stopping jmdaemon pid %d (%s:%s), left running by Electrum "
                        "pid %s that is gone", pid, rec.get("host"), rec.get("port"),
                        rec.get("owner_pid"))
            try:
                os.kill(pid, signal.SIGTERM)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + grace
                while _alive(pid, rec.get("start")) and loop.time() < deadline:
                    await asyncio.sleep(0.05)
                if _alive(pid, rec.get("start")) and os.getpgid(pid) == pid:
                    _kill_group(pid)              # a group we made (start_new_session)
                elif _alive(pid, rec.get("start")):
                    os.kill(pid, signal.SIGKILL)
            except OSError as exc:
                log.warning("daemon link: could not stop orphaned jmdaemon %d: %s", pid, exc)
                continue
            _unlink(path)
            stopped.append(pid)
        self.orphans_stopped += stopped
        return stopped

    async def _stop_proc(self, grace: float = 10.0) -> Optional[int]:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        self._remove_pidfile()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                _kill_group(proc.pid)             # not reaped yet: the pid is still ours
                await asyncio.sleep(0)
        try:
            return proc.wait(5)
        except subprocess.TimeoutExpired:   # pragma: no cover
            return None

    # -- in-process --------------------------------------------------------------------------
    async def _start_in_process(self) -> LinkState:
        self._set(DaemonStatus.CHECKING, "starting the daemon in-process")
        daemon = _InProcessDaemon(self.host, self.port, self.datadir, self.authentication)
        loop = asyncio.get_running_loop()
        try:
            port = await loop.run_in_executor(None, daemon.start)
        except Exception as exc:
            return self._set(DaemonStatus.FAILED, f"in-process start failed: {exc!r}")
        self._inproc = daemon
        self.port = port
        self._register_atexit()
        if (await self._probe())[0] != ProbeResult.AMP:
            await loop.run_in_executor(None, daemon.stop)
            self._inproc = None
            return self._set(DaemonStatus.FAILED, "in-process daemon does not answer AMP")
        return self._set(DaemonStatus.IN_PROCESS, "Twisted reactor thread", started_by_us=True)

    # -- stopping ----------------------------------------------------------------------------
    async def stop(self) -> LinkState:
        """Stop the daemon *we* started (no-op for one found running)."""
        if self._proc is None and self._inproc is None:
            return self.state
        if self._proc is not None:
            rc = await self._stop_proc()
            detail = f"exit status {rc}"
        else:
            daemon, self._inproc = self._inproc, None
            assert daemon is not None                # the check above: one of the two is set
            await asyncio.get_running_loop().run_in_executor(None, daemon.stop)
            detail = "in-process daemon stopped"
        return self._set(DaemonStatus.STOPPED, detail)

    def stop_sync(self, grace: float = 10.0) -> None:
        """Blocking stop for Electrum's shutdown path and ``atexit`` (no event loop needed)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._remove_pidfile()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:   # pragma: no cover
                    pass
        daemon, self._inproc = self._inproc, None
        if daemon is not None:
            daemon.stop()
        if proc is not None or daemon is not None:
            self.state = LinkState(status=DaemonStatus.STOPPED, host=self.host, port=self.port,
                                   detail="stopped at shutdown")

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.stop_sync)
            self._atexit_registered = True



def _kill_group(pid: int) -> None:
    """SIGKILL the process group of a daemon we started. It was started as a session (and group)
    leader, so its group is it and its children: a one-file PyInstaller binary is a bootloader
    whose Python child would outlive a SIGKILL of the bootloader alone. Call it while ``pid``
    cannot have been reused (its process not yet reaped, or checked alive by start time)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:                     # the group is gone already
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _read(path: str, limit: int = 65536) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _tail(path: str, n: int = 300) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return (lines[-1] if lines else "(empty log)")[-n:]
