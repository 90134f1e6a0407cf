"""The daemon reads a client's ``chan_configs`` through the same typed model the plugin builds
them with (``jmcore.channels``, issue 10.3): what one accepts, the other does, with the same
values. No service: the channel objects are built, not run."""
from __future__ import annotations

import pytest

from jmcore.channels import IRCChannelConfig, OnionChannelConfig
from jmdaemon.channels.irc import IRCConfigError, IRCMessageChannel
from jmdaemon.channels.onion import OnionConfigError, OnionMessageChannel
from jmdaemon.server import ChannelConfigError, build_channels

ONION = "a" * 55 + "d.onion:5222"


def test_onion_config_read_through_the_typed_model():
    ref = {"type": "onion", "directory_nodes": ONION + ", " + ONION, "regtest_count": "0,0",
           "socks5_host": "127.0.0.1", "socks5_port": 9150, "tor_control_host": "127.0.0.1",
           "tor_control_port": 9151, "onion_serving_host": "127.0.0.1",
           "onion_serving_port": 0, "hidden_service_dir": "", "serving": "true",
           "passive": "false", "btcnet": "regtest", "section-name": "MESSAGING:onion",
           "welcome_timeout": 5}
    typed = OnionChannelConfig.from_dict(ref, "regtest")
    mc = OnionMessageChannel(ref, network="regtest")
    assert list(mc.directories) == list(typed.directory_nodes) == [ONION]
    assert (mc.network, mc.test_mode, mc.serving, mc.passive) == ("testnet", False, True, False)
    assert (mc.socks5_host, mc.socks5_port) == (typed.tor.socks5_host, 9150)
    assert (mc.tor_control_port, mc.onion_serving_port, mc.welcome_timeout) == (9151, 0, 5.0)


@pytest.mark.parametrize("bad", [
    {"directory_nodes": "example.com:5222"},                         # clearnet over Tor
    {"directory_nodes": "127.0.0.1:5222", "regtest_count": None},   # None is not test mode
    {"directory_nodes": ""},
    {"directory_nodes": ONION, "btcnet": "bogus"},
    {"directory_nodes": ONION, "socks5_port": "x"},
])
def test_onion_config_refused_as_the_plugin_refuses_it(bad):
    cfg = {"type": "onion", **bad}
    with pytest.raises(OnionConfigError):
        OnionMessageChannel(cfg)
    with pytest.raises(ChannelConfigError):
        build_channels([cfg], "mainnet")


def test_onion_test_mode_allows_local_directories():
    mc = OnionMessageChannel({"type": "onion", "directory_nodes": "127.0.0.1:5222",
                              "regtest_count": "1,1"}, network="regtest")
    assert mc.test_mode and list(mc.directories) == ["127.0.0.1:5222"]


def test_irc_config_read_through_the_typed_model():
    ref = {"host": "irc.example.org", "port": "6697", "channel": "joinmarket-pit",
           "usessl": "true", "socks5": "false", "socks5_host": "127.0.0.1", "socks5_port": 9050,
           "btcnet": "signet", "line_rate": 0.5, "password": "pw"}
    typed = IRCChannelConfig.from_dict(ref, "signet")
    mc = IRCMessageChannel(ref, network="signet")
    assert (mc.host, mc.port, mc.usessl, mc.socks5) == (typed.host, 6697, True, False)
    assert mc.channel == "#joinmarket-pit-sig"
    assert (mc.line_rate, mc.password) == (0.5, "pw")


@pytest.mark.parametrize("bad", [
    {"port": 6667},                                                    # no host
    {"host": "irc.example.org", "port": 0},
    {"host": "irc.example.org", "port": 6667, "btcnet": "bogus"},
    {"host": "a" * 56 + ".onion", "port": 6667, "socks5": "false"},   # an onion needs Tor
])
def test_irc_config_refused_as_the_plugin_refuses_it(bad):
    with pytest.raises(IRCConfigError):
        IRCMessageChannel(bad)
    with pytest.raises(ChannelConfigError):
        build_channels([{"type": "irc", **bad}], "mainnet")


def test_no_channels_says_what_to_configure():
    with pytest.raises(ChannelConfigError, match="the daemon has none for it: .*directory"):
        build_channels([], "signet")
    with pytest.raises(ChannelConfigError, match="non-empty list"):
        build_channels([], "bogus")
