"""A user's Electrum, driven through the real ``electrum`` command line.

:class:`UserElectrum` owns one Electrum data dir. It runs Electrum's own launcher script
(``.venv/bin/electrum``, the unmodified script of the Debian package, as ``make install`` sets it
up) through ``python -m electrum_joinmarket.loader`` — the documented launcher that registers
the plugin from this checkout before Electrum parses its command line — in subprocesses:
``electrum daemon`` in the foreground (its log in the data dir), and one client process per
command, exactly as a user types them. Nothing of Electrum is imported into the test process
for these calls: exit status, stdout and stderr are what the user sees.

Set-up and polling that a test does not assert on as the user's view (a daemon coming up, a
wallet being created, loaded, funded, a balance awaited) go through :meth:`UserElectrum.rpc`
instead: the request the ``electrum`` client sends after parsing its command line (``run_cmdline``
with the parsed options, to the daemon's JSON-RPC socket named in its lockfile), without starting
a Python process that imports all of Electrum for it (about 1 s of CPU each).

The daemon process turns off Electrum's traffic-padding hold like the rest of the lab stack
(``devstack/padding.py``); clients need no such thing (one request each).
"""
from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from devstack.electrum_config import daemon_address, ensure_rpc_credentials
from devstack.ircd import irc_config
from devstack.procs import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
ELECTRUM_SCRIPT = ROOT / ".venv" / "bin" / "electrum"
PY = sys.executable

DAEMON_BOOT = (
    "import sys\n"
    "from devstack.padding import disable_electrum_hold\n"
    "disable_electrum_hold()\n"
    "from electrum_joinmarket.loader import launch\n"
    "launch(sys.argv[1:])\n"
)


@dataclass
class Result:
    """What the user saw: exit status, stdout, stderr (text)."""
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __str__(self) -> str:
        return (f"$ electrum {' '.join(self.argv)}\n[exit {self.returncode}]\n--- stdout\n"
                f"{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}")


