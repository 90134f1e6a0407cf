"""Every TCP connection of the daemon sends at once (TCP_NODELAY): the AMP link to the plugin,
IRC (direct and through Tor's SOCKS port) and onion-channel connections. With Nagle's algorithm
on, a small write that follows another waits for the first one's ACK, which the receiver delays
by up to 40 ms: benchmarks/bench_coinjoin.py showed fill -> sigs 0.36 s with it, and less
without. The connections are real (a real reactor in its own interpreter, nodelay_peer.py)."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def test_every_daemon_connection_has_nagle_off(tmp_path):
    r = subprocess.run([sys.executable, str(HERE / "nodelay_peer.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    conns = json.loads(r.stdout.strip().splitlines()[-1])
    # the AMP server and the onion channel accept; both IRC channels (direct, SOCKS) connect
    assert sorted((c["kind"], c["protocol"]) for c in conns) == [
        ("Client", "_WrappingProtocol"), ("Client", "_WrappingProtocol"),
        ("Server", "JMDaemonProtocol"), ("Server", "OnionLineProtocol")], conns
    assert [c for c in conns if not c["nodelay"]] == []
