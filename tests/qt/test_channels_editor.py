"""Issue 14.13: the channel editor (presets per network over jmcore.channels.ChannelSettings)
instead of raw JSON. Every edit is checked against what is stored and against the JMInit channel
configs the daemon would get (build_chan_configs), not against the widget's own text."""
from __future__ import annotations

import json

import pytest

from jmcore.channels import HACKINT_IRC, ChannelSettings, build_chan_configs, default_directories

pytestmark = pytest.mark.qt

ONION = "a" * 56 + ".onion:5222"


@pytest.fixture
def editor(qapp, qtbot):
    from electrum_joinmarket.gui.qt.channels_editor import ChannelsEditor

    def make(setting=None, network="mainnet"):
        ed = ChannelsEditor(setting, network)
        qtbot.addWidget(ed)
        return ed
    return make


def _rows(ed):
    return [ed.directories.item(i).text() for i in range(ed.directories.count())]


def _onion_dirs(setting, network):
    cfgs = build_chan_configs(ChannelSettings.from_setting(setting), network)
    return [c["directory_nodes"] for c in cfgs if c.get("type") == "onion"]


def test_mainnet_defaults_remove_one_add_one(editor):
    ed = editor()
    defaults = default_directories("mainnet")
    assert len(defaults) == 7 and ed.directories.count() == 7
    assert ed.preset.currentData() == "defaults" and ed.setting_value() is None
    assert all(r.endswith("(default)") for r in _rows(ed))
    assert ed.summary.text() == "Will use: 7 directory node(s) over Tor"
    ed.directories.setCurrentRow(0)
    ed.remove_button.click()
    assert json.loads(ed.setting_value()) == {"remove_directories": [defaults[0]]}
    assert _rows(ed)[-1] == f"{defaults[0]}   (default, removed)"
    ed.new_directory.setText(ONION)
    ed.add_button.click()
    stored = ed.setting_value()
    assert json.loads(stored) == {"add_directories": [ONION], "remove_directories": [defaults[0]]}
    assert _onion_dirs(stored, "mainnet") == [",".join(list(defaults[1:]) + [ONION])]
    assert ed.summary.text() == "Will use: 7 directory node(s) over Tor"


def test_presets_only_listed_and_irc_only(editor):
    ed = editor(network="signet")
    signet = default_directories("signet")
    ed.preset.setCurrentIndex(ed.preset.findData("only"))
    assert json.loads(ed.setting_value()) == {"directories": list(signet)}
    ed.directories.setCurrentRow(0)
    ed.remove_button.click()
    assert json.loads(ed.setting_value()) == {"directories": list(signet[1:])}
    ed.preset.setCurrentIndex(ed.preset.findData("none"))
    assert json.loads(ed.setting_value()) == {"onion": False}
    assert ed.directories.count() == 0
    assert ed.summary.text().startswith("No channel for signet")
    ed.hackint.setChecked(True)                               # IRC on
    stored = ed.setting_value()
    (irc,) = build_chan_configs(ChannelSettings.from_setting(stored), "signet")
    assert (irc["host"], irc["port"], irc["socks5"]) == (HACKINT_IRC.host, HACKINT_IRC.port, "true")
    ed.hackint.setChecked(False)                              # and off
    assert json.loads(ed.setting_value()) == {"onion": False}
    ed.preset.setCurrentIndex(ed.preset.findData("defaults"))
    assert ed.setting_value() is None


def test_regtest_has_no_defaults_and_says_so_test_mode_directory(editor):
    ed = editor(network="regtest")
    assert ed.directories.count() == 0
    assert ed.summary.text().startswith("No channel for regtest: add a directory node")
    ed.new_directory.setText("127.0.0.1:5222")              # plain TCP: refused over Tor
    ed.add_button.click()
    assert ed.setting_value() is None and "127.0.0.1" in ed.summary.text()
    ed.test_mode.setChecked(True)
    ed.new_directory.setText("127.0.0.1:5222")
    ed.add_button.click()
    stored = ed.setting_value()
    assert json.loads(stored) == {"add_directories": ["127.0.0.1:5222"], "test_mode": True}
    assert _onion_dirs(stored, "regtest") == ["127.0.0.1:5222"]
    assert ed.summary.text() == "Will use: 1 directory node(s) over plain TCP (test)"


def test_custom_irc_server_and_an_older_raw_list(editor):
    ed = editor(network="testnet")
    ed.irc_host.setText("irc.example.org")
    ed.irc_port.setValue(6697)
    ed.irc_channel.setText("#joinmarket-pit")
    ed.irc_tor.setChecked(False)
    ed.irc_add.click()
    stored = ed.setting_value()
    (irc,) = build_chan_configs(ChannelSettings.from_setting(stored), "testnet")
    assert (irc["host"], irc["port"], irc["channel"], irc["usessl"], irc["socks5"]) == \
        ("irc.example.org", 6697, "joinmarket-pit", "true", "false")
    assert "“-test”" in ed.irc_note.text()
    raw = json.dumps([{"type": "irc", "host": "irc.old.org", "port": 6667, "channel": "jm"}])
    old = editor(raw, network="testnet")
    assert old.legacy.isVisible() is False or old.legacy.text()      # shown as an older list
    assert old.legacy.text().startswith("An older channel list is set")
    assert not old.add_button.isEnabled() and old.setting_value() == raw
    old.reset_button.click()
    assert old.setting_value() is None and old.add_button.isEnabled()


def test_a_bad_stored_setting_is_shown_not_lost_silently(editor):
    ed = editor('{"directories": "not a list", "bogus": 1}')
    assert "unknown key(s) bogus" in ed.summary.text()
    assert ed.error
