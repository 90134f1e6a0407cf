"""jmcore.amp: box codec, argument codecs, asyncio protocol, and interoperability with
Twisted's own AMP (byte-level in-process, and over TCP against a Twisted subprocess)."""
from __future__ import annotations

import asyncio
import json
import os
import pathlib
import select
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.protocols import amp as tamp

from devstack.procs import wait_until
from jmcore import amp
from jmcore.commands import COINJOIN_COMMANDS, COMMANDS, spec
from jmcore.errors import (
    AMPConnectionLost,
    AMPDecodeError,
    AMPEncodeError,
    AMPRemoteError,
    BoxParseError,
    UnknownCommand,
)
from tests.unit.jmcore_twisted_peer import TW_COMMANDS, big_orderbook

HERE = pathlib.Path(__file__).resolve().parent
from tests.vectors import VECTORS  # noqa: E402

ROOT = HERE.parents[1]

FUZZ_EXAMPLES = 3000


@pytest.fixture(scope="module")
def wire():
    return json.loads((VECTORS / "amp_commands.json").read_text())["wire_examples"]


# --------------------------------------------------------------------------------------------
# sample values per type (deliberately awkward: non-ASCII, empty items, all byte values)
# --------------------------------------------------------------------------------------------

def sample(type_name: str, name: str):
    return {
        "Unicode": f"hé ✓ {name}",
        "Integer": 27300 if name != "errorcode" else -5,
        "Boolean": True,
        "String": bytes(range(256)) * 3,
        "JsonEncodable": {"name": name, "list": [1, "é", None, True], "x": 1.5},
        "ListOf(Unicode)": ["J5abc", "", "ünïcode" * 3],
        "BigUnicode": "ü✓" * 30000 + name,  # 150 000+ bytes: three chunks
    }[type_name]


def sample_args(name: str) -> dict:
    return {a.name: sample(a.type, a.name) for a in spec(name).arguments}


def run(coro, timeout: float = 30):
    """Run a coroutine on a fresh loop; any exception that reaches the loop's exception handler
    (i.e. escaped a callback) fails the test."""
    escaped = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: escaped.append(ctx))
        return await asyncio.wait_for(coro, timeout)

    result = asyncio.run(main())
    assert not escaped, f"exceptions escaped into the event loop: {escaped}"
    return result


# --------------------------------------------------------------------------------------------
# wire vectors (byte-for-byte)
# --------------------------------------------------------------------------------------------

def test_jminit_request_vector_roundtrip(wire):
    raw = bytes.fromhex(wire["JMInit_request_hex"])
    boxes = amp.BoxParser().feed(raw)
    assert len(boxes) == 1
    box = boxes[0]
    assert box[amp.COMMAND] == b"JMInit" and box[amp.ASK] == b"1"
    args = amp.decode_arguments(spec("JMInit").arguments, box)
    assert args == {
        "bcsource": "regtest", "network": "testnet",
        "chan_configs": [{"type": "onion", "directory_nodes": "127.0.0.1:8081",
                          "regtest_count": "1, 1"}],
        "minmakers": 2, "maker_timeout_sec": 10, "dust_threshold": 27300,
        "blacklist_location": "cmtdata/commitmentlist",
    }
    assert amp.encode_box(amp.request_box(spec("JMInit"), b"1", args)) == raw
    assert repr(raw) == wire["JMInit_request_repr"]


def test_accepted_answer_vector(wire):
    raw = bytes.fromhex(wire["accepted_answer_hex"])
    assert amp.encode_box(amp.answer_box(spec("JMInit"), b"1", {"accepted": True})) == raw
    (box,) = amp.BoxParser().feed(raw)
    assert amp.decode_arguments(spec("JMInit").response, box) == {"accepted": True}


def test_listof_vector(wire):
    raw = bytes.fromhex(wire["JMTXSigs_sigs_value_hex (ListOf(Unicode))"])
    assert amp.decode_list_of_unicode(raw) == ["c2lnMQ==", "c2lnMg=="]
    assert amp.encode_list_of_unicode(["c2lnMQ==", "c2lnMg=="]) == raw


