"""Tor control-port scenarios for tests/daemon/test_tor_control.py: our client
(jmdaemon.tor.control.publish_onion) against a small scripted control port on 127.0.0.1, in a
process of its own with a real reactor: ``python -m tests.daemon.torcontrol_scenarios NAME DIR``
prints one JSON line (the outcome, and every command the control port received). The real tor is
in tests/tor/test_control_port.py; this one answers what a real tor would not: wrong proofs,
errors, oversized and garbled replies."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sys

from jmdaemon.tls import import_twisted

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
import_twisted()
from twisted.internet import defer, protocol, reactor  # noqa: E402
from twisted.logger import globalLogPublisher  # noqa: E402
from twisted.protocols.basic import LineOnlyReceiver  # noqa: E402

from jmdaemon.tor import control  # noqa: E402

WORK = sys.argv[2] if len(sys.argv) > 2 else "."
ERRORS: list[str] = []
SERVICE_ID = "a" * 52 + "bcdd"
KEY_BLOB = "ED25519-V3:" + __import__("base64").b64encode(bytes(range(64))).decode()
COOKIE = bytes(range(100, 132))
# control-spec 3.24, written out here (not taken from the module under test)
SERVER_TO_CONTROLLER = b"Tor safe cookie authentication server-to-controller hash"
CONTROLLER_TO_SERVER = b"Tor safe cookie authentication controller-to-server hash"


def _observe(event):
    if event.get("isError") or event.get("log_failure") is not None:
        f = event.get("log_failure")
        ERRORS.append(f.getTraceback() if f is not None else str(event.get("log_format")))


globalLogPublisher.addObserver(_observe)  # type: ignore[arg-type]


def uploaded(service_id=SERVICE_ID):
    return ["650 HS_DESC UPLOAD %s UNKNOWN $AAAA~relay1 descid" % service_id,
            "650 HS_DESC UPLOAD %s UNKNOWN $BBBB~relay2 descid" % service_id,
            "650 HS_DESC UPLOADED %s UNKNOWN $AAAA~relay1" % service_id]


class FakeTor(LineOnlyReceiver):
    """Answers each command with ``script[verb](line)`` (a list of lines, or bytes sent as
    they are); records the commands."""
    delimiter = b"\r\n"
    MAX_LENGTH = 100000

    def lineReceived(self, line):
        text = line.decode()
        self.factory.received.append(text)
        verb = text.split(" ", 1)[0]
        answer = self.factory.script.get(verb, lambda _: ["510 Unrecognized command"])(text)
        if answer is None:
            return
        if isinstance(answer, bytes):
            self.transport.write(answer)
            return
        for out in answer:
            if out == "CLOSE":
                self.transport.loseConnection()
                return
            self.sendLine(out.encode())


class FakeTorFactory(protocol.Factory):
    protocol = FakeTor

    def __init__(self, script):
        self.script, self.received = script, []


def protocolinfo(methods, cookie_file=None):
    auth = "250-AUTH METHODS=%s" % methods
    if cookie_file:
        auth += ' COOKIEFILE="%s"' % cookie_file.replace("\\", "\\\\").replace('"', '\\"')
    return lambda _: ["250-PROTOCOLINFO 1", auth, '250-VERSION Tor="0.4.8.16"', "250 OK"]


def ok(_):
    return ["250 OK"]


def add_onion_ok(line):
    out = ["650 HS_DESC REQUESTED xyz NO_AUTH $CCCC~x descid"]      # an event before the reply
    out += ["250-ServiceID=%s" % SERVICE_ID]
    if "NEW:" in line and "DiscardPK" not in line:
        out += ["250-PrivateKey=%s" % KEY_BLOB]
    return out + ["250 OK"] + uploaded()


def base_script(**over):
    script = {"PROTOCOLINFO": protocolinfo("NULL"), "AUTHENTICATE": ok, "SETEVENTS": ok,
              "ADD_ONION": add_onion_ok, "DEL_ONION": ok, "GETINFO": ok}
    script.update(over)
    return script


def cookie_file():
    path = os.path.join(WORK, "control_auth_cookie")
    with open(path, "wb") as f:
        f.write(COOKIE)
    return path


def safecookie_script(lie=False):
    state = {}

    def challenge(line):
        client_nonce = bytes.fromhex(line.split()[2])
        server_nonce = os.urandom(32)
        msg = COOKIE + client_nonce + server_nonce
        server_hash = hmac.new(SERVER_TO_CONTROLLER, msg, hashlib.sha256).digest()
        if lie:
            server_hash = bytes(32)
        state["expect"] = hmac.new(CONTROLLER_TO_SERVER, msg, hashlib.sha256).hexdigest()
        return ["250 AUTHCHALLENGE SERVERHASH=%s SERVERNONCE=%s"
                % (server_hash.hex().upper(), server_nonce.hex().upper())]

    def authenticate(line):
        if line.split()[1:] == [state.get("expect")]:
            return ["250 OK"]
        return ["515 Authentication failed: Safe cookie response did not match expected value.",
                "CLOSE"]
    return base_script(PROTOCOLINFO=protocolinfo("COOKIE,SAFECOOKIE", cookie_file()),
                       AUTHCHALLENGE=challenge, AUTHENTICATE=authenticate)


def password_script(password):
    def authenticate(line):
        if line == "AUTHENTICATE " + password.encode().hex():
            return ["250 OK"]
        return ["515 Authentication failed: Password did not match HashedControlPassword value "
                "from configuration", "CLOSE"]
    return base_script(PROTOCOLINFO=protocolinfo("HASHEDPASSWORD"), AUTHENTICATE=authenticate)


# name -> (script, publish_onion keyword arguments, what to do with the service)
def scenarios():
    return {
        "null_auth": (base_script(), {}, "remove"),
        "safecookie": (safecookie_script(), {}, "remove"),
        "safecookie_lying_server": (safecookie_script(lie=True), {}, None),
        "cookie": (base_script(PROTOCOLINFO=protocolinfo("COOKIE", cookie_file()),
                               AUTHENTICATE=lambda line: ["250 OK"] if line.split()[1:] ==
                               [COOKIE.hex()] else ["515 bad cookie"]), {}, None),
        "cookie_unreadable": (base_script(PROTOCOLINFO=protocolinfo(
            "COOKIE,SAFECOOKIE", os.path.join(WORK, "no-such-cookie"))), {}, None),
        "cookie_unreadable_password": (dict(password_script("pw"), PROTOCOLINFO=protocolinfo(
            "COOKIE,SAFECOOKIE,HASHEDPASSWORD", os.path.join(WORK, "no-such-cookie"))),
            {"password": "pw"}, None),
        "password": (password_script("s3cret horse"), {"password": "s3cret horse"}, None),
        "password_wrong": (password_script("s3cret horse"), {"password": "wrong"}, None),
        "password_missing": (password_script("s3cret horse"), {}, None),
        "add_onion_refused": (base_script(ADD_ONION=lambda _: [
            "512 Invalid VIRTPORT/TARGET"]), {}, None),
        "persistent_key": (base_script(), {"hs_dir": os.path.join(WORK, "hs")}, "again"),
        "upload_failed": (base_script(ADD_ONION=lambda _: [
            "250-ServiceID=%s" % SERVICE_ID, "250 OK",
            "650 HS_DESC UPLOAD %s UNKNOWN $AAAA~r1 d" % SERVICE_ID,
            "650 HS_DESC FAILED %s UNKNOWN $AAAA~r1 REASON=UPLOAD_REJECTED" % SERVICE_ID]),
            {}, None),
        "oversized_line": (base_script(PROTOCOLINFO=lambda _: [
            "250-PROTOCOLINFO 1", "250-" + "A" * 10000, "250 OK"]), {}, None),
        "too_many_lines": (base_script(PROTOCOLINFO=lambda _: [
            "250-X=%d" % i for i in range(1500)] + ["250 OK"]), {}, None),
        "too_many_bytes": (base_script(PROTOCOLINFO=lambda _: [
            "250+DATA="] + ["x" * 4000 for _ in range(80)] + [".", "250 OK"]), {}, None),
        "garbled": (base_script(PROTOCOLINFO=lambda _: b"HTTP/1.0 400 Bad Request\r\n\r\n"),
                    {}, None),
        "mixed_codes": (base_script(PROTOCOLINFO=lambda _: [
            "250-PROTOCOLINFO 1", "550 OK"]), {}, None),
        "unsolicited": (base_script(SETEVENTS=lambda line: ["250 OK"] if "HS_DESC" in line
                                    else ["250 OK", "250 OK"]), {}, "wait"),
        "bad_service_id": (base_script(ADD_ONION=lambda _: [
            "250-ServiceID=../../etc", "250 OK"]), {}, None),
        "data_block": (base_script(PROTOCOLINFO=lambda _: [
            "250+EXTRA=", "..dotted", "plain", ".", "250-PROTOCOLINFO 1",
            "250-AUTH METHODS=NULL", "250 OK"]), {}, "remove"),
        "no_answer": (base_script(PROTOCOLINFO=lambda _: None), {"timeout": 1.0}, None),
        "closes": (base_script(PROTOCOLINFO=lambda _: ["CLOSE"]), {}, None),
    }


@defer.inlineCallbacks
def run(name):
    script, kw, then = scenarios()[name]
    factory = FakeTorFactory(script)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    result = {}
    try:
        service = yield defer.ensureDeferred(control.publish_onion(
            reactor, "127.0.0.1", port.getHost().port, "127.0.0.1", 4321, **kw))
        result["hostname"] = service.hostname
        result["private_key"] = service.private_key
        if then == "remove":
            yield service.remove()
        elif then == "again":
            path = os.path.join(kw["hs_dir"], control.KEY_FILE)
            result["key_file_mode"] = oct(os.stat(path).st_mode & 0o777)
            service.control.close()
            again = yield defer.ensureDeferred(control.publish_onion(
                reactor, "127.0.0.1", port.getHost().port, "127.0.0.1", 4321, **kw))
            result["again"] = again.hostname
            again.control.close()
        elif then == "wait":
            yield __import__("twisted.internet.task", fromlist=["x"]).deferLater(
                reactor, 0.3, lambda: None)
            result["closed_after"] = service.control.closed is not None
        else:
            service.control.close()
    except control.TorControlError as exc:
        result["error"] = str(exc)
    result["received"] = factory.received
    yield port.stopListening()
    return result


def main():
    result = {}

    def go():
        d = run(sys.argv[1])
        d.addCallbacks(result.update, lambda f: result.update(failure=f.getTraceback()))
        d.addBoth(lambda _: reactor.callLater(0.2, reactor.stop))
    reactor.callWhenRunning(go)
    reactor.callLater(30, lambda: (result.setdefault("failure", "watchdog"), reactor.stop()))
    reactor.run()
    result["errors"] = ERRORS
    result["txtorcon_loaded"] = "txtorcon" in sys.modules or "cryptography" in sys.modules
    print(json.dumps(result))


if __name__ == "__main__":
    main()
