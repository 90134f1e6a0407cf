"""An IRC server for tests: Debian's ngircd on 127.0.0.1, a free port, config in a temp dir."""
from __future__ import annotations

import pathlib
import subprocess
from dataclasses import dataclass, field
from typing import Optional

from .procs import free_port, installed_env, port_open, terminate, wait_for

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


@dataclass
class IRCd:
    workdir: pathlib.Path
    host: str = "127.0.0.1"
    port: int = 0
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)

    def stop(self) -> None:
        terminate(self.proc)

    @property
    def log(self) -> pathlib.Path:
        return self.workdir / "ngircd.log"


def start_ircd(workdir: pathlib.Path, port: int = 0) -> IRCd:
    """Start ngircd in the foreground of a child process; return once it accepts connections."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "ngircd.conf"
    conf.write_text(CONF.format(port=port, workdir=workdir))
    exe = installed_env().get("EJM_NGIRCD", "/usr/sbin/ngircd")
    ircd = IRCd(workdir=workdir, port=port)
    ircd.proc = subprocess.Popen([exe, "--nodaemon", "--config", str(conf)],
                                 stdout=ircd.log.open("ab"), stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
    wait_for(lambda: port_open(port), 20, f"ngircd on port {port}", proc=ircd.proc, log=ircd.log)
    return ircd