def test_keys_are_sorted_like_twisted():
    box = {b"zeta": b"1", b"_ask": b"2", b"Alpha": b"3", b"a": b""}
    data = amp.encode_box(box)
    assert data == tamp.AmpBox(box).serialize()
    assert data.index(b"Alpha") < data.index(b"_ask") < data.index(b"a\x00\x00") < data.index(b"zeta")


# --------------------------------------------------------------------------------------------
# byte-level comparison with Twisted for every command of the schema
# --------------------------------------------------------------------------------------------

class _FakeProto:
    """Twisted's Argument.toBox/fromBox want a protocol object; ours use none of it."""


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_serializes_like_twisted(name):
    values = sample_args(name)
    tw = TW_COMMANDS[name]
    tw_box = tw.makeArguments(dict(values), _FakeProto())
    tw_box[b"_command"] = spec(name).wire_name
    tw_box[b"_ask"] = b"a"
    ours = amp.encode_box(amp.request_box(spec(name), b"a", values))
    assert ours == tamp.AmpBox(tw_box).serialize()
    # and Twisted parses our bytes back to the same values
    (parsed,) = amp.BoxParser().feed(ours)
    assert tw.parseArguments(tamp.AmpBox(parsed), _FakeProto()) == values
    assert amp.decode_arguments(spec(name).arguments, parsed) == values
    # the answer box too
    ans = amp.encode_box(amp.answer_box(spec(name), b"a", {"accepted": False}))
    tw_ans = tw.makeResponse({"accepted": False}, _FakeProto())
    tw_ans[b"_answer"] = b"a"
    assert ans == tamp.AmpBox(tw_ans).serialize()


_texts = st.text(max_size=300)


@settings(max_examples=300, deadline=None)
@given(s=_texts, n=st.integers(min_value=-(10**30), max_value=10**30), b=st.booleans(),
       raw=st.binary(max_size=300), items=st.lists(st.text(max_size=40), max_size=20),
       obj=st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=10),
                        lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=5), ch,
                                                                               max_size=4),
                        max_leaves=10))
def test_codecs_equal_twisted_arguments(s, n, b, raw, items, obj):
    pairs = [("Unicode", s, tamp.Unicode()), ("Integer", n, tamp.Integer()),
             ("Boolean", b, tamp.Boolean()), ("String", raw, tamp.String()),
             ("ListOf(Unicode)", items, tamp.ListOf(tamp.Unicode())),
             ("JsonEncodable", obj, TW_COMMANDS["JMInit"].arguments[2][1])]
    for type_name, value, targ in pairs:
        ours = amp.encode_value(type_name, "k", value)
        assert ours == {b"k": targ.toString(value)}
        assert amp.decode_value(type_name, "k", ours) == targ.fromString(ours[b"k"]) == value


# --------------------------------------------------------------------------------------------
# argument codecs: edge cases and rejections
# --------------------------------------------------------------------------------------------

def test_big_unicode_chunking_exact_keys():
    assert amp.encode_value("BigUnicode", "ob", "") == {}
    assert amp.decode_value("BigUnicode", "ob", {}) == ""
    one = "a" * amp.MAX_VALUE_LENGTH
    assert amp.encode_value("BigUnicode", "ob", one) == {b"ob.0": one.encode()}
    two = "a" * (amp.MAX_VALUE_LENGTH + 1)
    assert amp.encode_value("BigUnicode", "ob", two) == {b"ob.0": b"a" * 65535, b"ob.1": b"a"}
    # a 2-byte character straddling the boundary is split at the byte level and re-joined
    s = "a" * 65534 + "é" + "b" * 10
    enc = amp.encode_value("BigUnicode", "ob", s)
    assert sorted(enc) == [b"ob.0", b"ob.1"] and enc[b"ob.0"].endswith(b"\xc3")
    assert amp.decode_value("BigUnicode", "ob", enc) == s
    # reading stops at the first missing or empty chunk (jmbase's takewhile(bool, ...))
    assert amp.decode_value("BigUnicode", "ob", {b"ob.0": b"x", b"ob.2": b"z"}) == "x"
    assert amp.decode_value("BigUnicode", "ob", {b"ob.0": b"x", b"ob.1": b"", b"ob.2": b"z"}) == "x"
    # the bare key is not part of the encoding
    assert amp.decode_value("BigUnicode", "ob", {b"ob": b"x"}) == ""


