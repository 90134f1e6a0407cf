"""jmdaemon.tor.control, our Tor control-port client, against a scripted control port on
127.0.0.1 (tests/daemon/torcontrol_scenarios.py, a real reactor in a process of its own): each
authentication method, the commands a maker and a directory send, and what tor could answer that
a real one here does not — a control port that cannot prove it knows the cookie, refusals,
oversized, garbled and unsolicited replies, silence. Every failure is a TorControlError with a
message for the user, never an unhandled exception. The real tor: tests/tor/test_control_port.py."""
from __future__ import annotations

import pytest

from .scenarios import run_scenario

SERVICE = "a" * 52 + "bcdd"
MAKER_ADD = "ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=5222,127.0.0.1:4321"


def scenario(name, tmp_path):
    return run_scenario("torcontrol_scenarios", name, str(tmp_path), not_loaded="txtorcon_loaded")


def test_null_auth_maker_service_then_del_onion(tmp_path):
    out, _ = scenario("null_auth", tmp_path)
    assert out == {"hostname": SERVICE + ".onion", "private_key": None, "received": [
        "PROTOCOLINFO 1", "AUTHENTICATE", "SETEVENTS HS_DESC", MAKER_ADD, "SETEVENTS",
        "DEL_ONION " + SERVICE]}


def test_safecookie(tmp_path):
    out, _ = scenario("safecookie", tmp_path)
    assert out["hostname"] == SERVICE + ".onion"
    assert [c.split()[0] for c in out["received"]] == [
        "PROTOCOLINFO", "AUTHCHALLENGE", "AUTHENTICATE", "SETEVENTS", "ADD_ONION", "SETEVENTS",
        "DEL_ONION"]


def test_safecookie_server_that_cannot_prove_the_cookie_gets_no_proof(tmp_path):
    out, _ = scenario("safecookie_lying_server", tmp_path)
    assert "refused us" in out["error"] and "SAFECOOKIE server hash mismatch" in out["error"]
    assert [c.split()[0] for c in out["received"]] == ["PROTOCOLINFO", "AUTHCHALLENGE"]


def test_cookie(tmp_path):
    out, _ = scenario("cookie", tmp_path)
    assert out["hostname"] == SERVICE + ".onion"
    assert out["received"][1] == "AUTHENTICATE " + bytes(range(100, 132)).hex()


def test_unreadable_cookie_without_password(tmp_path):
    out, _ = scenario("cookie_unreadable", tmp_path)
    assert "refused us: cannot read its cookie file" in out["error"]
    assert "debian-tor" in out["error"] and out["received"] == ["PROTOCOLINFO 1"]


def test_unreadable_cookie_falls_back_to_the_password(tmp_path):
    out, _ = scenario("cookie_unreadable_password", tmp_path)
    assert out["hostname"] == SERVICE + ".onion" and out["received"][1] == "AUTHENTICATE 7077"


def test_password(tmp_path):
    out, _ = scenario("password", tmp_path)
    assert out["received"][1] == "AUTHENTICATE " + b"s3cret horse".hex()
    assert out["hostname"] == SERVICE + ".onion"


@pytest.mark.parametrize("name,detail", [
    ("password_wrong", "515 Authentication failed: Password did not match"),
    ("password_missing", "it wants a password (HashedControlPassword) and none is configured")])
def test_password_refused(tmp_path, name, detail):
    out, _ = scenario(name, tmp_path)
    assert "Tor's control port at 127.0.0.1:" in out["error"] and "refused us" in out["error"]
    assert detail in out["error"] and "tor_control_password" in out["error"]


def test_add_onion_refused(tmp_path):
    out, _ = scenario("add_onion_refused", tmp_path)
    assert out["error"].startswith("Tor refused to publish the onion service (ADD_ONION): 512 "
                                   "Invalid VIRTPORT/TARGET. Check")


def test_directory_key_is_saved_0600_and_reused(tmp_path):
    out, _ = scenario("persistent_key", tmp_path)
    assert out["received"][3] == "ADD_ONION NEW:ED25519-V3 Port=5222,127.0.0.1:4321"
    assert out["key_file_mode"] == "0o600" and out["again"] == out["hostname"]
    assert out["received"][8] == "ADD_ONION %s Port=5222,127.0.0.1:4321" % out["private_key"]
    data = (tmp_path / "hs" / "hs_ed25519_secret_key").read_bytes()
    assert data == b"== ed25519v1-secret: type0 ==\x00\x00\x00" + bytes(range(64))


def test_every_descriptor_upload_failed(tmp_path):
    out, _ = scenario("upload_failed", tmp_path)
    assert out["error"] == "tor could not upload the onion service's descriptor to $AAAA~r1"


@pytest.mark.parametrize("name,detail", [
    ("oversized_line", "a reply line over 8192 bytes"),
    ("too_many_lines", "a reply of over 1000 lines"),
    ("too_many_bytes", "a reply over 262144 bytes"),
    ("garbled", "not a control-port reply line: 'HTTP/1.0 400 Bad Request'"),
    ("mixed_codes", "status 550 inside a 250 reply"),
    ("bad_service_id", "an ADD_ONION reply without a v3 ServiceID"),
])
def test_replies_outside_the_protocol_or_its_bounds(tmp_path, name, detail):
    out, err = scenario(name, tmp_path)
    assert out["error"].startswith("what answers at 127.0.0.1:") and detail in out["error"]
    assert "not Tor's control port" in out["error"] and "ControlPort" in out["error"]
    assert "broke the protocol (%s" % detail.split(":")[0] in err          # the log line


def test_unsolicited_reply_closes_the_connection(tmp_path):
    out, err = scenario("unsolicited", tmp_path)
    assert out["closed_after"] is True and "a reply to no command" in err
    assert "onion service %s.onion is gone" % SERVICE in err


def test_data_block_in_a_reply(tmp_path):
    out, _ = scenario("data_block", tmp_path)
    assert out["hostname"] == SERVICE + ".onion"


@pytest.mark.parametrize("name,detail", [
    ("no_answer", "no answer to PROTOCOLINFO within 1 s"),
    ("closes", "the control connection closed")])
def test_silent_or_closing_control_port(tmp_path, name, detail):
    out, _ = scenario(name, tmp_path)
    assert "none answers at 127.0.0.1:" in out["error"] and detail in out["error"]
    assert "ControlPort 9051" in out["error"]