def _default_sigint() -> None:
    """In the client process before it starts: SIGINT as in a user's terminal. A suite started in
    the background by a shell without job control (``... &``) ignores SIGINT, every process it
    starts inherits that, and Python keeps an ignored SIGINT ignored: Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class DaemonRPCError(Exception):
    """The daemon answered a JSON-RPC request with an error."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("127.0.0.1", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class UserElectrum:
    """One Electrum data dir on regtest and the commands a user runs on it."""

    def __init__(self, datadir: pathlib.Path, server: str, *, env: Optional[dict] = None):
        self.datadir = datadir
        self.server = server
        datadir.mkdir(parents=True, exist_ok=True)
        self.home = datadir / "home"            # the user's $HOME (no ~/.local/bin/jmdaemon)
        self.home.mkdir(exist_ok=True)
        self.env = {
            "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.home), "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
            "EJM_ELECTRUM_SCRIPT": str(ELECTRUM_SCRIPT),
            "QT_QPA_PLATFORM": "offscreen",
        }
        self.env.update(env or {})
        self.daemon: Optional[subprocess.Popen] = None
        self.daemon_log = datadir / "electrum-daemon.out"

    # ---------------------------------------------------------------- the command line
    def argv(self, args: Sequence[str]) -> list[str]:
        return [PY, "-m", "electrum_joinmarket.loader", "--regtest", "-D", str(self.datadir),
                *map(str, args)]

    def run(self, *args: Any, timeout: float = 180, env: Optional[dict] = None) -> Result:
        """``electrum --regtest -D <dir> ARGS...``; waits for the client to exit."""
        r = subprocess.run(self.argv(args), capture_output=True, text=True, timeout=timeout,
                           env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL, cwd=self.datadir)
        return Result([str(a) for a in args], r.returncode, r.stdout, r.stderr)

    def run_line(self, line: str, timeout: float = 180) -> Result:
        """Run a command line exactly as a message suggested it (``electrum ...`` split like a
        shell; its own chain flag and ``-D``, nothing added)."""
        import shlex
        words = shlex.split(line)
        assert words and words[0] == "electrum", line
        r = subprocess.run([PY, "-m", "electrum_joinmarket.loader", *words[1:]], capture_output=True,
                           text=True, timeout=timeout, env=self.env, stdin=subprocess.DEVNULL,
                           cwd=self.datadir)
        return Result(words[1:], r.returncode, r.stdout, r.stderr)

    _rpc_ids = itertools.count(1)

    def rpc(self, cmd: str, *, wallet: Any = None, timeout: float = 60, **options: Any) -> Any:
        """``cmd`` on the running daemon as the ``electrum`` client would send it (Electrum's
        ``daemon.request(config, "run_cmdline", ...)``): the command's arguments and options by
        name, as the strings a command line gives. Returns the result; raises
        :class:`DaemonRPCError` on an error answer and ``ConnectionError`` when no daemon
        listens."""
        conf = self.read_config()
        lock = daemon_address(self.datadir)
        if lock is None:
            raise ConnectionError("no daemon lockfile")
        socktype, address = lock
        conn: http.client.HTTPConnection
        if socktype == "unix":
            conn = _UnixHTTPConnection(address, timeout)
        else:
            conn = http.client.HTTPConnection(address[0], address[1], timeout=timeout)
        options = {"cmd": cmd, **({"wallet_path": str(wallet)} if wallet is not None else {}),
                   **options}
        body = json.dumps({"id": next(self._rpc_ids), "jsonrpc": "2.0", "method": "run_cmdline",
                           "params": [options]})
        auth = base64.b64encode(f"{conf['rpcuser']}:{conf['rpcpassword']}".encode()).decode()
        try:
            conn.request("POST", "/", body, {"Content-Type": "application/json",
                                             "Authorization": "Basic " + auth})
            resp = conn.getresponse()
            text = resp.read().decode()
        except OSError as exc:
            raise ConnectionError(f"daemon RPC: {exc}") from exc
        finally:
            conn.close()
        if resp.status != 200:
            raise DaemonRPCError(f"HTTP {resp.status}: {text[:200]}")
        answer = json.loads(text)
        if answer.get("error"):
            raise DaemonRPCError(f"{cmd}: {answer['error'].get('message')}")
        return answer.get("result")

    def read_config(self, patience: float = 5.0) -> dict:
        """The daemon's config file. Electrum rewrites it in place (truncate, then write), so a
        read can see it empty or cut short while the daemon saves it: read again until it
        parses."""
        path = self.datadir / "regtest" / "config"
        deadline = time.monotonic() + patience
        while True:
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def ok(self, *args: Any, **kw: Any) -> Result:
        """:meth:`run` that must exit 0."""
        r = self.run(*args, **kw)
        assert r.returncode == 0, str(r)
        return r

    def start(self, *args: Any) -> "Client":
        """A client process left running (to interrupt it like a user would)."""
        out = self.datadir / f"client-{time.monotonic_ns()}.out"
        err = out.with_suffix(".err")
        proc = subprocess.Popen(self.argv(args), stdout=open(out, "w"), stderr=open(err, "w"),
                                stdin=subprocess.DEVNULL, env=self.env, cwd=self.datadir,
                                preexec_fn=_default_sigint)
        return Client([str(a) for a in args], proc, out, err)

    def setconfig(self, key: str, value: Any) -> Result:
        """``setconfig KEY VALUE`` (``--offline`` while no daemon runs); non-str values as JSON."""
        value = value if isinstance(value, str) else json.dumps(value)
        return self.ok(*([] if self.daemon else ["--offline"]), "setconfig", key, value)

    # ---------------------------------------------------------------- the daemon
    def start_daemon(self, timeout: float = 90) -> None:
        assert self.daemon is None
        ensure_rpc_credentials(self.datadir)
        log = open(self.daemon_log, "ab")
        argv = [PY, "-c", DAEMON_BOOT, "--regtest", "-D", str(self.datadir), "daemon",
                "--oneserver", "--server", self.server]
        self.daemon = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=self.env, cwd=self.datadir)
        deadline = time.monotonic() + timeout
        while True:
            if self.daemon.poll() is not None:
                raise AssertionError(f"electrum daemon exited {self.daemon.returncode}:\n"
                                     + self.daemon_log.read_text()[-3000:])
            try:
                info = self.rpc("getinfo", timeout=30)
            except (ConnectionError, DaemonRPCError) as exc:
                info = {"not yet": str(exc)}
            if info.get("connected"):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"electrum daemon not connected in {timeout}s: {info}")
            time.sleep(0.2)

    def stop_daemon(self, timeout: float = 60) -> int:
        if self.daemon is None:
            return 0
        proc, self.daemon = self.daemon, None
        if proc.poll() is None:
            try:
                self.rpc("stop")
            except (ConnectionError, DaemonRPCError):
                pass                                    # the wait below decides
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def kill_daemon(self) -> None:
        """SIGKILL (a crash): no plugin code runs."""
        proc, self.daemon = self.daemon, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def daemon_log_text(self) -> str:
        """The daemon's stdout/stderr and its newest log file (``log_to_file``)."""
        text = self.daemon_log.read_text(errors="replace") if self.daemon_log.exists() else ""
        logs = sorted((self.datadir / "regtest" / "logs").glob("*.log"))
        if logs:
            text += logs[-1].read_text(errors="replace")
        return text

    # ---------------------------------------------------------------- wallets
    def create_wallet(self, name: str) -> pathlib.Path:
        path = self.datadir / "regtest" / "wallets" / name
        path.parent.mkdir(parents=True, exist_ok=True)   # the electrum client makes it
        self.rpc("create", wallet=path, seed_type="segwit")
        self.rpc("load_wallet", wallet=path)
        return path

    def close_wallet(self, path: pathlib.Path) -> None:
        """Unload a wallet at a test's end; a daemon already gone is not an error here."""
        try:
            self.rpc("close_wallet", wallet=path)
        except (ConnectionError, DaemonRPCError):
            pass

    def wait_balance(self, wallet: pathlib.Path, confirmed_sats: int, timeout: float = 60) -> dict:
        """Wait until ``getbalance`` shows at least ``confirmed_sats`` confirmed and nothing
        unconfirmed."""
        deadline = time.monotonic() + timeout
        while True:
            bal = self.rpc("getbalance", wallet=wallet)
            conf = int(round(float(bal.get("confirmed", "0")) * 1e8))
            if conf >= confirmed_sats and "unconfirmed" not in bal:
                return bal
            assert time.monotonic() < deadline, f"balance of {wallet}: {bal}"
            time.sleep(0.2)

    def frozen_coins(self, wallet: pathlib.Path) -> list[str]:
        return [c["prevout_hash"] + ":" + str(c["prevout_n"])
                for c in self.rpc("listunspent", wallet=wallet) if c.get("frozen")]