def test_big_value_over_limit_in_box_and_twisted_agrees():
    big = big_orderbook()
    assert len(big.encode()) > 2 * 65535
    values = {"orderbook": big, "fidelitybonds": ""}
    box = amp.request_box(spec("JMOffers"), b"7", values)
    assert all(len(v) <= 65535 for v in box.values())
    assert b"fidelitybonds.0" not in box
    tw_box = TW_COMMANDS["JMOffers"].makeArguments(dict(values), _FakeProto())
    assert {k: v for k, v in box.items() if not k.startswith(b"_")} == dict(tw_box)


@pytest.mark.parametrize("type_name,raw", [
    ("Boolean", b"true"), ("Boolean", b"1"), ("Boolean", b""),
    ("Integer", b""), ("Integer", b"1.0"), ("Integer", b"+1"), ("Integer", b" 1"),
    ("Integer", b"0x10"), ("Integer", b"1" * 5000),
    ("Unicode", b"\xff\xfe"), ("Unicode", b"\xed\xa0\x80"),
    ("JsonEncodable", b"{"), ("JsonEncodable", b"\xff"), ("JsonEncodable", b"[" * 100000),
    ("ListOf(Unicode)", b"\x00"), ("ListOf(Unicode)", b"\x00\x05ab"),
    ("ListOf(Unicode)", b"\x00\x02\xff\xff"),
])
def test_bad_values_raise_decode_error(type_name, raw):
    with pytest.raises(AMPDecodeError):
        amp.decode_value(type_name, "k", {b"k": raw})


@pytest.mark.parametrize("type_name", ["Unicode", "Integer", "Boolean", "String",
                                       "JsonEncodable", "ListOf(Unicode)"])
def test_missing_argument_is_decode_error(type_name):
    with pytest.raises(AMPDecodeError):
        amp.decode_value(type_name, "k", {b"other": b"1"})


@pytest.mark.parametrize("type_name,value", [
    ("Unicode", b"bytes"), ("Unicode", "\ud800"), ("Integer", True), ("Integer", 1.5),
    ("Integer", "5"), ("Boolean", 1), ("Boolean", "True"), ("String", "text"),
    ("JsonEncodable", {1, 2}), ("JsonEncodable", object()), ("ListOf(Unicode)", "abc"),
    ("ListOf(Unicode)", [1]), ("BigUnicode", b"x"), ("Unicode", "x" * 65536),
    ("String", b"x" * 65536), ("ListOf(Unicode)", ["x" * 40000, "y" * 40000]),
])
def test_bad_python_values_raise_encode_error(type_name, value):
    with pytest.raises(AMPEncodeError):
        amp.encode_value(type_name, "k", value)


def test_encode_arguments_checks_names():
    with pytest.raises(AMPEncodeError):
        amp.encode_arguments(spec("JMStartMC").arguments, {})
    with pytest.raises(AMPEncodeError):
        amp.encode_arguments(spec("JMStartMC").arguments, {"nick": "J5x", "extra": 1})


@pytest.mark.parametrize("box", [
    {b"k" * 256: b"v"}, {b"": b"v"}, {b"k": b"v" * 65536}, {"k": b"v"}, {b"k": "v"},
    {b"k": b"v", "j": b"w"},
])
def test_encode_box_rejects(box):
    with pytest.raises(AMPEncodeError):
        amp.encode_box(box)


# --------------------------------------------------------------------------------------------
# BoxParser
# --------------------------------------------------------------------------------------------

def test_parser_incremental_byte_by_byte(wire):
    raw = bytes.fromhex(wire["JMInit_request_hex"]) + bytes.fromhex(wire["accepted_answer_hex"])
    p = amp.BoxParser()
    out = []
    for i in range(len(raw)):
        out.extend(p.feed(raw[i:i + 1]))
    assert out == amp.BoxParser().feed(raw)
    assert len(out) == 2 and p.buffered == 0


def test_parser_empty_box_duplicate_keys_and_partial():
    p = amp.BoxParser()
    assert p.feed(b"\x00\x00") == [{}]
    dup = b"\x00\x01k\x00\x01a\x00\x01k\x00\x01b\x00\x00"
    assert p.feed(dup) == [{b"k": b"b"}]  # later value wins, as in Twisted
    assert p.feed(b"\x00\x01k\x00\x05ab") == [] and p.buffered == 7
    assert p.feed(b"cde\x00\x00") == [{b"k": b"abcde"}]


