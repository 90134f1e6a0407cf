"""The real regtest stack for tests and the demo: bitcoind, ElectrumX, an IRC server, Electrum wallets.

Every service binds 127.0.0.1 on a free port, keeps its data in a temp dir, and is stopped by its
``stop()``. Binaries come from ``make install`` (see scripts/install.sh and the generated env.sh).
"""
