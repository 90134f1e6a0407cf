"""JoinMarket depths (mixdepths) inside a standard Electrum wallet: the rules and the per-wallet
record (see :mod:`.record`)."""