def test_parser_rejects_long_key_and_stays_failed():
    p = amp.BoxParser()
    with pytest.raises(BoxParseError):
        p.feed(b"\x01\x00" + b"k" * 256)
    assert isinstance(p.error, BoxParseError)
    with pytest.raises(BoxParseError):
        p.feed(b"\x00\x00")
    # boxes completed before the garbage are delivered; the error comes with the next feed
    p = amp.BoxParser()
    good = amp.encode_box({b"k": b"v"})
    assert p.feed(good + b"\x01\x00") == [{b"k": b"v"}]
    assert isinstance(p.error, BoxParseError)
    with pytest.raises(BoxParseError):
        p.feed(good)


def test_parser_box_size_limit():
    p = amp.BoxParser(max_box_size=1000)
    ok = amp.encode_box({b"k": b"v" * 900})
    assert p.feed(ok) == [{b"k": b"v" * 900}]
    with pytest.raises(BoxParseError):
        p.feed(amp.encode_box({b"k": b"v" * 600, b"l": b"w" * 600}))
    # the limit is checked before the whole value has arrived
    p2 = amp.BoxParser(max_box_size=1000)
    with pytest.raises(BoxParseError):
        p2.feed(b"\x00\x01k\xff\xff" + b"x" * 10)


@settings(max_examples=200, deadline=None)
@given(boxes=st.lists(st.dictionaries(st.binary(min_size=1, max_size=255), st.binary(max_size=700),
                                      max_size=6), min_size=1, max_size=5),
       cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=8))
def test_parser_random_splits(boxes, cuts):
    data = b"".join(amp.encode_box(b) for b in boxes)
    for b in boxes:
        assert amp.encode_box(b) == tamp.AmpBox(b).serialize()
    p = amp.BoxParser()
    out = []
    prev = 0
    for c in sorted(set(min(c, len(data)) for c in cuts)) + [len(data)]:
        out.extend(p.feed(data[prev:c]))
        prev = c
    assert out == boxes


def _mutations():
    valid = st.dictionaries(st.binary(min_size=1, max_size=20), st.binary(max_size=50), max_size=4)
    return st.one_of(
        st.binary(max_size=800),
        st.tuples(st.lists(valid, max_size=3), st.integers(0, 400), st.binary(max_size=8)).map(
            lambda t: _splice(b"".join(amp.encode_box(b) for b in t[0]), t[1], t[2])),
    )


def _splice(data: bytes, at: int, junk: bytes) -> bytes:
    at = min(at, len(data))
    return data[:at] + junk + data[at + len(junk):]


def test_fuzz_box_parser_only_raises_its_own_error():
    """Random and corrupted streams, fed whole and in pieces: only BoxParseError may come out."""
    ran = 0

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data=_mutations(), step=st.integers(min_value=1, max_value=64),
           limit=st.sampled_from([amp.DEFAULT_MAX_BOX_SIZE, 64, 300]))
    def fuzz(data, step, limit):
        nonlocal ran
        ran += 1
        for chunks in ([data], [data[i:i + step] for i in range(0, len(data), step)]):
            p = amp.BoxParser(max_box_size=limit)
            try:
                for ch in chunks:
                    for box in p.feed(ch):
                        assert isinstance(box, dict)
                        assert all(isinstance(k, bytes) and 0 < len(k) <= 255 for k in box)
                        assert all(isinstance(v, bytes) and len(v) <= 65535 for v in box.values())
                        # whatever parsed must also decode cleanly or raise AMPDecodeError
                        for a in spec("JMFill").arguments + spec("JMOffers").arguments \
                                + spec("JMMakeTx").arguments + spec("JMSetup").arguments:
                            try:
                                amp.decode_value(a.type, a.name, box)
                            except AMPDecodeError:
                                pass
            except BoxParseError:
                pass

    fuzz()
    print(f"hypothesis: BoxParser fuzz ran {ran} cases (max_examples={FUZZ_EXAMPLES})")
    assert ran >= FUZZ_EXAMPLES


# --------------------------------------------------------------------------------------------
# asyncio client <-> asyncio server over TCP
# --------------------------------------------------------------------------------------------

