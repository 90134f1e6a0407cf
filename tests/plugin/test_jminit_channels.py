"""JMInit completeness: the box our plugin's daemon client puts on the wire carries every channel
key the reference joinmarketd reads without a default (its on_JM_INIT raises KeyError otherwise,
answered `UNKNOWN: Unknown Error`), with the reference's types — for the configs the settings
build (mainnet/signet defaults, IRC opt-in, maker and taker) and for partial configs a caller
hands the client. The box is read off a real socket and decoded as the reference does."""
from __future__ import annotations

import asyncio
import json

import pytest

from devstack.procs import free_port
from electrum_joinmarket.link.client import DaemonClient, DaemonError
from jmcore import amp as jamp
from jmcore import channels as ch
from jmcore import linkauth

# What the reference daemon reads, by channel type (jmdaemon/onionmc.py and irc.py of 0.9.12,
# jmclient/configure.py get_mchannels), with the type the reference client sends.
REFERENCE_ONION_READS = {"type": str, "directory_nodes": str, "regtest_count": str,
                         "socks5_host": str, "socks5_port": int, "tor_control_host": str,
                         "tor_control_port": int, "onion_serving_host": str,
                         "onion_serving_port": int, "hidden_service_dir": str, "serving": bool,
                         "passive": bool, "btcnet": str, "section-name": str}
REFERENCE_IRC_READS = {"host": str, "port": int, "channel": str, "usessl": str, "socks5": str,
                       "socks5_host": str, "socks5_port": int, "btcnet": str}


def reference_reads(cfg: dict) -> list[str]:
    """Problems a reference joinmarketd would hit reading this config."""
    problems = []
    is_onion = str(cfg.get("type", "irc")).lower() == "onion"
    reads = REFERENCE_ONION_READS if is_onion else REFERENCE_IRC_READS
    for key, typ in reads.items():
        if key not in cfg:
            problems.append(f"KeyError: {key!r}")
        elif type(cfg[key]) is not typ:
            problems.append(f"{key} is {type(cfg[key]).__name__}, not {typ.__name__}")
    if cfg.get("btcnet") not in ("mainnet", "testnet", "signet"):
        problems.append(f"btcnet {cfg.get('btcnet')!r}")
    if is_onion:
        if "tor_control_password" not in cfg:          # read by newer reference daemons
            problems.append("KeyError: 'tor_control_password'")
        for d in str(cfg.get("directory_nodes", "")).split(","):
            host, _, port = d.strip().rpartition(":")
            if not host or not port.isdigit():
                problems.append(f"bad directory {d!r}")
    else:
        for key in ("usessl", "socks5"):
            if str(cfg.get(key)).lower() not in ("true", "false"):
                problems.append(f"{key} {cfg.get(key)!r}")
    return problems


class BoxTap(asyncio.Protocol):
    """A daemon stand-in that records every raw AMP box it receives, answers the link
    authentication with real proofs (jmcore.linkauth, a cookie of its own) and everything else
    with accepted=True."""

    def __init__(self, cookie: bytes, server: str, boxes: list):
        self.cookie, self.server, self.boxes = cookie, server, boxes
        self.parser = jamp.BoxParser()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        for box in self.parser.feed(data):
            self.boxes.append(box)
            answer = {b"_answer": box[b"_ask"], b"accepted": b"True"}
            if box.get(b"_command") == linkauth.HELLO.encode():
                nonce = linkauth.new_nonce()
                answer.update({b"version": b"1", b"daemon_nonce": nonce.encode(),
                               b"daemon_proof": linkauth.proof(
                                   self.cookie, "daemon", box[b"client_nonce"].decode(), nonce,
                                   self.server).encode()})
            self.transport.write(jamp.encode_box(answer))


async def capture_jminit(chan_configs, network: str, tmp_path) -> dict:
    """Run DaemonClient.connect against a raw AMP listener; return the JMInit box off the wire,
    decoded as the reference daemon decodes it (JsonEncodable = json.loads of the value)."""
    boxes: list[dict] = []
    cookie_path, cookie = linkauth.write_cookie(str(tmp_path / "daemon"))
    loop = asyncio.get_running_loop()
    port = free_port()
    server = await loop.create_server(
        lambda: BoxTap(cookie, linkauth.server_address("127.0.0.1", port), boxes),
        "127.0.0.1", port)
    client = DaemonClient(network=network, chan_configs=chan_configs, cookie_path=cookie_path)
    try:
        await client.connect("127.0.0.1", port)
    finally:
        client.close()
        server.close()
    box = [b for b in boxes if b.get(b"_command") == b"JMInit"][0]
    return {"network": box[b"network"].decode(), "bcsource": box[b"bcsource"].decode(),
            "chan_configs": json.loads(box[b"chan_configs"])}      # jmbase JsonEncodable


@pytest.mark.parametrize("network,role,irc", [
    ("mainnet", "TAKER", False), ("mainnet", "MAKER", True), ("signet", "TAKER", True),
    ("signet", "MAKER", False)])
def test_jminit_box_has_every_reference_key(network, role, irc, tmp_path):
    """C1"""
    settings = ch.ChannelSettings()
    if irc:
        settings = settings.with_irc_server(ch.HACKINT_IRC)
    configs = ch.build_chan_configs(settings, network, role=role)
    box = asyncio.run(capture_jminit(configs, network, tmp_path))
    assert box["network"] == network
    cfgs = box["chan_configs"]
    assert [c.get("type", "irc") for c in cfgs] == (["irc"] if irc else []) + ["onion"]
    for cfg in cfgs:
        assert reference_reads(cfg) == [], cfg
        assert cfg["btcnet"] == network
    onion = cfgs[-1]
    assert onion["serving"] is (role == "MAKER")
    assert len(onion["directory_nodes"].split(",")) == {"mainnet": 7, "signet": 6}[network]
    assert set(onion["directory_nodes"].split(",")) == set(ch.default_directories(network))


def test_partial_configs_are_completed_before_jminit(tmp_path):
    """What tests and older settings hand the client (no btcnet, our test_mode spelling)."""
    partial = [{"type": "irc", "host": "127.0.0.1", "port": 16667, "channel": "joinmarket-pit",
                "usessl": "false", "socks5": "false"},
               {"type": "onion", "test_mode": True, "directory_nodes": "127.0.0.1:15222"}]
    box = asyncio.run(capture_jminit(partial, "regtest", tmp_path))
    for cfg in box["chan_configs"]:
        assert reference_reads(cfg) == [], cfg
        assert cfg["btcnet"] == "testnet"                      # regtest runs as testnet
    assert box["chan_configs"][1]["regtest_count"] != "0,0"   # the reference's test mode


def test_reference_read_check_can_fail():
    """The checker itself: what the plugin sent before this change is caught."""
    old = {"type": "onion", "directory_nodes": "x" * 56 + ".onion:5222", "serving": False}
    assert "KeyError: 'btcnet'" in reference_reads(old)
    assert "KeyError: 'btcnet'" in reference_reads({"host": "h", "port": 1, "channel": "c",
                                                    "usessl": "false", "socks5": "false",
                                                    "socks5_host": "h", "socks5_port": 1})


def test_no_channels_is_a_clear_error_before_jminit():
    async def main():
        client = DaemonClient(network="testnet", chan_configs=[])
        with pytest.raises(DaemonError, match="setconfig plugins.joinmarket.channels"):
            await client.init()
    asyncio.run(main())
