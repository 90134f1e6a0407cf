"""A minimal *Twisted* AMP peer built from jmcore.commands, for cross-implementation tests.

Used two ways by tests/unit/test_jmcore_amp.py:

* imported: ``TW_COMMANDS`` (Twisted ``amp.Command`` classes with Twisted's own argument
  types plus re-implementations of jmbase's ``JsonEncodable`` and ``BigUnicode``) to compare
  bytes serialized by Twisted with bytes serialized by ``jmcore.amp``;
* run as a script (``jmcore_twisted_peer.py LOGFILE``): a Twisted AMP server on 127.0.0.1
  (free port, printed on stdout as ``{"port": n}``) that writes every command it decodes as one
  JSON line to LOGFILE and answers some commands by calling the
  client back (see ``Peer``).  It stops after ``JMShutdown`` or after 60 s.

The jmbase argument types are re-written here (not imported) from the reference's documented
behaviour: ``JsonEncodable`` = ``json.dumps(obj).encode("ascii")`` / ``json.loads``;
``BigUnicode`` = UTF-8 split in 65 535-byte chunks under ``name.0``, ``name.1``, ... (no key for
the empty string), read back up to the first missing or empty chunk.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
from typing import Callable

from twisted.protocols import amp

if __package__ in (None, ""):
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from jmcore.commands import COMMANDS


class JsonEncodable(amp.String):
    def toString(self, inObject):
        return super().toString(json.dumps(inObject).encode("ascii"))

    def fromString(self, inString):
        return super().fromString(json.loads(inString))


class BigUnicode(amp.Argument):
    def toBox(self, name, strings, objects, proto):
        data = self.retrieve(objects, amp._wireNameToPythonIdentifier(name), proto).encode("utf-8")
        size = amp.MAX_VALUE_LENGTH
        for i in range(0, len(data), size):
            strings[b"%s.%d" % (name, i // size)] = data[i:i + size]

    def fromBox(self, name, strings, objects, proto):
        chunks = itertools.takewhile(
            bool, (strings.get(b"%s.%d" % (name, i)) for i in itertools.count()))
        objects[amp._wireNameToPythonIdentifier(name)] = b"".join(chunks).decode("utf-8")


def _argument(type_name: str) -> amp.Argument:
    factories: dict[str, Callable[[], amp.Argument]] = {
        "Unicode": amp.Unicode,
        "Integer": amp.Integer,
        "Boolean": amp.Boolean,
        "String": amp.String,
        "JsonEncodable": JsonEncodable,
        "BigUnicode": BigUnicode,
        "ListOf(Unicode)": lambda: amp.ListOf(amp.Unicode()),
    }
    return factories[type_name]()


ERROR_CLASSES: dict[str, type] = {}


def _error_class(name: str) -> type:
    if name not in ERROR_CLASSES:
        ERROR_CLASSES[name] = type(name, (Exception,), {})
    return ERROR_CLASSES[name]


def _make_command(spec) -> type:
    return type(spec.name, (amp.Command,), {
        "commandName": spec.wire_name,
        "arguments": [(a.wire_name, _argument(a.type)) for a in spec.arguments],
        "response": [(a.wire_name, _argument(a.type)) for a in spec.response],
        "errors": {_error_class(k): v.encode("utf-8") for k, v in spec.errors.items()},
    })


TW_COMMANDS: dict[str, type] = {name: _make_command(s) for name, s in COMMANDS.items()}


def big_orderbook() -> str:
    """A deterministic BigUnicode payload > 2 chunks, with multi-byte UTF-8 characters that
    straddle the 65 535-byte chunk boundaries."""
    rows = [{"counterparty": "J5ñick%05d" % i, "oid": i, "ordertype": "sw0reloffer",
             "minsize": 27300, "maxsize": 10**8 + i, "txfee": 0, "cjfee": "0.00002",
             "note": "€✓" * (i % 7)} for i in range(1500)]
    return json.dumps(rows, ensure_ascii=False)


def _jsonable(obj):
    if isinstance(obj, bytes):
        return {"__bytes__": obj.hex()}
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


_LOG = None  # records go to a file (argv[1]) so a full stdout pipe can never block the reactor


def emit(record: dict) -> None:
    out = _LOG or sys.stdout
    out.write(json.dumps(_jsonable(record)) + "\n")
    out.flush()


class Peer(amp.AMP):
    """Answers every schema command with accepted=True after printing it; some commands also
    call the client back so the test sees Twisted-encoded daemon->client traffic."""

    def locateResponder(self, name):
        cmd = TW_COMMANDS.get(name.decode("ascii", "replace"))
        if cmd is None:
            return None

        def handler(**kw):
            return self.handle(cmd.__name__, kw)
        return self._wrapWithSerialization(handler, cmd)

    def call(self, name, **kw):
        d = self.callRemote(TW_COMMANDS[name], **kw)
        d.addCallbacks(lambda r: emit({"callback": name, "response": r}),
                       lambda f: emit({"callback": name, "error": repr(f.value)}))
        return d

    def handle(self, name, kw):
        from twisted.internet import defer, reactor
        emit({"cmd": name, "args": kw})
        if name == "JMInit" and kw["bcsource"] == "notready":
            raise ERROR_CLASSES["DaemonNotReady"]("daemon is not ready yet")
        if name == "JMMsgSignature" and kw["nick"] == "hang":
            return defer.Deferred()  # never answered: the client sees the connection drop
        later = []
        if name == "JMInit":
            later.append(lambda: self.call("JMInitProto", nick_hash_length=10, nick_max_encoded=14,
                                           joinmarket_nick_header="J", joinmarket_version=5))
        elif name == "JMStartMC" and kw["nick"] == "probe-unknown":
            def probe():
                d = self.callRemoteString(b"JMBogusCommand", foo=b"bar")
                d.addCallbacks(lambda r: emit({"probe": "answer", "box": dict(r)}),
                               lambda f: emit({"probe": "error", "type": type(f.value).__name__,
                                               "args": [a.decode() if isinstance(a, bytes) else a
                                                        for a in f.value.args]}))
            later.append(probe)
        elif name == "JMRequestOffers":
            later.append(lambda: self.call("JMOffers", orderbook=big_orderbook(), fidelitybonds=""))
        elif name == "JMFill":
            later.append(lambda: self.call("JMFillResponse", success=True,
                                           ioauth_data=kw["filled_offers"]))
        elif name == "JMMakeTx":
            later.append(lambda: self.call("JMTXReceived", nick=kw["nick_list"][0], tx=kw["tx"],
                                           offer={"nicks": kw["nick_list"]}))
        elif name == "JMTXSigs":
            for sig in kw["sigs"]:
                later.append(lambda sig=sig: self.call("JMSigReceived", nick=kw["nick"], sig=sig))
        elif name == "JMPushTx":
            later.append(lambda: self.call("JMTXBroadcast", tx=kw["tx"]))
        elif name == "JMShutdown":
            later.append(lambda: reactor.callLater(0.2, reactor.stop))
        for fn in later:
            reactor.callLater(0, fn)
        return {"accepted": True}


def main() -> None:
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory

    global _LOG
    port = reactor.listenTCP(0, Factory.forProtocol(Peer),  # type: ignore[arg-type]
                             interface="127.0.0.1")         # (AMP is a Protocol; the stub wants more)
    sys.stdout.write(json.dumps({"port": port.getHost().port}) + "\n")  # type: ignore[attr-defined]
    sys.stdout.flush()
    if len(sys.argv) > 1:
        _LOG = open(sys.argv[1], "w", encoding="utf-8")
    reactor.callLater(60, reactor.stop)
    reactor.run()
    emit({"stopped": True})


if __name__ == "__main__":
    main()
