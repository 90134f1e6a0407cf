"""The channel-config model (jmcore.channels): default directories per network, the user's
settings (add / remove / replace, IRC opt-in, pinned Tor), and complete configs in the
reference's shape."""
from __future__ import annotations

import json

import pytest

from jmcore import channels as ch

ONION_TYPES = {"type": str, "directory_nodes": str, "regtest_count": str, "socks5_host": str,
               "socks5_port": int, "tor_control_host": str, "tor_control_port": int,
               "onion_serving_host": str, "onion_serving_port": int, "hidden_service_dir": str,
               "serving": bool, "passive": bool, "btcnet": str, "section-name": str}
IRC_TYPES = {"host": str, "port": int, "channel": str, "usessl": str, "socks5": str,
             "socks5_host": str, "socks5_port": int, "btcnet": str}


def check_reference_shape(cfg: dict) -> None:
    """Every key the reference joinmarketd reads without a default, with the reference's type."""
    types = ONION_TYPES if cfg.get("type") == "onion" else IRC_TYPES
    for key, typ in types.items():
        assert key in cfg, f"{key} missing from {cfg}"
        assert type(cfg[key]) is typ, (key, cfg[key])
    assert cfg["btcnet"] in ("mainnet", "testnet", "signet")
    if "usessl" in cfg:
        assert cfg["usessl"] in ("true", "false") and cfg["socks5"] in ("true", "false")
    if cfg.get("type") == "onion":
        assert "tor_control_password" in cfg


def test_default_directories_per_network():
    main = ch.default_directories("mainnet")
    assert len(main) == 7 and len(set(main)) == 7
    assert set(ch.REFERENCE_MAINNET_DIRECTORIES) <= set(main)
    assert set(ch.NG_MAINNET_DIRECTORIES) <= set(main)
    sig = ch.default_directories("signet")
    assert len(sig) == 6
    assert set(sig) == set(ch.REFERENCE_SIGNET_DIRECTORIES) | set(ch.NG_SIGNET_DIRECTORIES)
    assert not set(sig) & set(main)
    for loc in main + sig:
        host, port = ch.parse_location(loc)
        assert ch.is_onion_host(host) and port == 5222
    assert ch.default_directories("testnet") == () == ch.default_directories("regtest")
    assert ch.default_directories("testnet4") == ()


@pytest.mark.parametrize("network,flag", [("testnet", "--testnet"), ("regtest", "--regtest")])
def test_no_defaults_says_what_to_set_and_how(network, flag):
    with pytest.raises(ch.NoDirectoriesError) as e:
        ch.build_chan_configs(ch.ChannelSettings(), network)
    msg = str(e.value)
    assert f"electrum {flag} setconfig plugins.joinmarket.channels" in msg
    assert '"directories"' in msg and "Settings" in msg
    # and what it tells the user to set works
    value = json.loads(msg.split("channels '", 1)[1].split("'", 1)[0]
                       .replace("<56 characters>", "a" * 56))
    cfg = ch.build_chan_configs(ch.ChannelSettings.from_setting(value), network)
    assert cfg[0]["directory_nodes"] == "a" * 56 + ".onion:5222"


@pytest.mark.parametrize("network,wire,n", [("mainnet", "mainnet", 7), ("signet", "signet", 6)])
def test_defaults_build_complete_onion_configs(network, wire, n):
    for role, serving, passive in (("TAKER", False, False), ("MAKER", True, False),
                                   ("PASSIVE", False, True)):
        cfgs = ch.build_chan_configs(ch.ChannelSettings(), network, role=role)
        assert len(cfgs) == 1                                  # IRC is opt-in
        cfg = cfgs[0]
        check_reference_shape(cfg)
        assert cfg["btcnet"] == wire
        assert len(cfg["directory_nodes"].split(",")) == n
        assert cfg["serving"] is serving and cfg["passive"] is passive
        assert cfg["regtest_count"] == "0,0"                  # Tor, never test mode
        assert (cfg["socks5_host"], cfg["socks5_port"]) == ("127.0.0.1", 9050)
        assert cfg["section-name"] == "MESSAGING:onion"


def test_regtest_runs_as_testnet_on_the_wire():
    s = ch.ChannelSettings.from_setting({"test_mode": True, "directories": ["127.0.0.1:5222"]})
    cfg = ch.build_chan_configs(s, "regtest")[0]
    check_reference_shape(cfg)
    assert cfg["btcnet"] == "testnet" and cfg["regtest_count"] != "0,0"
    assert cfg["directory_nodes"] == "127.0.0.1:5222"


def test_clearnet_directory_refused_over_tor():
    with pytest.raises(ch.ChannelConfigError, match="never over the clearnet"):
        ch.ChannelSettings.from_setting({"directories": ["dir.example.org:5222"]})
    with pytest.raises(ch.ChannelConfigError, match="never over the clearnet"):
        ch.ChannelSettings().with_directory_added("10.0.0.1:5222")
    with pytest.raises(ch.ChannelConfigError, match="not host:port"):
        ch.ChannelSettings().with_directory_added("a" * 56 + ".onion")
    with pytest.raises(ch.ChannelConfigError):
        ch.OnionChannelConfig(directory_nodes=("dir.example.org:5222",))


