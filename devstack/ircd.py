"""An IRC server for tests: Debian's ngircd on 127.0.0.1, a free port, config in a temp dir."""
from __future__ import annotations

import functools
import pathlib
import subprocess
from dataclasses import dataclass, field
from typing import Any, Optional

from .procs import free_port, installed_env, port_open, require_services, terminate, wait_for

CONF = """[Global]
    Name = irc.regtest.local
    Info = electrum-joinmarket test IRC server
    Listen = 127.0.0.1
    Ports = {port}
    PidFile = {workdir}/ngircd.pid
    MotdPhrase = regtest
[Limits]
    MaxConnections = 0
    MaxConnectionsIP = 0
    MaxJoins = 0
    MaxNickLength = 30
    # no flood penalty: the daemons pace themselves (line_rate); a real network's server does
    # penalise, which is why the daemon's default line rate is 1.3 s
    MaxPenaltyTime = 0
    PingTimeout = 120
    PongTimeout = 60
[Options]
    PAM = no
    Ident = no
    DNS = no
    MorePrivacy = no
    SyslogFacility = local5
[Channel]
    Name = #joinmarket-pit
    Modes = +n
"""

SSL_CONF = """[SSL]
    CertFile = {cert}
    KeyFile = {key}
    Ports = {tls_port}
"""


@dataclass
class IRCd:
    workdir: pathlib.Path
    host: str = "127.0.0.1"
    port: int = 0
    tls_port: int = 0          # an extra TLS port when started with a certificate
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)

    def stop(self) -> None:
        terminate(self.proc)

    @property
    def log(self) -> pathlib.Path:
        return self.workdir / "ngircd.log"


def irc_config(ircd: IRCd, line_rate: float = 0.05, **overrides: Any) -> list[dict[str, Any]]:
    """``JMInit``'s ``chan_configs`` for one channel on this test server: plain TCP, no Tor, and
    ``line_rate`` seconds between lines (Ref sends one line every 1.3 s); ``overrides`` change or
    add keys (e.g. ``port=ircd.tls_port, usessl="true"``)."""
    cfg: dict[str, Any] = {"type": "irc", "host": ircd.host, "port": ircd.port,
                           "channel": "joinmarket-pit", "usessl": "false", "socks5": "false",
                           "socks5_host": "localhost", "socks5_port": 9050, "line_rate": line_rate}
    cfg.update(overrides)
    return [cfg]


def start_ircd(workdir: pathlib.Path, port: int = 0, tls_cert: Optional[pathlib.Path] = None,
               tls_key: Optional[pathlib.Path] = None) -> IRCd:
    """Start ngircd in the foreground of a child process; return once it accepts connections.
    With ``tls_cert``/``tls_key`` it also serves TLS on ``IRCd.tls_port``."""
    require_services("ngircd")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "ngircd.conf"
    text = CONF.format(port=port, workdir=workdir)
    tls_port = 0
    if tls_cert is not None:
        tls_port = free_port()
        text += SSL_CONF.format(cert=tls_cert, key=tls_key, tls_port=tls_port)
    conf.write_text(text)
    exe = installed_env().get("EJM_NGIRCD", "/usr/sbin/ngircd")
    ircd = IRCd(workdir=workdir, port=port, tls_port=tls_port)
    ircd.proc = subprocess.Popen([exe, "--nodaemon", "--config", str(conf)],
                                 stdout=ircd.log.open("ab"), stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
    for p in filter(None, (port, tls_port)):
        wait_for(functools.partial(port_open, p), 20, f"ngircd on port {p}", proc=ircd.proc,
                 log=ircd.log)
    return ircd
