"""The frozen jmdaemon binary: version, AMP handshake and a full coinjoin conversation over a real
IRC server (the same conversation tests/daemon runs with ``python -m jmdaemon``), clean SIGTERM
shutdown, and a table of contents free of bitcoin-key code.

Every daemon path runs on the binary too, because the spec leaves out modules no path loads
(``NEVER_LOADED`` in packaging/jmdaemon.spec): a module a path needs and the binary lacks shows up
as a traceback in the daemon's log. Paths: idle, IRC, IRC over TLS, AMP over TLS (--ssl-cert),
directory mode and the onion channel (test mode), and Tor — our control-port client on an offline
tor (``DisableNetwork 1``: it creates the onion service's keys, never reaches any network) and IRC
through its SOCKS port with TLS inside. TLS is the standard library's ssl: the binary carries no
pyOpenSSL, cryptography or txtorcon."""
from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import subprocess
import time

import pytest

from devstack.daemons import _STARTED, Proc, TestClient, join_once, run
from devstack.ircd import irc_config
from devstack.procs import wait_for
from tests.daemon.conversation import COMMITMENT_HEX, REVELATION, SIGNED_TX, UNSIGNED_TX, full_conversation

from .helpers import load_packaging_module

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _stop_binaries_of_failed_tests():
    """Binaries a test started are stopped when it ends, even if it failed first: SIGTERM, which
    the one-file bootloader forwards to its Python child. (The SIGKILL of devstack's atexit
    safety net would kill only the bootloader and leave the child running.)"""
    first = len(_STARTED)
    yield
    for proc in _STARTED[first:]:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_binary(binary: pathlib.Path, workdir: pathlib.Path, name: str, extra=(), timeout=30.0,
                 ready=r"listening on 127\.0\.0\.1:(\d+)", args=None) -> Proc:
    """Like devstack.daemons.start_daemon, but the frozen binary (no Python, no PYTHONPATH).
    ``ready``: the stdout line that says it is up (group 1: its port; None: do not wait)."""
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    logpath = d / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if args is None:
        args = ["--port", "0", "--datadir", str(d)]
    proc = subprocess.Popen([str(binary), *args, "--loglevel", "DEBUG", *extra],
                            stdout=subprocess.PIPE, stderr=open(logpath, "ab"),
                            stdin=subprocess.DEVNULL, cwd=str(d), env=env, text=True)
    assert proc.stdout is not None
    _STARTED.append(proc)
    if ready is None:
        return Proc(proc, 0, logpath)
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        m = re.search(ready, line)
        if m:
            from jmcore import linkauth
            cookie = linkauth.cookie_file(str(d))
            linkauth.remember_cookie("127.0.0.1", int(m.group(1)), cookie)
            return Proc(proc, int(m.group(1)), logpath, {"datadir": str(d), "cookie": cookie})
    proc.kill()
    raise RuntimeError(f"{name} did not start: {line!r}\n{logpath.read_text()}")


def start_binary_directory(binary: pathlib.Path, workdir: pathlib.Path, name="directory",
                           extra=("--onion-test-mode",)) -> Proc:
    return start_binary(binary, workdir, name, args=[
        "--directory-node", "--directory-port", "0", "--network", "regtest",
        "--datadir", str(workdir / name)], extra=extra,
        ready=r"directory \S+ at 127\.0\.0\.1:(\d+)")


def stopped_cleanly(*procs: Proc) -> None:
    rcs = [p.stop(timeout=20) for p in procs]
    assert rcs == [0] * len(procs), [p.log()[-3000:] for p in procs]
    for p in procs:
        assert "Traceback" not in p.log(), p.log()[-5000:]


