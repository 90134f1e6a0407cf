"""A private Tor network on 127.0.0.1 from Debian's ``tor`` package (``tor`` + ``tor-gencert``).

``TestingTorNetwork 1``; three directory authorities (also relays, HSDirs and guards) with keys
made by ``tor-gencert``; two more relays; then clients with a SOCKS port (``ExtendedErrors``) and
a control port (cookie authentication) started on demand. Every node knows only the private
authorities (``DirAuthority`` lines, ``UseDefaultFallbackDirs 0``) and no relay is an exit, so
nothing can leave the private network: the real Tor network is never contacted. Onion services
(static or ``ADD_ONION``) work on it; that is all JoinMarket needs.

Start order (docs/devstack.md): authorities and relays first; once an authority's consensus lists
every relay as HSDir, SIGHUP them all (tors that fetched before the first consensus sit in a
download back-off); wait for each to reach ``Bootstrapped 100%``; only then start clients. A
start whose authorities never bootstrap (the known flake: "Failed to find node for hop #2" right
after the first consensus) is detected and the whole network restarted from scratch, up to three
times. Each tor runs as a child process recorded by PID and is stopped by that PID.

Figures of a start are kept in :attr:`TorNet.timings` (seconds from the start of the attempt):
``keys``, ``consensus``, ``network_ready`` and, per client, ``client:<name>``.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Optional

from .procs import CACHE, StackError, free_port, log_tail, require_services

N_AUTHORITIES = 3
N_RELAYS = 2
VOTING_INTERVAL = 10
_BOOTSTRAPPED = "Bootstrapped 100%"
_STUCK = "Failed to find node for hop #2"


def tor_binaries() -> tuple[str, str]:
    """(tor, tor-gencert), or StackError saying how to install them."""
    tor = shutil.which("tor") or ("/usr/sbin/tor" if os.path.exists("/usr/sbin/tor") else None)
    gencert = shutil.which("tor-gencert") or ("/usr/bin/tor-gencert"
                                              if os.path.exists("/usr/bin/tor-gencert") else None)
    if not tor or not gencert:
        raise StackError("Debian's tor package is missing (tor, tor-gencert): run `make install` "
                         "(or `apt-get install tor`)")
    return tor, gencert


@dataclass
class TorNode:
    name: str
    datadir: pathlib.Path
    role: str                        # authority | relay | client
    or_port: int = 0
    dir_port: int = 0
    socks_port: int = 0
    control_port: int = 0
    fingerprint: str = ""            # relay identity fingerprint
    v3ident: str = ""                # authority signing identity (from its certificate)
    control_hash: str = ""           # HashedControlPassword (a client with password auth)
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)

    @property
    def torrc(self) -> pathlib.Path:
        return self.datadir / "torrc"

    @property
    def log(self) -> pathlib.Path:
        return self.datadir / "notice.log"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def bootstrapped(self) -> bool:
        return _BOOTSTRAPPED in self.log_text()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def hup(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL: a Tor client dying under its users (test F6)."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()                       # ShutdownWaitLength 0: exits at once
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def rss_mb(self) -> Optional[float]:
        try:
            for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, TypeError):
            return None
        return None


class TorNet:
    """The private network. ``start()`` brings up authorities and relays; ``add_client()`` adds
    a client (SOCKS + control port); ``stop()`` stops every tor it started."""

    def __init__(self, workdir: pathlib.Path, n_relays: int = N_RELAYS):
        self.workdir = pathlib.Path(workdir)
        self.n_relays = n_relays
        self.tor, self.gencert = tor_binaries()
        self.nodes: list[TorNode] = []
        self.clients: dict[str, TorNode] = {}
        self.timings: dict[str, float] = {}
        self.attempts = 0
        self._t0 = 0.0

    # ---------------------------------------------------------------- configuration
    def _common(self, node: TorNode) -> list[str]:
        lines = ["TestingTorNetwork 1", f"DataDirectory {node.datadir}", "RunAsDaemon 0",
                 "ShutdownWaitLength 0", f"Log notice file {node.log}", "SafeLogging 0",
                 "UseDefaultFallbackDirs 0", "ConnLimit 60", "AssumeReachable 1",
                 "DisableDebuggerAttachment 0", f"Nickname {node.name}",
                 # vanguards-lite wants distinct second-layer guards, which 5 relays cannot
                 # always give: circuits then fail ("Failed to find node for hop #2") and tors
                 # never bootstrap. It defends onion services against guard discovery on the
                 # real network; here it only makes the private network flaky.
                 "VanguardsLiteEnabled 0"]
        for a in self.authorities:
            lines.append(f"DirAuthority {a.name} orport={a.or_port} no-v2 v3ident={a.v3ident} "
                         f"127.0.0.1:{a.dir_port} {a.fingerprint}")
        return lines

    def _role_lines(self, node: TorNode) -> list[str]:
        if node.role == "client":
            auth = ([f"HashedControlPassword {node.control_hash}", "CookieAuthentication 0"]
                    if node.control_hash else ["CookieAuthentication 1"])
            return [f"SocksPort 127.0.0.1:{node.socks_port} ExtendedErrors",
                    f"ControlPort 127.0.0.1:{node.control_port}", "ClientUseIPv6 0"] + auth
        lines = ["Address 127.0.0.1", f"ORPort 127.0.0.1:{node.or_port}", "SocksPort 0",
                 "ExitRelay 0", "ExitPolicy reject *:*", "ContactInfo electrum-joinmarket-devstack"]
        if node.role == "authority":
            lines += [f"DirPort 127.0.0.1:{node.dir_port}", "AuthoritativeDirectory 1",
                      "V3AuthoritativeDirectory 1", "TestingDirAuthVoteHSDir *",
                      "TestingDirAuthVoteGuard *", f"V3AuthVotingInterval {VOTING_INTERVAL}",
                      f"TestingV3AuthInitialVotingInterval {VOTING_INTERVAL}",
                      "V3AuthVoteDelay 2", "V3AuthDistDelay 2",
                      "TestingV3AuthInitialVoteDelay 2", "TestingV3AuthInitialDistDelay 2",
                      "V3AuthNIntervalsValid 3"]
        return lines

    def _write_torrc(self, node: TorNode) -> None:
        node.torrc.write_text("\n".join(self._common(node) + self._role_lines(node)) + "\n")

    @property
    def authorities(self) -> list[TorNode]:
        return [n for n in self.nodes if n.role == "authority"]

    def _new_node(self, name: str, role: str) -> TorNode:
        d = self.workdir / f"attempt{self.attempts}" / name
        d.mkdir(parents=True, mode=0o700)
        os.chmod(d, 0o700)
        node = TorNode(name=name, datadir=d, role=role, or_port=free_port())
        if role == "authority":
            node.dir_port = free_port()
        return node

    def _make_authority_keys(self, node: TorNode) -> None:
        keys = node.datadir / "keys"
        keys.mkdir(mode=0o700)
        r = subprocess.run([self.gencert, "--create-identity-key", "-m", "12",
                            "-i", str(keys / "authority_identity_key"),
                            "-s", str(keys / "authority_signing_key"),
                            "-c", str(keys / "authority_certificate"), "--passphrase-fd", "0"],
                           input=b"devstack-passphrase\n", capture_output=True, timeout=60)
        if r.returncode != 0:
            raise StackError(f"tor-gencert failed: {r.stderr.decode(errors='replace')[-500:]}")
        cert = (keys / "authority_certificate").read_text()
        m = re.search(r"^fingerprint ([0-9A-F]{40})$", cert, re.M)
        if not m:
            raise StackError("tor-gencert wrote no fingerprint line")
        node.v3ident = m.group(1)

    def _relay_fingerprint(self, node: TorNode) -> None:
        # a minimal relay config just to create and print the identity key
        tmp = node.datadir / "fp.torrc"
        tmp.write_text(f"DataDirectory {node.datadir}\nORPort 127.0.0.1:{node.or_port}\n"
                       "DisableNetwork 1\nSocksPort 0\nTestingTorNetwork 1\n"
                       "DirAuthority x orport=1 no-v2 v3ident=" + "0" * 40 +
                       " 127.0.0.1:1 " + "0" * 40 + "\n")
        r = subprocess.run([self.tor, "--list-fingerprint", "-f", str(tmp), "--quiet"],
                           capture_output=True, timeout=60)
        out = r.stdout.decode(errors="replace").strip().split()
        fp = "".join(out[1:]) if len(out) >= 2 else ""
        if r.returncode != 0 or not re.fullmatch(r"[0-9A-F]{40}", fp):
            raise StackError(f"tor --list-fingerprint failed: {r.stdout!r} {r.stderr!r}")
        node.fingerprint = fp

    # keys are made once (tor-gencert and key generation take seconds of CPU each) and kept in
    # the cache; they hold no address or port, so every session reuses them on new ports
    def _key_cache(self) -> pathlib.Path:
        return CACHE / "tor-keys" / f"v1-{N_AUTHORITIES}a{self.n_relays}r"

    def _keys_from_cache(self) -> bool:
        import json
        cache = self._key_cache()
        try:
            ids = json.loads((cache / "ids.json").read_text())
            for node in self.nodes:
                if node.role == "authority":
                    cert = (cache / node.name / "keys" / "authority_certificate").read_text()
                    m = re.search(r"^dir-key-expires (\S+ \S+)$", cert, re.M)
                    if not m or time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) \
                            < time.time() + 30 * 86400:
                        return False
            for node in self.nodes:
                shutil.copytree(cache / node.name / "keys", node.datadir / "keys")
                os.chmod(node.datadir / "keys", 0o700)
                node.fingerprint = ids[node.name]["fingerprint"]
                node.v3ident = ids[node.name].get("v3ident", "")
        except (OSError, ValueError, KeyError):
            for node in self.nodes:
                shutil.rmtree(node.datadir / "keys", ignore_errors=True)
            return False
        return True

    def _keys_to_cache(self) -> None:
        import json
        cache = self._key_cache()
        tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
        try:
            for node in self.nodes:
                shutil.copytree(node.datadir / "keys", tmp / node.name / "keys")
            (tmp / "ids.json").write_text(json.dumps(
                {n.name: {"fingerprint": n.fingerprint, "v3ident": n.v3ident} for n in self.nodes}))
            if not cache.exists():
                tmp.rename(cache)
        except OSError:
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _spawn(self, node: TorNode) -> None:
        self._write_torrc(node)
        node.proc = subprocess.Popen([self.tor, "-f", str(node.torrc), "--quiet"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=(node.datadir / "stderr.log").open("ab"),
                                     start_new_session=True)

    # ---------------------------------------------------------------- start / stop
    def start(self, timeout: float = 90.0, attempts: int = 3) -> "TorNet":
        require_services("the private Tor network")
        last: Optional[Exception] = None
        for _ in range(attempts):
            self.attempts += 1
            try:
                self._start_once(timeout)
                return self
            except StackError as exc:
                last = exc
                self.stop()
        raise StackError(f"the private Tor network did not come up in {attempts} attempts: {last}")

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _start_once(self, timeout: float) -> None:
        self._t0 = time.monotonic()
        self.nodes, self.clients = [], {}
        for i in range(N_AUTHORITIES):
            self.nodes.append(self._new_node(f"auth{i}", "authority"))
        for i in range(self.n_relays):
            self.nodes.append(self._new_node(f"relay{i}", "relay"))
        if not self._keys_from_cache():
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(4) as pool:      # the key tools are slow one at a time
                jobs = [pool.submit(self._make_authority_keys, n) for n in self.authorities]
                jobs += [pool.submit(self._relay_fingerprint, n) for n in self.nodes]
                for job in jobs:
                    job.result()
            self._keys_to_cache()
        self.timings["keys"] = self._elapsed()
        # voting is wall-clock aligned: start a few seconds after a boundary, so the relays
        # have published before the first vote
        wait = (2 - time.time() % VOTING_INTERVAL) % VOTING_INTERVAL
        time.sleep(wait)
        t_spawn = time.monotonic()
        for node in self.nodes:
            self._spawn(node)
        deadline = t_spawn + timeout
        n = len(self.nodes)
        while not self._consensus_complete(n):
            self._check_alive()
            if time.monotonic() > deadline:
                raise StackError(f"no consensus listing {n} HSDirs within {timeout:.0f}s"
                                 + log_tail(self.authorities[0].log))
            time.sleep(0.5)
        self.timings["consensus"] = self._elapsed()
        marks = {}
        for node in self.nodes:
            marks[node.name] = len(node.log_text())
            node.hup()
        while not all(node.bootstrapped() for node in self.nodes):
            self._check_alive()
            # the known flake: after the first consensus, an authority fails to build circuits
            # every second and never bootstraps (before the consensus this line is normal)
            stuck = [node.name for node in self.nodes if not node.bootstrapped()
                     and node.log_text()[marks[node.name]:].count(_STUCK) >= 30]
            if stuck:
                raise StackError(f"tors stuck ({', '.join(stuck)}: {_STUCK!r})")
            if time.monotonic() > deadline:
                late = [node.name for node in self.nodes if not node.bootstrapped()]
                raise StackError(f"{', '.join(late)} not bootstrapped within {timeout:.0f}s"
                                 + log_tail(self.nodes[0].log))
            time.sleep(0.25)
        self.timings["network_ready"] = self._elapsed()

    def _check_alive(self) -> None:
        for node in self.nodes:
            if not node.alive():
                raise StackError(f"tor {node.name} exited with {node.proc.returncode if node.proc else '?'}"
                                 + log_tail(node.log) + log_tail(node.datadir / "stderr.log"))

    def _consensus_complete(self, n: int) -> bool:
        a = self.authorities[0]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{a.dir_port}/tor/status-vote/current/"
                                        "consensus-microdesc", timeout=2) as r:
                text = r.read().decode(errors="replace")
        except Exception:
            return False
        relays = text.count("\nr ")
        hsdirs = sum(1 for line in text.splitlines() if line.startswith("s ") and "HSDir" in line)
        return relays >= n and hsdirs >= n

    def add_client(self, name: str, timeout: float = 60.0, socks_port: int = 0,
                   control_port: int = 0, control_password: Optional[str] = None) -> TorNode:
        """A client with a SOCKS port and a control port, bootstrapped: cookie authentication, or
        only ``control_password`` if given. Free ports unless given (e.g. 9050/9051 to stand in
        for a user's tor, 9150/9151 for Tor Browser)."""
        if name in self.clients:
            raise StackError(f"tor client {name} exists")
        t = time.monotonic()
        node = self._new_node(name, "client")
        node.or_port = 0
        node.socks_port, node.control_port = socks_port or free_port(), control_port or free_port()
        if control_password:
            r = subprocess.run([self.tor, "--hash-password", control_password, "--quiet"],
                               capture_output=True, text=True, timeout=60)
            node.control_hash = r.stdout.strip().splitlines()[-1]
        self._spawn(node)
        self.clients[name] = node
        deadline = time.monotonic() + timeout
        while not node.bootstrapped():
            if not node.alive():
                raise StackError(f"tor client {name} exited" + log_tail(node.log))
            if time.monotonic() > deadline:
                raise StackError(f"tor client {name} not bootstrapped within {timeout:.0f}s"
                                 + log_tail(node.log))
            time.sleep(0.1)
        self.timings[f"client:{name}"] = time.monotonic() - t
        return node

    def all_nodes(self) -> list[TorNode]:
        return self.nodes + list(self.clients.values())

    def stop(self) -> None:
        for node in self.all_nodes():
            node.stop()

    def rss_mb(self) -> dict[str, float]:
        return {n.name: r for n in self.all_nodes() if (r := n.rss_mb()) is not None}


def start_tornet(workdir: pathlib.Path, timeout: float = 90.0) -> TorNet:
    return TorNet(workdir).start(timeout=timeout)


class OnionNotReachable(StackError):
    """``code``: the last SOCKS reply code from Tor (None if it never answered one)."""

    def __init__(self, message: str, code: Optional[int] = None):
        super().__init__(message)
        self.code = code


def onion_handshake(socks_port: int, location: str, nick: str = "J5devstackProbeO",
                    network: str = "testnet", timeout: float = 60.0,
                    refusals: Optional[int] = None) -> tuple[dict, float]:
    """Connect to a JoinMarket onion ``location`` through the SOCKS port, send a 793 handshake
    and return (the 795 reply, seconds it took). Retries while Tor says the service is not
    (yet) reachable (0xF0/0xF2/0xF3/0xF7: descriptor not uploaded yet) — for a service that
    should be reachable. ``refusals=N``, for one that should be gone: OnionNotReachable as soon
    as Tor has answered N attempts in a row with an onion-service error (instead of retrying
    until ``timeout``)."""
    import json
    import socket

    from jmcore import socks5

    host, _, port = location.rpartition(":")
    t0 = time.monotonic()
    last = ""
    last_code: Optional[int] = None
    in_a_row = 0
    while time.monotonic() - t0 < timeout:
        # for a service that should be gone, one attempt waits up to 60 s for Tor's answer
        # (trying every introduction point took over 30 s in a loaded CI run: four 30 s attempts
        # then ended with no answer from Tor at all; waiting as long as Tor's own 120 s SOCKS
        # timeout made c7 take 127 s); 30 s each for one that should answer
        left = timeout - (time.monotonic() - t0)
        per_try = max(5.0, min(60.0 if refusals is not None else 30.0, left))
        try:
            with socket.create_connection(("127.0.0.1", socks_port), timeout=per_try) as s:
                user, pw = socks5.isolation_credentials("probe")
                s.sendall(socks5.greeting(True))
                assert s.recv(2) == b"\x05\x02"
                s.sendall(socks5.userpass_request(user, pw))
                assert s.recv(2)[1] == 0
                s.sendall(socks5.connect_request(host, int(port)))
                data = b""
                while (parsed := socks5.parse_reply(data)) is None:
                    chunk = s.recv(64)
                    if not chunk:
                        raise OSError("SOCKS proxy closed")
                    data += chunk
                code, n = parsed
                if code != 0:
                    last, last_code = socks5.reply_text(code), code
                    in_a_row = in_a_row + 1 if code in socks5.ONION_REPLY_CODES else 0
                    if refusals is not None and in_a_row >= refusals:
                        break
                    time.sleep(1.0)
                    continue
                hs = {"app-name": "joinmarket", "directory": False,
                      "location-string": "NOT-SERVING-ONION", "proto-ver": 5, "features": {},
                      "nick": nick, "network": network}
                line = json.dumps({"type": 793, "line": json.dumps(hs)}) + "\r\n"
                s.sendall(line.encode())
                buf = data[n:]
                while b"\r\n" not in buf:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise OSError("closed before the handshake answer")
                    buf += chunk
                reply = json.loads(buf.split(b"\r\n", 1)[0])
                return json.loads(reply["line"]), time.monotonic() - t0
        except (OSError, ValueError, AssertionError) as exc:
            last, in_a_row = str(exc), 0
            time.sleep(1.0)
    if refusals is not None and in_a_row >= refusals:
        raise OnionNotReachable(f"{location} not reachable through Tor: {in_a_row} onion-service "
                                f"errors in a row, the last: {last}", last_code)
    raise OnionNotReachable(f"{location} not reachable through Tor within {timeout:.0f}s: {last}",
                            last_code)


class StreamWatcher:
    """Records the STREAM events of a Tor client (its control port, cookie authentication):
    every stream with its target and the SOCKS username it was opened with."""

    def __init__(self, node: TorNode):
        import socket
        import threading
        self.node = node
        self.events: list[str] = []
        cookie = (node.datadir / "control_auth_cookie").read_bytes()
        self.sock = socket.create_connection(("127.0.0.1", node.control_port), timeout=10)
        self.sock.sendall(b"AUTHENTICATE " + cookie.hex().encode() + b"\r\nSETEVENTS STREAM\r\n")
        self._buf = b""
        self._stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        self.sock.settimeout(0.5)
        while not self._stop:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            self._buf += chunk
            while b"\r\n" in self._buf:
                line, self._buf = self._buf.split(b"\r\n", 1)
                text = line.decode(errors="replace")
                if text.startswith("650 STREAM "):
                    self.events.append(text)

    def streams(self) -> dict[str, dict]:
        """stream id -> {"target", "username", "circuits", "statuses"}."""
        out: dict[str, dict] = {}
        for ev in self.events:
            parts = ev.split(" ")
            sid, status, circ, target = parts[2], parts[3], parts[4], parts[5]
            m = re.search(r'SOCKS_USERNAME="([^"]*)"', ev)
            s = out.setdefault(sid, {"target": target, "username": None, "circuits": set(),
                                     "statuses": []})
            s["statuses"].append(status)
            if circ != "0":
                s["circuits"].add(circ)
            if m:
                s["username"] = m.group(1)
        return out

    def close(self) -> None:
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass


def tcp_connections(pid: int) -> set[tuple[int, str, int]]:
    """(local port, remote ip, remote port) of the established TCP connections of process
    ``pid`` (from /proc): which endpoints it really talks to."""
    inodes = set()
    fd_dir = pathlib.Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[9] in inodes and f[3] == "01":              # ESTABLISHED
                ip_hex, port_hex = f[2].split(":")
                if len(ip_hex) == 8:
                    ip = ".".join(str(int(ip_hex[i:i + 2], 16)) for i in (6, 4, 2, 0))
                else:
                    ip = ip_hex
                out.add((int(f[1].split(":")[1], 16), ip, int(port_hex, 16)))
    return out