@dataclass
class Client:
    """A running client process."""
    argv: list[str]
    proc: subprocess.Popen
    out: pathlib.Path
    err: pathlib.Path

    def interrupt(self) -> None:
        """What Ctrl-C in the terminal does: SIGINT to the client."""
        self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float = 120) -> Result:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"electrum {' '.join(self.argv)} still running after {timeout}s "
                                 f"(killed):\n{self.stderr()}") from None
        return Result(self.argv, self.proc.returncode, self.out.read_text(), self.err.read_text())

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")


def spendable_and_all(user: UserElectrum, wallet: pathlib.Path, address: str) -> tuple[set, set]:
    """(outpoints a max-amount payment would spend, every unspent outpoint) of ``wallet``: they
    are equal exactly when no coin is frozen (Electrum never spends frozen coins). Nothing is
    signed or broadcast (``payto --unsigned``). Through the daemon's RPC, as the ``electrum``
    client sends them: these commands are Electrum's own, not what the tests are about, and a
    client process costs ~0.8 s of CPU."""
    every = {f"{c['prevout_hash']}:{c['prevout_n']}" for c in user.rpc("listunspent", wallet=wallet)}
    try:
        unsigned = user.rpc("payto", wallet=wallet, destination=address, amount="!",
                            unsigned=True, feerate="2")
    except DaemonRPCError as exc:
        assert "Insufficient funds" in str(exc) or "NotEnoughFunds" in str(exc), str(exc)
        return set(), every
    tx = user.rpc("deserialize", tx=unsigned)
    spent = {f"{i['prevout_hash']}:{i['prevout_n']}" for i in tx["inputs"]}
    return spent, every


