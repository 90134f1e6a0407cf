"""The local development and test stack: real services on 127.0.0.1 with free ports.

``bitcoind`` (regtest), ``electrumx`` (e-x), ``ircd`` (ngircd), ``electrum_env`` (Electrum 4.8
in-process on its own loop), ``daemons`` (jmdaemon and directory-node subprocesses, a small AMP test
client), ``rawpeer`` (hostile raw onion/IRC peers) and ``jmnet`` (a regtest JoinMarket network of
Electrum makers and a taker). Used by ``tests/``, ``scripts/demo.py`` and ``benchmarks/``; it is
development tooling, not part of the plugin or the daemon, and is not installed by ``setup.py``.
"""
