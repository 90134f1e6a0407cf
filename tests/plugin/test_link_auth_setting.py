"""``plugins.joinmarket.daemon_authentication`` (docs/daemon-auth.md; issue 12 H5, TESTING.md L1):
the plugin must still work through a reference joinmarketd, which knows nothing of our cookie
authentication. With the setting on (the default) a daemon that cannot prove itself is refused
with a message that names the setting; with it off the plugin connects without the extension,
logs a warning and ``joinmarket_status`` says the link is unauthenticated.

The daemons here are real: our jmdaemon started with ``--allow-unauthenticated`` whose cookie the
plugin cannot read (a daemon of another data dir, as a reference joinmarketd is to us), a default
jmdaemon (which answers nothing unauthenticated), and an AMP server that implements only the
reference's 50 commands (the authentication hello gets ``UNHANDLED``, as from joinmarketd)."""
from __future__ import annotations

import asyncio
import logging

import pytest

from devstack.daemons import start_daemon
from devstack.ircd import irc_config
from electrum_joinmarket.link.client import DaemonClient, DaemonError
from electrum_joinmarket.link.daemon import DaemonLink, DaemonStatus
from electrum_joinmarket.runner import RunnerError
from jmcore import linkauth
from tests.plugin.test_link_auth import FakeDaemon

pytestmark = pytest.mark.stack


def _config(tmp_path, **keys):
    from electrum.simple_config import SimpleConfig
    config = SimpleConfig({"electrum_path": str(tmp_path / "electrum")})
    for k, v in keys.items():
        config.set_key(f"plugins.joinmarket.{k}", v)
    return config


def _on(loop, coro, timeout=60):
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def _warned(caplog, text):
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_l1_daemon_authentication_off_uses_a_daemon_that_cannot_authenticate(
        tmp_path, ircd, loop, plugins_factory, caplog):
    caplog.set_level(logging.INFO)
    daemon = start_daemon(tmp_path, "unauth", extra=["--allow-unauthenticated"])
    elsewhere = tmp_path / "plugin-datadir"              # the plugin's idea of the data dir:
    elsewhere.mkdir()                                    # it holds no cookie of this daemon
    config = _config(tmp_path, enabled=True, daemon_host="127.0.0.1", daemon_port=daemon.port,
                     daemon_autostart=False, daemon_in_process=False,
                     daemon_datadir=str(elsewhere), daemon_authentication=False)
    plugin = plugins_factory(config, "cmdline").get("joinmarket")
    assert plugin.settings()["daemon_authentication"] is False

    # off: the daemon is used, and everything says the link is not authenticated
    host, port = _on(loop, plugin.runner.daemon_address())
    assert (host, port) == ("127.0.0.1", daemon.port)
    link = plugin.status()["daemon_link"]
    assert link["authenticated"] is False and "NOT authenticated" in link["warning"]
    assert link["state"]["status"] == DaemonStatus.EXTERNAL and link["state"]["usable"]
    assert link["state"]["authenticated"] is False
    assert "link NOT authenticated (plugins.joinmarket.daemon_authentication is off)" \
        in link["state"]["text"]
    assert _warned(caplog, "link NOT authenticated")
    # a client of that address runs the whole handshake without the extension
    client = DaemonClient(network="regtest", chan_configs=irc_config(ircd),
                          cookie_path=str(elsewhere / ".cookie"))

    async def handshake():
        await client.connect(host, port)               # JMInit accepted
        await client.wait_up(30)                       # JMInitProto -> JMStartMC -> JMUp
        await client.setup("TAKER")                    # JMSetup -> JMSetupDone
        return client.nick
    nick = _on(loop, handshake())
    assert nick and nick.startswith("J5") and client.up.is_set() and client.setup_done.is_set()
    assert client.authenticated is False
    assert _warned(caplog, f"the link to jmdaemon at 127.0.0.1:{port} is NOT authenticated")
    client.close()
    assert "serving unauthenticated client" in daemon.log(), daemon.log()[-2000:]

    # on (the default): the same daemon cannot prove itself to us and is refused, with the reason
    config.set_key("plugins.joinmarket.daemon_authentication", True)
    with pytest.raises(RunnerError) as e:
        _on(loop, plugin.runner.daemon_address())
    assert f"Refusing the program at 127.0.0.1:{port}" in str(e.value)
    assert "no cookie file" in str(e.value)
    link = plugin.status()["daemon_link"]
    assert link["authenticated"] is True and "warning" not in link
    assert link["state"]["status"] == DaemonStatus.NOT_AUTHENTIC and not link["state"]["usable"]
    assert linkauth.authentication_required("127.0.0.1", port)
    refused = DaemonClient(network="regtest", chan_configs=irc_config(ircd),
                           cookie_path=str(elsewhere / ".cookie"))
    with pytest.raises(DaemonError) as e:
        _on(loop, refused.connect(host, port))
    assert f"refusing the program at 127.0.0.1:{port}" in str(e.value)
    assert refused.key is None and not refused.authenticated       # no JMInit went through
    assert daemon.stop() == 0


def test_l1_daemon_authentication_setting_against_a_reference_daemon_and_a_default_one(tmp_path,
                                                                                      ircd):
    async def main():
        out = {}
        fake = await FakeDaemon("reference").start()
        for auth in (True, False):
            fake.received.clear()
            link = DaemonLink("127.0.0.1", fake.port, datadir=str(tmp_path / "none"),
                              binary="/nonexistent", in_process=False, authentication=auth)
            st = await link.ensure()
            client = DaemonClient(network="regtest", chan_configs=irc_config(ircd),
                                  cookie_path=str(tmp_path / "none" / ".cookie"))
            try:
                await client.connect("127.0.0.1", fake.port)
                err = None
            except DaemonError as exc:
                err = str(exc)
            out[auth] = (st, err, list(fake.received), client.authenticated)
            client.close()
        fake.close()
        # off, but the daemon is a default jmdaemon: it answers nothing unauthenticated
        strict = start_daemon(tmp_path, "strict")
        link = DaemonLink("127.0.0.1", strict.port, datadir=str(tmp_path / "none"),
                          binary="/nonexistent", in_process=False, authentication=False)
        st = await link.ensure()
        client = DaemonClient(network="regtest", chan_configs=irc_config(ircd))
        with pytest.raises(DaemonError) as e:
            await client.connect("127.0.0.1", strict.port)
        out["strict"] = (st, str(e.value), strict)
        linkauth.set_authentication("127.0.0.1", strict.port, True)
        return out

    r = asyncio.run(asyncio.wait_for(main(), 120))
    st, err, received, authenticated = r[True]
    assert st.status == DaemonStatus.NOT_AUTHENTIC and "reference joinmarketd" in st.detail
    assert err is not None and "refusing the program at" in err
    assert "turn off plugins.joinmarket.daemon_authentication" in err
    assert received == []                         # not a single JoinMarket command
    st, err, received, authenticated = r[False]
    assert err is None, err
    assert st.status == DaemonStatus.EXTERNAL and st.usable and not st.authenticated
    assert "NOT authenticated" in st.text
    # (the probe's hello got UNHANDLED, no responder saw it) JMInit went through
    assert received == ["JMInit"] and authenticated is False
    st, err, strict = r["strict"]
    assert st.status == DaemonStatus.EXTERNAL and not st.authenticated
    assert "the daemon closed the connection; it probably requires authentication" in err
    assert "--allow-unauthenticated" in err
    assert strict.stop() == 0
