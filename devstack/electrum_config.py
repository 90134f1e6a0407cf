"""An Electrum data dir's config file, written before Electrum's daemon first starts.

Standard library only: the CLI harness and the zip tests use it without importing Electrum."""
from __future__ import annotations

import ast
import json
import pathlib
import secrets
from typing import Any, Optional


def ensure_rpc_credentials(datadir: pathlib.Path, chain: str = "regtest") -> None:
    """Give ``datadir``'s config the RPC user and password Electrum otherwise makes up on a
    daemon's first start. ``electrum daemon -d`` makes them before it forks, but a daemon run in
    the foreground (``electrum daemon &``, a test's Popen) makes them while a client may already
    be polling it: the client and the daemon each make up their own (electrum/daemon.py
    ``get_rpc_credentials``), the client is answered "Error: Forbidden" with exit status 0 and
    whichever config write comes last decides which side is locked out. Seen in CI under load."""
    path = datadir / chain / "config"
    path.parent.mkdir(parents=True, exist_ok=True)
    conf = json.loads(path.read_text()) if path.exists() else {"config_version": 3}
    if conf.get("rpcuser") and conf.get("rpcpassword"):
        return
    conf.update(rpcuser="user", rpcpassword=secrets.token_urlsafe(16))
    path.write_text(json.dumps(conf, indent=2))


def daemon_address(datadir: pathlib.Path, chain: str = "regtest") -> Optional[tuple[str, Any]]:
    """``(socktype, address)`` from the daemon's lockfile, which Electrum writes once its RPC
    server listens (electrum/daemon.py ``CommandsServer.run``); None before that. Waiting for it
    before running an ``electrum`` client saves the client's ~1 s of CPU per early attempt."""
    try:
        socktype, address, _created = ast.literal_eval((datadir / chain / "daemon").read_text())
    except (OSError, ValueError, SyntaxError):
        return None
    return socktype, address