def unspent_on_chain(bitcoind: Any, outpoints: set) -> set:
    """The outpoints bitcoind still sees unspent, mempool included (a tx spending one in the
    mempool makes it spent)."""
    left = set()
    for op in outpoints:
        txid, n = op.split(":")
        if bitcoind.rpc("gettxout", txid, int(n), True) is not None:
            left.add(op)
    return left


def wait_line(client: Client, pattern: str, timeout: float = 90) -> str:
    """Wait until the running client printed a stderr line containing ``pattern``."""
    deadline = time.monotonic() + timeout
    while True:
        for line in client.stderr().splitlines():
            if pattern in line:
                return line
        if client.proc.poll() is not None:
            raise AssertionError(f"client exited {client.proc.returncode} before {pattern!r}:\n"
                                 f"{client.stderr()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} within {timeout}s:\n{client.stderr()}")
        time.sleep(0.2)


def user_config(ircd, **over) -> dict:
    """A user's ``plugins.joinmarket`` settings for the lab network (what they would set with
    setconfig; written to the config file before the first start to save ~3 s per key)."""
    cfg = {"enabled": True, "channels": json.dumps(irc_config(ircd)),
           "max_cj_fee_abs": 50_000, "max_cj_fee_rel": "0.01",
           "counterparties": 3, "minimum_makers": 2, "orderbook_wait": 5, "maker_timeout": 20,
           "daemon_port": free_port(), "daemon_in_process": False}
    cfg.update(over)
    return {k: v for k, v in cfg.items() if v is not None}


def write_user_config(user: UserElectrum, ircd, **settings) -> None:
    conf_dir = user.datadir / "regtest"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "config").write_text(json.dumps(
        {"config_version": 3, "plugins": {"joinmarket": user_config(ircd, **settings)},
         "fee_policy": {"default": "feerate:2000"}, "log_to_file": True}, indent=2))


def kill_recorded_daemons(user: UserElectrum) -> None:
    """A failed test must not leave a jmdaemon its Electrum recorded as started (orphans)."""
    import signal
    for rec in (user.home / ".jmdaemon").glob("jmdaemon-started-by-electrum.*.pid"):
        try:
            pid = json.loads(rec.read_text())["pid"]
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


def fund(user: UserElectrum, wallet, bitcoind, amounts) -> None:
    for sats in amounts:
        bitcoind.fund(user.rpc("getunusedaddress", wallet=wallet), sats, confirm=False)
        bitcoind.mine(1)   # the next getunusedaddress is a new address
    bitcoind.mine(5)       # PoDLE: coins need 5 confirmations
    user.wait_balance(wallet, sum(amounts))


def quiet_channels(ircd) -> str:
    """The lab IRC server, but a channel no maker is on: a coinjoin waits the whole
    orderbook_wait there, so a test can act on a running job without racing it."""
    chans = irc_config(ircd)
    chans[0]["channel"] = "joinmarket-quiet"
    return json.dumps(chans)
