"""The plugin's side of the authenticated local link (issue 12 H5; TESTING.md L1): something else
answering on the daemon port — a fake that accepts everything, a reference-like AMP daemon
without our authentication, a relay in front of the real daemon, a daemon whose cookie we do not
have — is refused before it receives a single JoinMarket command, and the plugin says why. The
real daemon with its cookie is used."""
from __future__ import annotations

import asyncio

import pytest

from devstack.daemons import start_daemon
from electrum_joinmarket.link.client import DaemonClient, DaemonError
from electrum_joinmarket.link.daemon import DaemonLink, DaemonStatus, ProbeResult, probe_detail
from jmcore import amp as jamp
from jmcore import linkauth
from jmcore.commands import COMMANDS


class FakeDaemon:
    """An AMP server on 127.0.0.1 that records every command. ``mode``: ``accept`` answers the
    hello with a made-up proof and every command with accepted=True; ``reference`` implements
    only the 50 reference commands (so the hello gets UNHANDLED, as from joinmarketd)."""

    def __init__(self, mode):
        self.mode = mode
        self.received: list[str] = []
        self.server = None
        self.port = 0

    def responders(self, proto):
        out = {}
        for name, spec in linkauth.LINK_COMMANDS.items():
            if spec.direction != "client->daemon":
                continue
            if self.mode == "reference" and name not in COMMANDS:
                continue
            out[name] = self._responder(name)
        return out

    def _responder(self, name):
        def respond(**kw):
            self.received.append(name)
            if name == linkauth.HELLO:
                return {"accepted": True, "version": 1, "daemon_nonce": "ab" * 32,
                        "daemon_proof": "cd" * 32}
            return {"accepted": True}
        return respond

    async def start(self):
        self.server = await jamp.serve("127.0.0.1", 0, self.responders,
                                       commands=linkauth.LINK_COMMANDS)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def close(self):
        self.server.close()


async def _relay(target_port):
    """A TCP relay on another port in front of the real daemon (a man in the middle)."""
    async def handle(reader, writer):
        r2, w2 = await asyncio.open_connection("127.0.0.1", target_port)

        async def pipe(a, b):
            try:
                while data := await a.read(65536):
                    b.write(data)
                    await b.drain()
            except ConnectionError:
                pass
            finally:
                b.close()
        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _client():
    return DaemonClient(network="regtest", chan_configs=[{"type": "irc", "host": "127.0.0.1", "port": 1}])


@pytest.mark.stack
def test_l1_impostors_are_refused_and_the_plugin_says_why(tmp_path):
    daemon = start_daemon(tmp_path, "real")
    cookie_path = daemon.extra["cookie"]

    async def main():
        results = {}
        for mode in ("accept", "reference"):
            fake = await FakeDaemon(mode).start()
            found, why = await probe_detail("127.0.0.1", fake.port, cookie_path=cookie_path)
            link = DaemonLink("127.0.0.1", fake.port, datadir=daemon.extra["datadir"],
                              binary="/nonexistent", in_process=False)
            st = await link.ensure()
            with pytest.raises(DaemonError) as e:
                c = _client()
                c.cookie_path = cookie_path
                await c.connect("127.0.0.1", fake.port)
            results[mode] = (found, why, st, str(e.value), list(fake.received))
            fake.close()
        # a relay in front of the real daemon, with the real cookie
        server, relay_port = await _relay(daemon.port)
        found, why = await probe_detail("127.0.0.1", relay_port, cookie_path=cookie_path)
        with pytest.raises(DaemonError) as e:
            c = _client()
            c.cookie_path = cookie_path
            await c.connect("127.0.0.1", relay_port)
        results["relay"] = (found, why, None, str(e.value), None)
        server.close()
        # the real daemon, but we hold no (or a stale) cookie
        found, why = await probe_detail("127.0.0.1", daemon.port,
                                        cookie_path=str(tmp_path / "nope" / ".cookie"))
        results["no_cookie"] = (found, why, None, None, None)
        stale = tmp_path / "stale.cookie"
        stale.write_text("11" * 32 + "\n")
        stale.chmod(0o644)
        with pytest.raises(DaemonError) as e:
            c = _client()
            c.cookie_path = str(stale)
            await c.connect("127.0.0.1", daemon.port)
        results["public"] = (None, None, None, str(e.value), None)
        stale.chmod(0o600)
        with pytest.raises(DaemonError) as e:
            c = _client()
            c.cookie_path = str(stale)
            await c.connect("127.0.0.1", daemon.port)
        results["stale"] = (None, None, None, str(e.value), None)
        # and the real daemon with its cookie: used
        found, _ = await probe_detail("127.0.0.1", daemon.port, cookie_path=cookie_path)
        ok = DaemonLink("127.0.0.1", daemon.port, datadir=daemon.extra["datadir"],
                        in_process=False)
        st = await ok.ensure()
        c = _client()
        await c.connect("127.0.0.1", daemon.port)     # finds the cookie the link remembered
        c.close()
        results["real"] = (found, None, st, None, None)
        return results

    r = asyncio.run(asyncio.wait_for(main(), 120))
    for mode in ("accept", "reference"):
        found, why, st, err, received = r[mode]
        assert found == ProbeResult.NOT_AUTHENTIC, (mode, found, why)
        assert st.status == DaemonStatus.NOT_AUTHENTIC and not st.usable, st.as_dict()
        assert st.text.startswith("Refusing the program at 127.0.0.1:")
        assert "refusing the program at" in err
        # never a JoinMarket command, and never our proof, to an impostor
        assert set(received) <= {linkauth.HELLO}, received
    assert "could not prove it knows the cookie" in r["accept"][1]
    assert "could not prove it knows the cookie" in r["accept"][3]
    assert "reference joinmarketd" in r["reference"][1] and "reference joinmarketd" in r["reference"][3]
    assert r["relay"][0] == ProbeResult.NOT_AUTHENTIC and "could not prove" in r["relay"][3]
    assert r["no_cookie"][0] == ProbeResult.NOT_AUTHENTIC and "no cookie file" in r["no_cookie"][1]
    assert "could not prove" in r["stale"][3]
    assert "not private to you" in r["public"][3]
    assert r["real"][0] == ProbeResult.AMP and r["real"][2].status == DaemonStatus.EXTERNAL
    assert daemon.stop() == 0


def test_l1_a_fake_daemon_on_the_port_is_not_replaced_by_one_we_start(tmp_path):
    """The link never starts a daemon of its own behind an impostor's back (it could not listen
    on that port anyway): the user is told to deal with the program holding the port."""
    async def main():
        fake = await FakeDaemon("accept").start()
        link = DaemonLink("127.0.0.1", fake.port, datadir=str(tmp_path / "d"),
                          binary="/bin/true", in_process=True)
        st = await link.ensure()
        fake.close()
        return st, link
    st, link = asyncio.run(main())
    assert st.status == DaemonStatus.NOT_AUTHENTIC and "no cookie file" in st.detail
    assert link._proc is None and link._inproc is None
