"""jmdaemon.tls: TLS on the standard library's ``ssl`` (ssl.SSLObject + MemoryBIO under Twisted),
over real sockets in a real reactor (tests/daemon/tls_scenarios.py, one process per scenario):
our client and server, the standard library's blocking TLS as the other side, and peers that speak
no TLS. Every failure ends as a clean connection loss with a TLS error, never an unhandled
exception, and no scenario loads pyOpenSSL or cryptography."""
from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.daemons import ROOT

from .scenarios import run_scenario

CLOSED = "ConnectionDone: Connection was closed cleanly."


@pytest.fixture(scope="module")
def certdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    for stem, extra in (("", []), ("other-", []), ("enc-", ["-passout", "pass:horse"])):
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-subj", "/CN=localhost",
                            "-days", "1", "-keyout", str(d / f"{stem}key.pem"),
                            "-out", str(d / f"{stem}cert.pem")] + (extra or ["-nodes"]),
                           capture_output=True)
        if r.returncode != 0:
            pytest.skip("openssl CLI not available")
    return d


def scenario(name, certdir):
    return run_scenario("tls_scenarios", name, str(certdir), not_loaded="openssl_loaded",
                        timeout=90)


def test_both_sides_ours_writes_before_handshake_and_3_mib_each_way(certdir):
    out, _ = scenario("ours_both_ways", certdir)
    assert out == {"server_got": True, "client_got": True,
                   "client_reason": CLOSED, "server_reason": CLOSED}   # close_notify both ways


def test_standard_library_client_verifies_our_certificate_and_close_notify_or_not(certdir):
    out, _ = scenario("stdlib_client", certdir)
    assert out["echo_ok"] is True and out["version"] in ("TLSv1.2", "TLSv1.3")
    assert out["clean_reason"] == CLOSED
    assert out["unclean_reason"].startswith("ConnectionLost") and "close_notify" in \
        out["unclean_reason"]


def test_our_client_against_standard_library_server(certdir):
    out, _ = scenario("stdlib_server", certdir)
    assert out == {"server_got": "early", "client_got": "answer:early", "client_reason": CLOSED}


def test_peer_without_tls_loses_the_connection_and_server_goes_on(certdir):
    out, err = scenario("garbage_to_server", certdir)
    assert out["bad_reason"].startswith("TLSError: TLS handshake with 127.0.0.1:")
    assert (out["good_got"], out["good_reason"]) == ("ping", CLOSED)
    assert "TLS handshake with 127.0.0.1:" in err           # the log line


def test_server_answering_garbage(certdir):
    out, _ = scenario("garbage_from_server", certdir)
    assert out["client_reason"].startswith("TLSError: TLS handshake with") and out["client_got"] == 0


def test_garbage_record_after_handshake(certdir):
    out, _ = scenario("garbage_after_handshake", certdir)
    assert (out["echoed"], out["server_got"]) == ("hi", "hi")
    assert out["server_reason"].startswith("TLSError: TLS read with")


def test_silent_peer_handshake_times_out(certdir):
    out, _ = scenario("handshake_timeout", certdir)
    assert "no TLS handshake within 0.5 s" in out["server_reason"] and out["peer_read"] == 0


def test_peer_closing_mid_handshake(certdir):
    out, _ = scenario("closed_mid_handshake", certdir)
    assert out["server_reason"] == "TLSError: the connection closed during the TLS handshake"


def test_writes_before_the_handshake_are_bounded(certdir):
    out, _ = scenario("pending_bound", certdir)
    assert "bytes written before the handshake" in out["client_reason"], out


def test_producer_api_reaches_tcp_backpressure(certdir):
    out, _ = scenario("backpressure", certdir)
    assert out["paused"] >= 1 and out["paused_at"] <= 1 << 20, out      # paused, not buffered
    assert out["resumed"] >= 1 and out["client_read"] == 8 << 20 and out["limit_hit"] is False


@pytest.mark.parametrize("cert,key,message", [
    ("cert.pem", "other-key.pem", "does not belong to the certificate"),
    ("cert.pem", "enc-key.pem", "is encrypted"),
    ("cert.pem", "cert.pem", "must be a PEM certificate and its PEM private key"),
    ("missing.pem", "key.pem", "cannot read"),
])
def test_server_context_says_what_is_wrong(certdir, cert, key, message):
    from jmdaemon.tls import TLSConfigError, server_context
    with pytest.raises(TLSConfigError, match=message):
        server_context(str(certdir / key), str(certdir / cert))


def test_cli_reports_a_key_of_another_certificate(certdir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "jmdaemon", "--datadir", str(tmp_path), "--port", "0",
                        "--ssl-cert", str(certdir / "cert.pem"), "--ssl-key",
                        str(certdir / "other-key.pem")],
                       capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot load TLS certificate/key" in r.stderr and "does not belong" in r.stderr
