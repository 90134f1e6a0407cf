"""The jmdaemon command line: version, clean shutdown on SIGINT/SIGTERM, one-line errors for a
port in use or a bad config, a warning for non-loopback binding, default channels from the config
file."""
import signal
import socket
import subprocess

import pytest

from devstack.daemons import PY, ROOT, TestClient, run, start_daemon, start_directory
from jmdaemon import __version__


def jmd(*args, timeout=20):
    return subprocess.run([PY, "-m", "jmdaemon", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


def test_version():
    r = jmd("--version")
    assert r.returncode == 0 and r.stdout.strip() == "jmdaemon " + __version__


def test_console_script_declared():
    from importlib.metadata import entry_points
    eps = [e for e in entry_points(group="console_scripts") if e.name == "jmdaemon"]
    assert eps and eps[0].value == "jmdaemon.cli:main"


@pytest.mark.stack
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_clean_shutdown_on_signal(tmp_path, sig):
    p = start_daemon(tmp_path, "d")
    assert p.stop(sig) == 0
    assert "jmdaemon stopped" in p.log() and "Traceback" not in p.log()


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = jmd("--port", str(port), "--datadir", str(tmp_path))
    assert r.returncode == 2
    assert "address already in use" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("content,needle", [
    ("[daemon]\nport = abc\n", "port must be an integer"),
    ("[daemon]\nnetwork = moonnet\n", "network must be one of"),
    ("[daemon\nport=1\n", "cannot read config file"),
    ("[nonsense]\nx=1\n", "unknown section"),
    ("[daemon]\ncolour = blue\n", "unknown setting"),
])
def test_bad_config_is_a_clear_error(tmp_path, content, needle):
    cfg = tmp_path / "jmdaemon.cfg"
    cfg.write_text(content)
    r = jmd("--datadir", str(tmp_path), "--config", str(cfg))
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_missing_config_file_and_bad_flags(tmp_path):
    r = jmd("--config", str(tmp_path / "nope.cfg"), "--datadir", str(tmp_path))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = jmd("--datadir", str(tmp_path), "--irc", "no-port-here")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr and "Traceback" not in r.stderr
    r = jmd("--network", "moonnet")
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.stack
def test_non_loopback_binding_is_warned(tmp_path):
    p = start_daemon(tmp_path, "d", extra=["--host", "0.0.0.0"])
    try:
        assert "not a loopback address" in p.log()
    finally:
        assert p.stop() == 0


@pytest.mark.stack
def test_default_loopback_no_warning(tmp_path):
    p = start_daemon(tmp_path, "d")
    assert p.stop() == 0
    assert "not a loopback" not in p.log() and "127.0.0.1" in p.log()


@pytest.mark.stack
def test_default_channels_from_config_file(tmp_path):
    """A client whose JMInit carries no channels gets the daemon's configured ones."""
    d = start_directory(tmp_path)
    datadir = tmp_path / "withcfg"
    datadir.mkdir()
    (datadir / "jmdaemon.cfg").write_text(
        "[daemon]\nnetwork = regtest\n\n[MESSAGING:onion]\ntype = onion\n"
        "directory_nodes = 127.0.0.1:%d\nregtest_count = 1, 1\n" % d.port)
    p = start_daemon(tmp_path, "withcfg")

    async def main():
        c = await TestClient("c").connect(p.port)
        await c.init([])
        c.close()
    run(main())
    assert p.stop() == 0 and d.stop() == 0
    assert "handshake with directory 127.0.0.1:%d" % d.port in p.log()


@pytest.mark.stack
def test_amp_over_tls(tmp_path):
    """--ssl-cert/--ssl-key: the jmcore client talks AMP over TLS; a plain-TCP client cannot."""
    import asyncio
    import ssl
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=localhost", "-days", "1", "-keyout", str(key), "-out", str(cert)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("openssl CLI not available")
    p = start_daemon(tmp_path, "tls", extra=["--ssl-cert", str(cert), "--ssl-key", str(key)])
    assert "(TLS)" in p.log()

    async def main():
        from jmcore import amp as jamp
        from jmcore import linkauth
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        c = TestClient("c")
        c.cond = asyncio.Condition()
        c.proto = await jamp.connect("127.0.0.1", p.port, c._responders(), ssl=ctx,
                                     commands=linkauth.LINK_COMMANDS)
        await linkauth.authenticate(c.proto, linkauth.read_cookie(p.extra["cookie"]))
        assert (await c.call("JMRequestOffers")) == {"accepted": True}
        await c.wait_for("JMOffers")
        c.close()
        # a plain-text client gets no answer: the TLS server drops it, or it waits in vain
        with pytest.raises((linkauth.LinkAuthError, asyncio.TimeoutError)):
            await asyncio.wait_for(TestClient("plain").connect(p.port), 15)
    run(main())
    from .test_lean import TLS_LIBS, mapped
    assert mapped(p.proc.pid, TLS_LIBS) == []               # TLS without cryptography
    assert p.alive() and p.stop() == 0
    r = jmd("--datadir", str(tmp_path), "--ssl-cert", str(cert))
    assert r.returncode == 2 and "both a certificate and a key" in r.stderr
    r = jmd("--datadir", str(tmp_path), "--ssl-cert", str(cert), "--ssl-key", str(cert))
    assert r.returncode == 2 and "TLS" in r.stderr and "Traceback" not in r.stderr