def test_binary_prints_version(daemon_binary, daemon_build_info):
    from jmdaemon import __version__
    r = subprocess.run([str(daemon_binary), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"jmdaemon {__version__}"
    assert daemon_build_info["version"] == __version__
    assert daemon_build_info["pyinstaller"] == "6.22.3"


def test_binary_amp_handshake_and_sigterm(daemon_binary, ircd, tmp_path):
    p = start_binary(daemon_binary, tmp_path, "solo")

    async def main():
        c = await TestClient("solo").connect(p.port)
        try:
            await c.init(irc_config(ircd))                 # JMInit -> JMInitProto, JMStartMC -> JMUp
            assert c.count("JMInitProto") == 1 and c.count("JMUp") == 1
        finally:
            c.close()
    run(main(), timeout=120)
    assert p.alive()
    rc = p.stop(timeout=20)
    assert rc == 0, p.log()[-3000:]
    assert "jmdaemon stopped" in p.log()
    assert "Traceback" not in p.log(), p.log()[-5000:]


def test_binary_full_conversation_over_irc(daemon_binary, ircd, tmp_path):
    t = start_binary(daemon_binary, tmp_path, "taker")
    m = start_binary(daemon_binary, tmp_path, "maker")
    try:
        async def main():
            taker = await TestClient("taker").connect(t.port)
            maker = await TestClient("maker").connect(m.port)
            try:
                seen = await full_conversation(taker, maker, irc_config(ircd), irc_config(ircd))
                assert seen["taker_verify"][0]["hostid"] == "%s%d" % (ircd.host, ircd.port)
            finally:
                taker.close()
                maker.close()
        run(main())
    finally:
        rcs = [p.stop(timeout=20) for p in (t, m)]
    assert rcs == [0, 0], (t.log()[-3000:], m.log()[-3000:])
    for p in (t, m):
        text = p.log()
        assert "Traceback" not in text, text[-5000:]
        for secret in (REVELATION, base64.b64encode(UNSIGNED_TX).decode()[:60],
                       base64.b64encode(SIGNED_TX).decode()[:60], "bcrt1qmakerchange"):
            assert secret not in text
    bl = (tmp_path / "maker" / "cmtdata" / "commitmentlist").read_text().split()
    assert COMMITMENT_HEX in bl


# top-level names of Python packages that hold or use bitcoin keys (or are the plugin)
FORBIDDEN_PACKAGES = {"electrum", "electrum_ecc", "electrum_joinmarket", "coincurve", "secp256k1",
                      "secp256k1py", "bitcointx", "bitcoin", "embit", "ecdsa", "bip32", "bip_utils",
                      "btclib", "pycoin", "bitcoinlib", "hdwallet", "PyQt5", "PyQt6"}


def test_binary_contains_no_key_code(daemon_binary):
    build = load_packaging_module("build_daemon")
    toc = build.table_of_contents(daemon_binary)
    modules = set(toc["pyz"])
    modules |= {n for n, code in toc["entries"] if code in ("m", "s", "M")}
    modules |= {n[:-4].replace("/", ".").removesuffix(".__init__")
                for n in toc["base_library"] if n.endswith(".pyc")}
    files = [n for n, code in toc["entries"] if code not in ("m", "s", "M", "z")]
    assert {"jmdaemon", "jmdaemon.cli", "jmdaemon.server", "jmcore.commands", "twisted.protocols.amp",
            "nacl.public"} <= modules, "the daemon itself is missing from the binary"
    bad_modules = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN_PACKAGES)
    assert bad_modules == []
    top_files = {re.split(r"[/.-]", f)[0] for f in files}
    assert not (top_files & FORBIDDEN_PACKAGES), sorted(top_files & FORBIDDEN_PACKAGES)
    bad_files = [f for f in files if re.search(r"secp256k1|electrum", f, re.I)]
    assert bad_files == []


# what TLS and Tor no longer need (jmdaemon/tls.py: the standard library's ssl;
# jmdaemon/tor/control.py: our own control-port client), and Twisted's pyOpenSSL layer
NO_OPENSSL_PACKAGES = {"OpenSSL", "cryptography", "service_identity", "txtorcon"}
TWISTED_OPENSSL_MODULES = {"twisted.internet.ssl", "twisted.internet._sslverify",
                           "twisted.internet._newtls", "twisted.protocols.tls"}


def test_binary_carries_no_pyopenssl_cryptography_or_txtorcon(daemon_binary):
    build = load_packaging_module("build_daemon")
    toc = build.table_of_contents(daemon_binary)
    modules = set(toc["pyz"]) | {n for n, code in toc["entries"] if code in ("m", "s", "M")}
    files = [n for n, code in toc["entries"] if code not in ("m", "s", "M", "z")]
    present = modules | {re.split(r"[.]", f.rsplit("/", 1)[-1])[0] for f in files} | \
        {n[:-4].replace("/", ".") for n in toc["base_library"] if n.endswith(".pyc")}
    assert {"jmdaemon.tls", "jmdaemon.tor.control", "ssl", "_ssl"} <= present, "TLS is missing"
    bad = sorted(m for m in modules if m.split(".")[0] in NO_OPENSSL_PACKAGES
                 or m in TWISTED_OPENSSL_MODULES)
    assert bad == []
    bad_files = sorted(f for f in files if re.split(r"[/.-]", f)[0] in NO_OPENSSL_PACKAGES
                       or re.search(r"_rust|_openssl|txtorcon|pyOpenSSL|cryptography", f, re.I))
    assert bad_files == []


# the frozen code's string constants, read with PyInstaller's reader in the build venv
FROZEN_STRINGS = r"""
import json, sys
from PyInstaller.archive.readers import CArchiveReader
arch = CArchiveReader(sys.argv[1])
pyz = arch.open_embedded_archive([n for n, v in arch.toc.items() if v[-1] == "z"][0])
out, todo = [], [pyz.extract(sys.argv[2])]
while todo:
    code = todo.pop()
    for c in code.co_consts:
        if isinstance(c, str):
            out.append(c)
        elif hasattr(c, "co_consts"):
            todo.append(c)
json.dump(out, sys.stdout)
"""


def test_binary_runs_with_OO_no_docstrings(daemon_binary):
    """packaging/jmdaemon.spec: bytecode compiled with optimize=2 (no docstrings: about 2 MiB
    less idle RSS) and the interpreter told -OO (two ``O`` options), so that code compiled at run
    time matches. jmdaemon and jmcore have no asserts (tests/daemon/test_lean.py)."""
    build = load_packaging_module("build_daemon")
    assert build.table_of_contents(daemon_binary)["options"].count("O") == 2
    venv = build.ensure_venv(build.cache_dir(), *build.base_python(None))
    r = subprocess.run([str(venv / "bin" / "python"), "-c", FROZEN_STRINGS, str(daemon_binary),
                        "jmdaemon.memory"], capture_output=True, text=True, check=True)
    strings = json.loads(r.stdout)
    assert "released freed memory to the OS: RSS %s -> %s KiB" in strings    # the right module
    from jmdaemon import memory
    docstrings = [memory.__doc__, memory.release_freed_memory.__doc__]
    assert all(d for d in docstrings), "run this test without -OO"
    assert [d for d in docstrings if d in strings] == []


# ---------------------------------------------------------------------------------------------
# every daemon path on the binary (see the module docstring)

from tests.daemon.conversation import onion_config  # noqa: E402


def test_binary_irc_over_tls(daemon_binary, tls_ircd, tmp_path):
    p = start_binary(daemon_binary, tmp_path, "tls-irc")
    cfg = irc_config(tls_ircd)
    cfg[0]["usessl"] = "true"
    join_once(p.port, cfg)                              # JMUp: joined the channel over TLS
    assert "(TLS)" in p.log()
    stopped_cleanly(p)


def test_binary_amp_over_tls(daemon_binary, tmp_path):
    import asyncio
    import ssl

    from jmcore import amp as jamp
    from jmcore import linkauth
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=localhost", "-days", "1", "-keyout", str(key), "-out", str(cert)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("openssl CLI not available")
    p = start_binary(daemon_binary, tmp_path, "tls-amp", extra=["--ssl-cert", str(cert),
                                                                 "--ssl-key", str(key)])

    async def main():
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        c = TestClient("c")
        c.cond = asyncio.Condition()
        c.proto = await jamp.connect("127.0.0.1", p.port, c._responders(), ssl=ctx,
                                     commands=linkauth.LINK_COMMANDS)
        try:
            await linkauth.authenticate(c.proto, linkauth.read_cookie(p.extra["cookie"]))
            assert (await c.call("JMRequestOffers")) == {"accepted": True}
            await c.wait_for("JMOffers")
        finally:
            c.close()
    run(main(), timeout=60)
    assert "(TLS)" in p.log()
    stopped_cleanly(p)


def test_binary_onion_conversation_via_binary_directory(daemon_binary, tmp_path):
    d = start_binary_directory(daemon_binary, tmp_path)
    t = start_binary(daemon_binary, tmp_path, "taker")
    m = start_binary(daemon_binary, tmp_path, "maker")

    async def main():
        taker = await TestClient("taker").connect(t.port)
        maker = await TestClient("maker").connect(m.port)
        try:
            await full_conversation(taker, maker, onion_config(d), onion_config(d, serving=True),
                                    hostid_check="onion-network")
        finally:
            taker.close()
            maker.close()
    run(main())
    stopped_cleanly(t, m, d)


@pytest.fixture
def offline_tor(tmp_path):
    """A tor with ``DisableNetwork 1`` (it never connects anywhere): a control port that adds
    onion services (logged at info level; no descriptor is ever uploaded) and a SOCKS port that
    refuses."""
    import shutil

    from devstack.procs import free_port, wait_for
    tor = shutil.which("tor") or ("/usr/sbin/tor" if os.path.exists("/usr/sbin/tor") else None)
    if tor is None:
        pytest.skip("tor is not installed")
    d = tmp_path / "tor"
    (d / "data").mkdir(parents=True)
    os.chmod(d / "data", 0o700)
    control, socks = free_port(), free_port()
    (d / "torrc").write_text(
        f"DataDirectory {d / 'data'}\nControlPort 127.0.0.1:{control}\nSocksPort 127.0.0.1:{socks}\n"
        f"DisableNetwork 1\nCookieAuthentication 0\nLog info file {d / 'tor.log'}\n"
        "RunAsDaemon 0\nAvoidDiskWrites 1\n")
    proc = subprocess.Popen([tor, "-f", str(d / "torrc")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: (d / "tor.log").exists() and "Opened Control listener" in
                 (d / "tor.log").read_text(), 30, "offline tor control port")

        class Tor:
            control_port, socks_port, log = control, socks, d / "tor.log"
        yield Tor
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_binary_tor_control_and_socks(daemon_binary, offline_tor, tmp_path):
    """Our control-port client in the binary: the directory node adds its onion service through
    the control port (ADD_ONION; the descriptor upload that would follow needs a network, which this tor has
    not); an IRC channel over Tor's SOCKS port with TLS inside tries and fails cleanly."""
    hs = tmp_path / "hs"
    d = start_binary(daemon_binary, tmp_path, "directory", ready=None, args=[
        "--directory-node", "--directory-port", "0", "--network", "regtest", "--datadir",
        str(tmp_path / "directory"), "--hidden-service-dir", str(hs), "--tor-control",
        "127.0.0.1:%d" % offline_tor.control_port])
    wait_for(lambda: "Added ephemeral v3 onion service" in offline_tor.log.read_text(), 60,
             "tor adding the directory's onion service", proc=d.proc, log=d.logpath)

    p = start_binary(daemon_binary, tmp_path, "socks")
    cfg = [{"type": "irc", "host": "irc.example.invalid", "port": 6697, "channel": "joinmarket-pit",
            "usessl": "true", "socks5": "true", "socks5_host": "127.0.0.1",
            "socks5_port": offline_tor.socks_port}]

    async def main():
        c = await TestClient("c").connect(p.port)
        try:
            assert (await c.call("JMInit", bcsource="regtest", network="regtest", chan_configs=cfg,
                                 minmakers=1, maker_timeout_sec=20, dust_threshold=27300,
                                 blacklist_location="cmtdata/commitmentlist")) == {"accepted": True}
            await c.wait_for("JMInitProto")
            assert (await c.call("JMStartMC", nick=c.nick)) == {"accepted": True}
            await p.wait_log("via SOCKS5")             # an attempt through tor (which refuses it)
        finally:
            c.close()
    run(main(), timeout=60)
    assert "via SOCKS5" in p.log()
    stopped_cleanly(p, d)


def test_binary_idle_maps_no_tls_nacl_or_tor(daemon_binary, tmp_path):
    """The binary carries pynacl and an idle one does not load it (jmdaemon/crypto.py); it
    releases freed heap once (jmdaemon/memory.py)."""
    from tests.daemon.test_lean import NACL_LIBS, TLS_LIBS, mapped
    p = start_binary(daemon_binary, tmp_path, "idle")      # returns once it listens: idle
    wait_for(lambda: mapped(p.proc.pid, ("libpython",)), 10, "the Python child's maps")
    assert mapped(p.proc.pid, TLS_LIBS + NACL_LIBS) == []
    # and, once up, it gave the heap that start-up freed back to the OS (jmdaemon/memory.py)
    p.wait_log_sync("released freed memory to the OS", timeout=20)
    stopped_cleanly(p)
