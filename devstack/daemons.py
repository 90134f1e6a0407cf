"""Test helpers for jmdaemon: daemons and directory nodes as subprocesses, and a small
JoinMarket test client on the jmcore asyncio AMP client that signs with real nick keys."""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import pathlib
import re
import select
import signal
import subprocess
import sys
import time
from typing import Any, Iterator

from jmcore import amp as jamp
from jmcore import linkauth
from jmcore.commands import COMMANDS

from .procs import StackError, require_services, wait_for, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable


class Proc:
    def __init__(self, proc, port, logpath, extra=None):
        self.proc = proc
        self.port = port
        self.logpath = logpath
        self.extra = extra or {}

    def log(self) -> str:
        try:
            return pathlib.Path(self.logpath).read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    # -- log barriers: "the daemon has processed X" is its log line saying so ----------------
    def log_mark(self) -> int:
        """The log's current size: ``wait_log(..., since=mark)`` then looks only at later lines."""
        try:
            return pathlib.Path(self.logpath).stat().st_size
        except OSError:
            return 0

    def log_lines_since(self, since: int = 0) -> list[str]:
        try:
            with open(self.logpath, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []

    def _matches(self, needle: str, since: int, count: int) -> list[str] | None:
        found = [line for line in self.log_lines_since(since) if needle in line]
        return found if len(found) >= count else None

    async def wait_log(self, needle: str, since: int = 0, count: int = 1,
                       timeout: float = 30) -> list[str]:
        """Wait until ``count`` log lines written after ``since`` contain ``needle``; return
        them. Fails if the daemon exits first."""
        def seen() -> list[str] | None:
            if not self.alive():
                raise AssertionError(f"daemon exited waiting for {needle!r}:\n{self.log()[-3000:]}")
            return self._matches(needle, since, count)
        try:
            return await wait_until(seen, timeout, f"{count} log line(s) with {needle!r}")
        except StackError as exc:
            raise AssertionError(f"{exc}\n--- log tail ---\n{self.log()[-3000:]}") from None

    def wait_log_sync(self, needle: str, since: int = 0, count: int = 1,
                      timeout: float = 30) -> list[str]:
        """:meth:`wait_log` from a plain thread."""
        return wait_for(lambda: self._matches(needle, since, count), timeout,
                        f"{count} log line(s) with {needle!r}", proc=self.proc, log=self.logpath)

    def stop(self, sig=signal.SIGTERM, timeout=10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


_STARTED: list = []


@atexit.register
def _kill_leftovers():
    """Never leave daemons behind when a test fails before stopping them."""
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()


def _spawn(args, workdir: pathlib.Path, name: str, pattern: str, timeout=20.0,
           module="jmdaemon"):
    require_services(f"jmdaemon {name!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    logpath = workdir / (name + ".log")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([PY, "-m", module] + args, stdout=subprocess.PIPE,
                            stderr=open(logpath, "ab"), stdin=subprocess.DEVNULL, cwd=str(workdir),
                            env=env, text=True)
    _STARTED.append(proc)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        m = re.search(pattern, line)
        if m:
            return proc, m, logpath
    proc.kill()
    raise RuntimeError("%s did not start: %r\n%s" % (name, line, logpath.read_text()))


def start_daemon(workdir: pathlib.Path, name="daemon", extra=()) -> Proc:
    """A jmdaemon on a free port; its cookie is remembered for clients of 127.0.0.1:<port>
    (``jmcore.linkauth.cookie_path_for``), as the plugin's DaemonLink does for daemons it knows."""
    args = ["--port", "0", "--datadir", str(workdir / name), "--loglevel", "DEBUG"] + list(extra)
    proc, m, logpath = _spawn(args, workdir, name, r"listening on [0-9.]+:(\d+)")
    port = int(m.group(1))
    cookie = linkauth.cookie_file(str(workdir / name))
    linkauth.remember_cookie("127.0.0.1", port, cookie)
    return Proc(proc, port, logpath, {"cookie": cookie, "datadir": str(workdir / name)})


def start_directory(workdir: pathlib.Path, name="directory", network="regtest", extra=()) -> Proc:
    args = ["--directory-node", "--onion-test-mode", "--directory-port", "0", "--network",
            network, "--datadir", str(workdir / name), "--loglevel", "DEBUG"] + list(extra)
    proc, m, logpath = _spawn(args, workdir, name, r"directory (\S+) at 127\.0\.0\.1:(\d+)")
    return Proc(proc, int(m.group(2)), logpath, {"nick": m.group(1)})


def start_tor_directory(workdir: pathlib.Path, control_port: int, name="directory",
                        network="regtest", extra=()) -> Proc:
    """Our directory node as a real onion service: it publishes ``<onion>:5222`` through the Tor
    client whose control port is ``control_port`` (cookie auth) and keeps its key in
    ``<workdir>/<name>/hidden_service``. ``extra["location"]`` is the onion location."""
    hs_dir = workdir / name / "hidden_service"
    args = ["--directory-node", "--directory-port", "0", "--network", network,
            "--tor-control", "127.0.0.1:%d" % control_port, "--hidden-service-dir", str(hs_dir),
            "--datadir", str(workdir / name), "--loglevel", "DEBUG"] + list(extra)
    proc, m, logpath = _spawn(args, workdir, name, r"directory (\S+) at ([a-z2-7]{56}\.onion):(\d+)",
                              timeout=90.0)
    return Proc(proc, int(m.group(3)), logpath,
                {"nick": m.group(1), "location": "%s:%s" % (m.group(2), m.group(3))})


def start_ref_directory(workdir: pathlib.Path, name="refdirectory", network="testnet") -> Proc:
    """A directory that relays any sender name, as the reference's do (devstack.refdirectory)."""
    proc, m, logpath = _spawn(["--port", "0", "--network", network], workdir, name,
                              r"refdirectory (\S+) at 127\.0\.0\.1:(\d+)",
                              module="devstack.refdirectory")
    return Proc(proc, int(m.group(2)), logpath, {"nick": m.group(1)})


def peak_rss_kb(pid: int) -> int:
    """VmHWM (peak resident set size) of a process, in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------------------------
# the test client

def nick_key(secret: bytes | None = None):
    from electrum_joinmarket.protocol.nick import NickKey
    return NickKey.from_secret(secret) if secret else NickKey()


def verify_request(msg, sig, pubkey, nick, hashlen, max_encoded):
    """What a client does on JMRequestMsgSigVerify: the daemon passes msg = body + hostid."""
    from electrum_joinmarket.protocol.nick import nick_matches_pubkey, verify_message_signature
    return (nick_matches_pubkey(nick, pubkey, hash_len=hashlen, max_encoded=max_encoded)
            and verify_message_signature(pubkey, sig, msg))


class TestClient:
    """A JoinMarket client driving one daemon connection.

    Records every daemon->client call in ``events`` (name, kwargs); signs requested messages with
    a real nick key; verifies incoming ones with real signature checks (unless
    ``verify_ok`` forces an answer); as maker answers JMAuthReceived/JMTXReceived with synthetic data.
    """
    __test__ = False

    def __init__(self, name="client", key=None, verify_ok=None, maker_sigs=("c2lnMQ==", "c2lnMg==")):
        self.name = name
        self.key = key or nick_key()
        self.nick = self.key.nick
        self.verify_ok = verify_ok
        self.maker_sigs = list(maker_sigs)
        self.events: list[tuple[str, dict]] = []
        self.by_name: dict[str, list[dict]] = {}
        self.cond: asyncio.Condition | None = None
        self.proto: jamp.AMPProtocol | None = None
        self.tasks: set = set()
        self.sign_requests: list[dict] = []
        self.verify_requests: list[dict] = []
        self.bond_proof = None

    # -- plumbing
    def _responders(self):
        r = {}
        for name, spec in COMMANDS.items():
            if spec.direction == "daemon->client" and spec.group == "coinjoin":
                r[name] = self._make_responder(name)
        return r

    def _make_responder(self, name):
        def responder(**kwargs):
            self.events.append((name, kwargs))
            self.by_name.setdefault(name, []).append(kwargs)
            hook = getattr(self, "on_" + name, None)
            if hook is not None:
                hook(**kwargs)
            self._spawn(self._notify())
            return {"accepted": True}
        return responder

    async def _notify(self):
        async with self.cond:
            self.cond.notify_all()

    def _spawn(self, coro):
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def connect(self, port, host="127.0.0.1", authenticate=True):
        """Connect and (unless ``authenticate`` is False) prove knowledge of the daemon's cookie,
        as the plugin does."""
        self.cond = asyncio.Condition()
        self.proto = await jamp.connect(host, port, self._responders(),
                                        commands=linkauth.LINK_COMMANDS)
        if authenticate:
            cookie = linkauth.read_cookie(linkauth.cookie_path_for(host, port))
            await linkauth.authenticate(self.proto, cookie)
        return self

    async def call(self, command, **kwargs):
        return await self.proto.call_remote(command, **kwargs)

    async def wait_for(self, name, timeout=30.0, pred=None, count=1):
        def matches():
            seen = self.by_name.get(name, [])
            return seen if pred is None else [kw for kw in seen if pred(kw)]

        async def waiter():
            async with self.cond:
                await self.cond.wait_for(lambda: len(matches()) >= count)
        try:
            await asyncio.wait_for(waiter(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError("%s: no %s within %.0fs; events: %s" % (
                self.name, name, timeout, [n for n, _ in self.events][-30:])) from None
        return matches()[count - 1]

    def count(self, name):
        return len(self.by_name.get(name, []))

    def close(self):
        if self.proto is not None:
            self.proto.close()

    # -- signing / verification (the client holds the nick key)
    def on_JMRequestMsgSig(self, nick, cmd, msg, msg_to_be_signed, hostid):
        self.sign_requests.append(dict(nick=nick, cmd=cmd, msg=msg,
                                       msg_to_be_signed=msg_to_be_signed, hostid=hostid))
        sig = self.key.sign_string(msg_to_be_signed)
        to_return = msg + " " + self.key.pubkey_hex + " " + sig
        self._spawn(self.call("JMMsgSignature", nick=nick, cmd=cmd, msg_to_return=to_return,
                              hostid=hostid))

    def on_JMRequestMsgSigVerify(self, msg, fullmsg, sig, pubkey, nick, hashlen, max_encoded,
                                 hostid):
        ok = self.verify_ok if self.verify_ok is not None else verify_request(
            msg, sig, pubkey, nick, hashlen, max_encoded)
        self.verify_requests.append(dict(msg=msg, fullmsg=fullmsg, sig=sig, pubkey=pubkey,
                                         nick=nick, hashlen=hashlen, max_encoded=max_encoded,
                                         hostid=hostid, ok=ok))
        self._spawn(self.call("JMMsgSignatureVerify", verif_result=ok, nick=nick,
                              fullmsg=fullmsg, hostid=hostid))

    # -- maker behaviour (synthetic wallet data)
    def on_JMAuthReceived(self, nick, offer, commitment, revelation, amount, kphex):
        utxos = {"%064x:0" % (0xAA00 + len(self.events)): {"value": 200_000_000,
                                                           "address": "bcrt1qmakerinput"}}
        self.last_utxos = list(utxos)
        self._spawn(self.call("JMIOAuth", nick=nick, utxolist=utxos,
                              pubkey="02" + "11" * 32, cjaddr="bcrt1qmakercj",
                              changeaddr="bcrt1qmakerchange", pubkeysig="c2lnbmF0dXJl"))

    def on_JMTXReceived(self, nick, tx, offer):
        self._spawn(self.call("JMTXSigs", nick=nick, sigs=self.maker_sigs))

    def on_JMFidelityBondProofRequest(self, takernick, makernick):
        if self.bond_proof:
            self._spawn(self.call("JMFidelityBondProof", nick=takernick, proof=self.bond_proof))

    # -- sequences
    async def init(self, chan_configs, network="regtest", minmakers=1, maker_timeout_sec=20,
                   blacklist_location="cmtdata/commitmentlist"):
        n_proto, n_up = self.count("JMInitProto"), self.count("JMUp")
        r = await self.call("JMInit", bcsource="regtest", network=network,
                            chan_configs=chan_configs, minmakers=minmakers,
                            maker_timeout_sec=maker_timeout_sec, dust_threshold=27300,
                            blacklist_location=blacklist_location)
        assert r == {"accepted": True}, r
        await self.wait_for("JMInitProto", count=n_proto + 1)
        r = await self.call("JMStartMC", nick=self.nick)
        assert r == {"accepted": True}, r
        await self.wait_for("JMUp", timeout=60, count=n_up + 1)


def run(coro, timeout=240):
    async def main():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(main())


def join_once(port: int, chan_configs: list, timeout: float = 90) -> None:
    """A test client connects to the daemon on ``port``, sends JMInit with ``chan_configs`` and
    waits for JMUp (the daemon joined its channels), then disconnects."""
    async def main() -> None:
        c = await TestClient("c").connect(port)
        try:
            await c.init(chan_configs)
        finally:
            c.close()
    run(main(), timeout=timeout)


@contextlib.contextmanager
def plugin_on_daemon(config: Any, workdir: pathlib.Path, name: str, channels: list,
                     **settings: Any) -> Iterator[Proc]:
    """A jmdaemon started for the plugin of an in-process Electrum (``config``): the plugin's
    settings point at it (no autostart) with ``channels``, fee limits and quick round settings
    (``settings`` overrides, by short name); all are unset and the daemon stopped afterwards."""
    daemon = start_daemon(workdir, name)
    values = {"daemon_host": "127.0.0.1", "daemon_port": daemon.port, "daemon_autostart": False,
              "channels": json.dumps(channels), "max_cj_fee_abs": 50_000,
              "max_cj_fee_rel": "0.01", "counterparties": 3, "minimum_makers": 2,
              "orderbook_wait": 4, "maker_timeout": 20, **settings}
    keys = [f"plugins.joinmarket.{k}" for k in values]
    for key, value in zip(keys, values.values(), strict=True):
        config.set_key(key, value)
    try:
        yield daemon
    finally:
        for key in keys:
            config.set_key(key, None)
        daemon.stop()