class Recorder:
    """Responders for every command that record the decoded arguments."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.events: dict[str, asyncio.Event] = {}

    def event(self, name):
        return self.events.setdefault(name, asyncio.Event())

    def responders(self, names=None):
        def make(name):
            def responder(**kw):
                self.calls.append((name, kw))
                self.event(name).set()
                return {"accepted": True}
            return responder
        return {n: make(n) for n in (names or COMMANDS)}

    async def wait(self, name, count=1):
        while sum(1 for n, _ in self.calls if n == name) < count:
            self.event(name).clear()
            await self.event(name).wait()
        return [kw for n, kw in self.calls if n == name]


async def _pair(client_responders=None, server_responders=None):
    """An asyncio AMP server on a free 127.0.0.1 port and a client connected to it."""
    server_protos: list[amp.AMPProtocol] = []

    def factory(proto):
        server_protos.append(proto)
        return server_responders(proto) if callable(server_responders) else (server_responders or {})

    server = await amp.serve("127.0.0.1", 0, factory)
    port = server.sockets[0].getsockname()[1]
    client = await amp.connect("127.0.0.1", port, client_responders)
    await wait_until(lambda: server_protos and server_protos[0].connected, 10,
                     "the server side of the connection", interval=0.01)
    return server, server_protos[0], client


def test_every_coinjoin_command_roundtrips_over_tcp():
    async def scenario():
        client_rec, server_rec = Recorder(), Recorder()
        server, sproto, client = await _pair(client_rec.responders(), server_rec.responders())
        try:
            for name in COINJOIN_COMMANDS:
                s = spec(name)
                values = sample_args(name)
                sender, receiver = (client, server_rec) if s.direction == "client->daemon" \
                    else (sproto, client_rec)
                assert await sender.call_remote(name, **values) == {"accepted": True}
                assert receiver.calls[-1] == (name, values)
            assert len(client_rec.calls) + len(server_rec.calls) == 26
        finally:
            client.close()
            await client.wait_closed()
            server.close()
            await server.wait_closed()
    run(scenario())


def test_errors_unknown_commands_and_bad_input_over_tcp():
    class DaemonNotReady(Exception):
        pass

    async def slow(**kw):
        await asyncio.sleep(0.05)
        return {"accepted": False}

    def server_responders(proto):
        def raise_(exc):
            def r(**kw):
                raise exc
            return r
        return {
            "JMInit": raise_(DaemonNotReady("not yet")),
            "JMStartMC": raise_(AMPRemoteError("CUSTOM", "custom ✓")),
            "JMSetup": raise_(ValueError("boom")),
            "JMShutdown": lambda: {"wrong": 1},
            "JMRequestOffers": lambda: "not a dict",
            "JMPushTx": slow,
            "JMMsgSignature": lambda **kw: {"accepted": True},
        }

    async def scenario():
        server, sproto, client = await _pair(None, server_responders)
        try:
            init = sample_args("JMInit")
            with pytest.raises(AMPRemoteError) as ei:
                await client.call_remote("JMInit", **init)
            assert (ei.value.code, ei.value.description) == ("daemon is not ready", "not yet")
            with pytest.raises(AMPRemoteError) as ei:
                await client.call_remote("JMStartMC", nick="x")
            assert (ei.value.code, ei.value.description) == ("CUSTOM", "custom ✓")
            for name in ("JMSetup", "JMShutdown", "JMRequestOffers"):
                with pytest.raises(AMPRemoteError) as ei:
                    await client.call_remote(name, **sample_args(name))
                assert ei.value.code == amp.UNKNOWN_ERROR_CODE
            # async responder
            assert await client.call_remote("JMPushTx", nick="n", tx=b"\x00") == {"accepted": False}
            # a schema command without a responder, and a command outside the schema
            with pytest.raises(AMPRemoteError) as ei:
                await client.call_remote("JMFill", **sample_args("JMFill"))
            assert ei.value.code == amp.UNHANDLED_ERROR_CODE
            with pytest.raises(AMPRemoteError) as ei:
                await client.call_remote_raw("JMBogusCommand", {b"foo": b"bar"})
            assert (ei.value.code, ei.value.description) == (
                "UNHANDLED", "Unhandled Command: b'JMBogusCommand'")
            with pytest.raises(UnknownCommand):
                await client.call_remote("JMBogusCommand")
            with pytest.raises(AMPEncodeError):
                await client.call_remote("JMMsgSignature", nick="n")  # missing args: local error
            # undecodable arguments are answered with an error, the connection survives
            with pytest.raises(AMPRemoteError) as ei:
                await client.call_remote_raw("JMMsgSignature", {b"nick": b"\xff", b"cmd": b"c",
                                                                b"msg_to_return": b"m",
                                                                b"hostid": b"h"})
            assert ei.value.code == amp.UNKNOWN_ERROR_CODE
            # stray answers/errors/boxes are dropped, nothing escapes
            client.send_raw_box({amp.ANSWER: b"999", b"accepted": b"True"})
            client.send_raw_box({amp.ERROR: b"998", amp.ERROR_CODE: b"X"})
            client.send_raw_box({b"random": b"box"})
            client.send_raw_box({amp.COMMAND: b"JMMsgSignature", b"nick": b"n"})  # no _ask
            ok = await client.call_remote("JMMsgSignature", nick="n", cmd="c", msg_to_return="m",
                                          hostid="h")
            assert ok == {"accepted": True}
            # a bad answer (undecodable response) fails only that call
            raw = await client.call_remote_raw("JMMsgSignature", amp.encode_arguments(
                spec("JMMsgSignature").arguments,
                dict(nick="n", cmd="c", msg_to_return="m", hostid="h")))
            assert raw[b"accepted"] == b"True" and amp.ANSWER in raw
        finally:
            client.close()
            server.close()
            await server.wait_closed()
    run(scenario())


def test_connection_loss_fails_pending_calls():
    never = None
    started, finished = [], []

    async def hang(**kw):
        started.append(1)
        await never
        finished.append(1)

    async def scenario():
        nonlocal never
        never = asyncio.get_running_loop().create_future()
        server, sproto, client = await _pair(None, {"JMPushTx": hang})
        try:
            call = asyncio.ensure_future(client.call_remote("JMPushTx", nick="n", tx=b""))
            await wait_until(lambda: started, 5, "the server to take the call")   # barrier
            assert not call.done()
            sproto.close()
            with pytest.raises(AMPConnectionLost):
                await call
            await client.wait_closed()
            with pytest.raises(AMPConnectionLost):
                await client.call_remote("JMPushTx", nick="n", tx=b"")
            never.set_result(None)  # the orphaned responder finishes; its answer is dropped
            await wait_until(lambda: finished, 5, "the orphaned responder to finish")
        finally:
            server.close()
            await server.wait_closed()
    run(scenario())


def test_cancelled_call_is_forgotten():
    async def scenario():
        gate = asyncio.get_running_loop().create_future()

        async def slow(**kw):
            await gate
            return {"accepted": True}

        server, sproto, client = await _pair(None, {"JMPushTx": slow})
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.call_remote("JMPushTx", nick="n", tx=b""), 0.05)
            assert client._pending == {}
            gate.set_result(None)
            # barrier: a second call on the same connection is answered after the late answer of
            # the first, which must have been dropped quietly (the connection stays usable)
            assert await client.call_remote("JMPushTx", nick="n", tx=b"") == {"accepted": True}
            assert client.connected and client._pending == {}
        finally:
            client.close()
            server.close()
            await server.wait_closed()
    run(scenario())


@pytest.mark.parametrize("garbage", [
    b"\x01\x00" + b"k" * 300,                               # key longer than 255
    amp.encode_box({b"k": b"v"})[:-2] + b"\x03\x00" + b"x" * 800,
])
def test_framing_garbage_closes_connection_cleanly(garbage):
    async def scenario():
        rec = Recorder()
        server, sproto, client = await _pair(None, rec.responders())
        try:
            reader, writer = None, None
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(amp.encode_box({amp.COMMAND: b"JMStartMC", amp.ASK: b"1",
                                         b"nick": b"before"}) + garbage)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
            (answer,) = amp.BoxParser().feed(data)
            assert answer == {amp.ANSWER: b"1", b"accepted": b"True"}
            assert rec.calls == [("JMStartMC", {"nick": "before"})]
            writer.close()
            # the other connection is unaffected
            assert await client.call_remote("JMStartMC", nick="after") == {"accepted": True}
        finally:
            client.close()
            server.close()
            await server.wait_closed()
    run(scenario())


def test_big_unicode_over_tcp_and_ordering_of_sync_responders():
    async def scenario():
        rec = Recorder()
        server, sproto, client = await _pair(rec.responders(), rec.responders())
        try:
            big = big_orderbook()
            calls = [sproto.call_remote("JMOffers", orderbook=big + str(i), fidelitybonds="é" * i)
                     for i in range(5)]
            assert await asyncio.gather(*calls) == [{"accepted": True}] * 5
            got = [kw for n, kw in rec.calls if n == "JMOffers"]
            assert got == [{"orderbook": big + str(i), "fidelitybonds": "é" * i} for i in range(5)]
        finally:
            client.close()
            server.close()
            await server.wait_closed()
    run(scenario())


# --------------------------------------------------------------------------------------------
# cross-implementation: jmcore asyncio client <-> Twisted amp.AMP server (subprocess)
# --------------------------------------------------------------------------------------------

@pytest.fixture
def twisted_peer(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = tmp_path / "peer.jsonl"
    proc = subprocess.Popen([sys.executable, str(HERE / "jmcore_twisted_peer.py"), str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else b""
        if not line:
            proc.kill()
            raise AssertionError(f"twisted peer did not start: {proc.stderr.read().decode()}")
        yield proc, json.loads(line)["port"], log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _unbytes(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__bytes__"}:
            return bytes.fromhex(obj["__bytes__"])
        return {k: _unbytes(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unbytes(v) for v in obj]
    return obj


def test_against_twisted_amp_server(twisted_peer):
    proc, port, log = twisted_peer
    sent: list[tuple[str, dict]] = []
    big_c2d = "Ω" * 50000 + "end"  # 100 003 bytes of UTF-8: two chunks

    async def scenario():
        rec = Recorder()
        client = await amp.connect("127.0.0.1", port, rec.responders())

        async def call(name, **kw):
            sent.append((name, kw))
            return await client.call_remote(name, **kw)

        init = sample_args("JMInit")
        assert await call("JMInit", **init) == {"accepted": True}
        assert (await rec.wait("JMInitProto"))[0] == dict(
            nick_hash_length=10, nick_max_encoded=14, joinmarket_nick_header="J",
            joinmarket_version=5)
        with pytest.raises(AMPRemoteError) as ei:
            await call("JMInit", **dict(init, bcsource="notready"))
        assert (ei.value.code, ei.value.description) == ("daemon is not ready",
                                                         "daemon is not ready yet")
        assert await call("JMStartMC", nick="probe-unknown") == {"accepted": True}
        assert await call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False) == \
            {"accepted": True}
        # daemon -> client BigUnicode (3 chunks) encoded by Twisted
        await call("JMRequestOffers")
        offers = (await rec.wait("JMOffers"))[0]
        assert offers == {"orderbook": big_orderbook(), "fidelitybonds": ""}
        filled = {"J5maker": {"oid": 0, "ordertype": "sw0reloffer", "cjfee": "0.00002"}}
        await call("JMFill", amount=5000000, commitment="P" + "ab" * 32,
                   revelation="txid:0|P|P2|s|e", filled_offers=filled)
        assert (await rec.wait("JMFillResponse"))[0] == {"success": True, "ioauth_data": filled}
        # client -> daemon ListOf(Unicode) and String; echoed back by Twisted
        nicks = ["J5first", "", "J5ünï"]
        tx = bytes(range(256)) * 4
        await call("JMMakeTx", nick_list=nicks, tx=tx)
        assert (await rec.wait("JMTXReceived"))[0] == {"nick": "J5first", "tx": tx,
                                                       "offer": {"nicks": nicks}}
        sigs = ["c2lnMQ==", "c2lnMg==", "c2lnMw=="]
        await call("JMTXSigs", nick="J5maker", sigs=sigs)
        got = await rec.wait("JMSigReceived", 3)
        assert got == [{"nick": "J5maker", "sig": s} for s in sigs]
        await call("JMPushTx", nick="J5maker", tx=tx)
        assert (await rec.wait("JMTXBroadcast"))[0] == {"tx": tx}
        # client -> daemon BigUnicode
        await call("BIP78SenderOriginalPSBT", body=big_c2d, params={"v": 1})
        await call("SNICKERProposerPostProposals", proposals="", server="s")
        # a call Twisted never answers fails when the connection drops
        hanging = asyncio.ensure_future(client.call_remote(
            "JMMsgSignature", nick="hang", cmd="c", msg_to_return="m", hostid="h"))
        await wait_until(lambda: client._pending, 5, "the hanging call to be sent")   # barrier
        assert await call("JMShutdown") == {"accepted": True}
        with pytest.raises(AMPConnectionLost):
            await hanging
        await client.wait_closed()

    run(scenario(), timeout=60)
    out, err = proc.communicate(timeout=30)
    records = [_unbytes(json.loads(line)) for line in log.read_text("utf-8").splitlines()]
    received = [(r["cmd"], r["args"]) for r in records if "cmd" in r]
    # Twisted decoded every client->daemon command to exactly what we sent
    # (the hanging JMMsgSignature was received too, between JMSNICKER... and JMShutdown)
    expected = sent[:-1] + [("JMMsgSignature", dict(nick="hang", cmd="c", msg_to_return="m",
                                                    hostid="h")), sent[-1]]
    assert received == expected, err.decode()[-2000:]
    # our client answered Twisted's unknown command with Twisted's UNHANDLED error
    probe = [r for r in records if "probe" in r]
    assert probe == [{"probe": "error", "type": "UnhandledCommand",
                      "args": ["UNHANDLED", "Unhandled Command: b'JMBogusCommand'"]}]
    # and every callback Twisted made got accepted=True from our responders
    callbacks = [r for r in records if "callback" in r]
    assert len(callbacks) == 8 and all(r.get("response") == {"accepted": True} for r in callbacks)
    assert records[-1] == {"stopped": True}


class _FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.data = bytearray()
        self.closed = False

    def write(self, data):
        self.data += data

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True


def test_fuzz_protocol_data_received_never_raises():
    """Random and corrupted byte streams into a live AMPProtocol (all commands handled):
    nothing may raise or escape to the loop, and everything written back is valid AMP."""
    ran = 0
    loop = asyncio.new_event_loop()
    escaped = []
    loop.set_exception_handler(lambda lp, ctx: escaped.append(ctx))

    def commands_stream():
        box = st.fixed_dictionaries(
            {amp.COMMAND: st.sampled_from([n.encode() for n in list(COMMANDS)[:30]] + [b"X"])},
            optional={amp.ASK: st.binary(min_size=1, max_size=4),
                      b"nick": st.binary(max_size=8), b"tx": st.binary(max_size=8),
                      b"amount": st.binary(max_size=4), b"sigs": st.binary(max_size=8),
                      b"orderbook.0": st.binary(max_size=8), b"initdata": st.binary(max_size=8),
                      amp.ANSWER: st.binary(max_size=3), amp.ERROR: st.binary(max_size=3)})
        return st.lists(box, max_size=4).map(lambda bs: b"".join(amp.encode_box(b) for b in bs))

    @settings(max_examples=1000, deadline=None)
    @given(data=st.one_of(st.binary(max_size=400), commands_stream()),
           step=st.integers(min_value=1, max_value=50))
    def fuzz(data, step):
        nonlocal ran
        ran += 1

        async def one():
            rec = Recorder()
            proto = amp.AMPProtocol(rec.responders())
            tr = _FakeTransport()
            proto.connection_made(tr)
            for i in range(0, len(data), step):
                proto.data_received(data[i:i + step])
            proto.connection_lost(None)
            p = amp.BoxParser()
            for box in p.feed(bytes(tr.data)):
                assert (amp.ANSWER in box) != (amp.ERROR in box)
            assert p.buffered == 0

        loop.run_until_complete(one())

    try:
        fuzz()
    finally:
        loop.close()
    print(f"hypothesis: AMPProtocol fuzz ran {ran} cases")
    assert ran >= 1000 and not escaped


def test_responders_must_name_schema_commands():
    with pytest.raises(UnknownCommand):
        amp.AMPProtocol({"JMNoSuch": lambda: {"accepted": True}})
    proto = amp.AMPProtocol()
    with pytest.raises(UnknownCommand):
        proto.register("jminit", lambda **kw: {"accepted": True})
    proto.register("JMInit", lambda **kw: {"accepted": True})
    proto.unregister("JMInit")
    assert proto.responders == {} and not proto.connected
