"""Which Tor the plugin hands the daemon (electrum_joinmarket.link.tor.resolve_tor), against real
tor clients of the private network: the user's pinned SOCKS port, else Electrum's own proxy when
Electrum found it to be Tor, else 9050, else 9150; a port that answers but is not Tor, or answers
nothing, is never taken for Tor and the message says which port and what to do."""
from __future__ import annotations

import asyncio
import socket
import threading
from types import SimpleNamespace

import pytest

from devstack.procs import free_port
from electrum_joinmarket.link.tor import resolve_tor
from jmcore.channels import ChannelSettings
from jmcore.torcheck import ProbeResult

pytestmark = [pytest.mark.stack, pytest.mark.tor]


def electrum_network(port: int, is_tor):
    """The two attributes of Electrum's Network that the plugin reads (proxy settings and
    Electrum's own Tor detection), for a proxy at 127.0.0.1:port."""
    proxy = SimpleNamespace(enabled=True, mode="socks5", host="127.0.0.1", port=str(port))
    return SimpleNamespace(proxy=proxy, is_proxy_tor=is_tor)


def _not_tor_server():
    """A TCP server answering every connection with an HTTP error (some other proxy)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_tor_is_found_where_the_user_has_it(tornet):
    client = tornet.add_client("discovery")
    other = _not_tor_server()
    try:
        # Electrum's own proxy, found to be Tor by Electrum: used (before 9050/9150)
        res = asyncio.run(resolve_tor(ChannelSettings(),
                                      electrum_network(client.socks_port, True)))
        assert res.ok and res.endpoints.socks5 == f"127.0.0.1:{client.socks_port}"
        assert res.endpoints.source.startswith("Electrum's proxy")
        # Electrum has not probed it yet (None): our own probe decides
        res = asyncio.run(resolve_tor(ChannelSettings(),
                                      electrum_network(client.socks_port, None)))
        assert res.ok and res.endpoints.socks5_port == client.socks_port
        # a proxy that is not Tor is never used for onions
        res = asyncio.run(resolve_tor(ChannelSettings(),
                                      electrum_network(other.getsockname()[1], None)))
        assert not res.ok or res.endpoints.socks5_port != other.getsockname()[1]
        assert res.probes[0].result == ProbeResult.NOT_TOR
        # the user's pinned port wins, and is checked
        pinned = ChannelSettings.from_setting({"socks5": f"127.0.0.1:{client.socks_port}",
                                               "tor_control": f"127.0.0.1:{client.control_port}"})
        res = asyncio.run(resolve_tor(pinned, electrum_network(other.getsockname()[1], True)))
        assert res.ok and res.endpoints.source == "setting"
        assert res.endpoints.control == f"127.0.0.1:{client.control_port}"
        dead = free_port()
        res = asyncio.run(resolve_tor(ChannelSettings.from_setting(
            {"socks5": f"127.0.0.1:{dead}"}), None))
        assert not res.ok and f"127.0.0.1:{dead}" in res.message
        assert "nothing listens there" in res.message and "sudo apt install tor" in res.message
        res = asyncio.run(resolve_tor(ChannelSettings.from_setting(
            {"socks5": f"127.0.0.1:{other.getsockname()[1]}"}), None))
        assert not res.ok and "not a Tor SOCKS proxy" in res.message
    finally:
        other.close()
        client.stop()
