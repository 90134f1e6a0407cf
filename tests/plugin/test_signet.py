"""JoinMarket on signet, at the configuration level: an Electrum started with ``--signet`` (its
own data dir and config), the channel settings written with Electrum's own ``setconfig`` exactly
as the README and the plugin's messages tell a user to, and what the plugin builds from them:
the 6 signet directory nodes of both reference stacks (+ the user's), ``btcnet`` signet, the
signet IRC channel name, signet address prefixes, and the onion handshake's network."""
from __future__ import annotations

import json
import subprocess
import sys

from jmcore import channels as ch

EXTRA = "e" * 55 + "2.onion:5222"

CHECK = r"""
import json, sys
from electrum import constants
constants.BitcoinSignet.set_as_network()
from electrum.simple_config import SimpleConfig
import electrum_joinmarket.plugin                 # declares the plugin's ConfigVars
from electrum_joinmarket.runner import Runner, jm_network_name
from jmcore.channels import irc_channel_name, network_for_wire
from jmdaemon import wire
from electrum import bitcoin

config = SimpleConfig({"electrum_path": sys.argv[1], "signet": True})
class Plugin:
    pass
plugin = Plugin(); plugin.config = config
runner = Runner(plugin)
out = {"net": jm_network_name(), "datadir": config.path,
       "taker": runner.chan_configs("TAKER"), "maker": runner.chan_configs("MAKER")}
irc = [c for c in out["taker"] if c.get("type", "irc") == "irc"][0]
out["irc_channel"] = irc_channel_name(irc["channel"], irc["btcnet"])
out["handshake"] = json.loads(wire.client_handshake("J5xxxxxxxxxxxxxx", "NOT-SERVING-ONION",
                                                    network_for_wire(out["net"])))
out["hrp"] = constants.net.SEGWIT_HRP
out["signet_addr_ok"] = bitcoin.is_address(bitcoin.hash_to_segwit_addr(b"\x01" * 20, witver=0))
out["mainnet_addr_ok"] = bitcoin.is_address("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")
print(json.dumps(out))
"""


def test_c8_signet_settings_from_electrum_cli(tmp_path):
    el = [sys.executable, "-m", "electrum_joinmarket.loader", "--signet", "-D", str(tmp_path)]
    setting = json.dumps({"add_directories": [EXTRA], "irc": [
        {"host": ch.HACKINT_IRC.host, "port": 6667}]})
    for args in (["setconfig", "plugins.joinmarket.enabled", "true"],
                 ["setconfig", "plugins.joinmarket.channels", setting]):
        r = subprocess.run(el + ["--offline"] + args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["net"] == "signet" and out["datadir"].endswith("signet")
    for role, serving in (("taker", False), ("maker", True)):
        irc, onion = out[role]
        assert onion["type"] == "onion" and onion["btcnet"] == "signet"
        assert onion["serving"] is serving and onion["regtest_count"] == "0,0"
        dirs = onion["directory_nodes"].split(",")
        assert set(dirs) == set(ch.default_directories("signet")) | {EXTRA} and len(dirs) == 7
        assert not set(dirs) & set(ch.default_directories("mainnet"))
        assert irc["btcnet"] == "signet" and irc["socks5"] == "true"
    assert out["irc_channel"] == "#joinmarket-pit-sig"
    assert out["handshake"]["network"] == "signet"
    assert out["hrp"] == "tb" and out["signet_addr_ok"] and not out["mainnet_addr_ok"]
