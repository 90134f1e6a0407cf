"""The jmcore asyncio AMP client against the Twisted daemon: wire equality of every command's
encoding, every coinjoin command exercised in both directions, clean errors for unknown commands."""
import base64
import json

import pytest
from twisted.protocols import amp as tamp

from devstack.daemons import TestClient, run, start_daemon, start_directory
from jmcore import amp as jamp
from jmcore.commands import COINJOIN_COMMANDS, COMMANDS
from jmcore.errors import AMPRemoteError
from jmdaemon.commands import COMMAND_CLASSES
from tests.vectors import VECTORS as VEC

from .conversation import full_conversation, onion_config

SAMPLES = {
    "Unicode": "J5abc\u00e9",
    "Integer": 27300,
    "Boolean": True,
    "String": bytes(range(256)),
    "BigUnicode": "x" * 70000 + "\u00e9",
    "JsonEncodable": {"a": [1, 2, {"b": None}], "c": "d"},
    "ListOf(Unicode)": ["c2lnMQ==", "c2lnMg==", ""],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_twisted_and_jmcore_encode_every_command_identically(name):
    spec = COMMANDS[name]
    values = {a.name: SAMPLES[a.type] for a in spec.arguments}
    tbox = COMMAND_CLASSES[name].makeArguments(dict(values), None)
    jbox = jamp.encode_arguments(spec.arguments, values)
    assert dict(tbox) == dict(jbox)
    # and each side decodes the other's encoding to the same values
    assert COMMAND_CLASSES[name].parseArguments(tamp.AmpBox(jbox), None) == values
    assert jamp.decode_arguments(spec.arguments, dict(tbox)) == values


def test_jminit_box_matches_vector():
    v = json.loads((VEC / "amp_commands.json").read_text())["wire_examples"]
    values = {"bcsource": "regtest", "network": "testnet",
              "chan_configs": [{"type": "onion", "directory_nodes": "127.0.0.1:8081",
                                "regtest_count": "1, 1"}],
              "minmakers": 2, "maker_timeout_sec": 10, "dust_threshold": 27300,
              "blacklist_location": "cmtdata/commitmentlist"}
    box = COMMAND_CLASSES["JMInit"].makeArguments(values, None)
    box[b"_ask"] = b"1"
    box[b"_command"] = b"JMInit"
    assert box.serialize().hex() == v["JMInit_request_hex"]
    assert tamp.AmpBox(_answer=b"1", accepted=b"True").serialize().hex() == v["accepted_answer_hex"]


@pytest.mark.stack
def test_every_coinjoin_command_both_ways(tmp_path):
    """A maker with a fidelity bond and a taker run the whole protocol; together the two jmcore
    clients call every client->daemon coinjoin command and receive every daemon->client one."""
    d = start_directory(tmp_path, "directory")
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")
    proof = base64.b64encode(b"\x30" + bytes(251)).decode()
    called = set()

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        for c in (taker, maker):
            orig = c.proto.call_remote

            async def spy(command, _orig=orig, **kw):
                called.add(command)
                return await _orig(command, **kw)
            c.proto.call_remote = spy
        await full_conversation(taker, maker, onion_config(d), onion_config(d, serving=True),
                                bond_proof=proof)
        r = await maker.call("JMAnnounceOffers", to_announce=[{"oid": 2, "ordertype": "sw0absoffer",
                             "minsize": 30000, "maxsize": 40000, "txfee": 0, "cjfee": 100}],
                             to_cancel=[0], offerlist=[])
        assert r == {"accepted": True}
        for c in (taker, maker):
            assert (await c.call("JMShutdown")) == {"accepted": True}
        received = {n for c in (taker, maker) for n, _ in c.events}
        taker.close()
        maker.close()
        return received
    received = run(main())
    c2d = {n for n in COINJOIN_COMMANDS if COMMANDS[n].direction == "client->daemon"}
    d2c = {n for n in COINJOIN_COMMANDS if COMMANDS[n].direction == "daemon->client"}
    assert len(c2d) == 14 and len(d2c) == 12
    assert c2d <= called, c2d - called
    assert d2c <= received, d2c - received
    for p in (tproc, mproc, d):
        assert p.stop() == 0
        assert "Traceback" not in p.log()


@pytest.mark.stack
def test_unknown_and_unimplemented_commands_get_clean_amp_errors(tmp_path):
    dproc = start_daemon(tmp_path, "daemon")

    async def main():
        c = await TestClient("c").connect(dproc.port)
        with pytest.raises(AMPRemoteError) as e:
            await c.proto.call_remote_raw("NoSuchCommand", {b"x": b"y"})
        assert e.value.code == "UNHANDLED"
        with pytest.raises(AMPRemoteError) as e:      # SNICKER/BIP78: in the schema, not served
            await c.call("SNICKERReceiverInit", netconfig={})
        assert e.value.code == "UNHANDLED"
        with pytest.raises(AMPRemoteError):            # undecodable arguments
            await c.proto.call_remote_raw("JMInit", {b"bcsource": b"x", b"network": b"y",
                                                     b"chan_configs": b"{not json",
                                                     b"minmakers": b"zz"})
        # out-of-state and bad-config calls are refused, not crashed on
        assert (await c.call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False)) \
            == {"accepted": False}
        assert (await c.call("JMMakeTx", nick_list=["J5x"], tx=b"\x00")) == {"accepted": False}
        r = await c.call("JMInit", bcsource="x", network="regtest", chan_configs=[{"type": "carrier-pigeon"}],
                         minmakers=1, maker_timeout_sec=1, dust_threshold=1, blacklist_location="b")
        assert r == {"accepted": False}
        # still serving
        assert (await c.call("JMRequestOffers")) == {"accepted": True}
        await c.wait_for("JMOffers")
        c.close()
    run(main())
    assert dproc.alive()
    assert dproc.stop() == 0
