"""The frozen jmdaemon binary: version, AMP handshake and a full coinjoin conversation over a real
IRC server (the same conversation tests/daemon runs with ``python -m jmdaemon``), clean SIGTERM
shutdown, and a table of contents free of bitcoin-key code."""
from __future__ import annotations

import base64
import os
import pathlib
import re
import subprocess
import time

import pytest

from devstack.daemons import Proc, TestClient, run
from tests.daemon.conversation import COMMITMENT_HEX, REVELATION, SIGNED_TX, UNSIGNED_TX, full_conversation

from .conftest import load_packaging_module

pytestmark = pytest.mark.e2e


def start_binary(binary: pathlib.Path, workdir: pathlib.Path, name: str, extra=(), timeout=30.0) -> Proc:
    """Like devstack.daemons.start_daemon, but the frozen binary (no Python, no PYTHONPATH)."""
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    logpath = d / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.Popen([str(binary), "--port", "0", "--datadir", str(d), "--loglevel", "DEBUG",
                             *extra], stdout=subprocess.PIPE, stderr=open(logpath, "ab"),
                            stdin=subprocess.DEVNULL, cwd=str(d), env=env, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            from jmcore import linkauth
            linkauth.remember_cookie("127.0.0.1", int(m.group(1)), linkauth.cookie_file(str(d)))
            return Proc(proc, int(m.group(1)), logpath, {"datadir": str(d)})
    proc.kill()
    raise RuntimeError(f"{name} did not start: {line!r}\n{logpath.read_text()}")


def irc_config(ircd):
    return [{"type": "irc", "host": ircd.host, "port": ircd.port, "channel": "joinmarket-pit",
             "usessl": "false", "socks5": "false", "socks5_host": "localhost",
             "socks5_port": 9050, "line_rate": 0.05}]


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