def test_add_remove_replace_and_round_trip():
    onion = "b" * 56 + ".onion:5222"
    first = ch.REFERENCE_MAINNET_DIRECTORIES[0]
    s = ch.ChannelSettings().with_directory_added(onion).with_directory_removed(first)
    eff = s.effective_directories("mainnet")
    assert (onion, "added") in eff and first not in [d for d, _ in eff] and len(eff) == 7
    # added directories only join the defaults of the networks they are added on... all of them
    assert [d for d, _ in s.effective_directories("signet")][-1] == onion
    s2 = ch.ChannelSettings.from_setting(json.dumps(s.to_setting()))
    assert s2 == s
    # re-adding a removed default brings it back; removing an added one forgets it
    back = s.with_directory_added(first).with_directory_removed(onion)
    assert [d for d, _ in back.effective_directories("mainnet")] == \
        list(ch.default_directories("mainnet"))
    assert back.with_default_directories().to_setting() is None
    # replace
    r = s.with_directories([onion])
    assert r.effective_directories("mainnet") == [(onion, "configured")]
    assert r.effective_directories("regtest") == [(onion, "configured")]
    cfg = ch.build_chan_configs(r, "mainnet")[0]
    assert cfg["directory_nodes"] == onion
    # onion off + no IRC: nothing to join
    with pytest.raises(ch.NoDirectoriesError):
        ch.build_chan_configs(ch.ChannelSettings.from_setting({"onion": False}), "mainnet")


def test_irc_is_opt_in_and_complete():
    s = ch.ChannelSettings().with_irc_server(ch.HACKINT_IRC)
    cfgs = ch.build_chan_configs(s, "mainnet")
    assert [c.get("type", "irc") for c in cfgs] == ["irc", "onion"]
    irc = cfgs[0]
    check_reference_shape(irc)
    assert irc["host"].endswith(".onion") and irc["socks5"] == "true" and irc["usessl"] == "false"
    assert ch.ChannelSettings.from_setting(json.dumps(s.to_setting())) == s
    assert s.without_irc_server(ch.HACKINT_IRC.host, 6667).irc == ()
    with pytest.raises(ch.ChannelConfigError, match="needs socks5"):
        ch.IRCChannelConfig(host=ch.HACKINT_IRC.host, port=6667, socks5=False)


def test_pinned_tor_ports_reach_every_channel():
    s = ch.ChannelSettings.from_setting({"socks5": "127.0.0.1:9150", "irc": [
        {"host": "irc.example.org", "port": 6697, "usessl": True, "tor": True}]})
    tor = s.pinned_tor()
    assert tor is not None and tor.control == "127.0.0.1:9151"     # Tor Browser pair
    irc, onion = ch.build_chan_configs(s, "mainnet", role="MAKER")
    assert irc["socks5_port"] == onion["socks5_port"] == 9150
    assert onion["tor_control_port"] == 9151
    with pytest.raises(ch.ChannelConfigError, match="host:port"):
        ch.ChannelSettings.from_setting({"socks5": "9050"})


def test_bad_settings_say_what_is_wrong():
    with pytest.raises(ch.ChannelConfigError, match="not valid JSON"):
        ch.ChannelSettings.from_setting("{directories")
    with pytest.raises(ch.ChannelConfigError, match="unknown key"):
        ch.ChannelSettings.from_setting({"directory": ["x"]})
    with pytest.raises(ch.ChannelConfigError, match="JSON object"):
        ch.ChannelSettings.from_setting("5")


def test_partial_legacy_configs_are_completed():
    legacy = [{"type": "irc", "host": "127.0.0.1", "port": 6667, "channel": "joinmarket-pit",
               "usessl": "false", "socks5": "false", "line_rate": 0.05},
              {"type": "onion", "test_mode": True, "directory_nodes": "127.0.0.1:5222",
               "serving": True, "onion_serving_port": 0, "welcome_timeout": 10}]
    s = ch.ChannelSettings.from_setting(legacy)
    assert s.raw is not None
    irc, onion = ch.build_chan_configs(s, "regtest", role="TAKER")
    check_reference_shape(irc)
    check_reference_shape(onion)
    assert irc["line_rate"] == 0.05 and onion["welcome_timeout"] == 10   # our extensions kept
    assert onion["serving"] is True and onion["onion_serving_port"] == 0  # given values kept
    assert onion["regtest_count"] == "1,1" and onion["btcnet"] == "testnet"
    with pytest.raises(ch.ChannelConfigError, match="at most one onion"):
        ch.complete_configs([legacy[1], legacy[1]], "regtest")
