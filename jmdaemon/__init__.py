"""jmdaemon: the keyless JoinMarket messaging daemon of electrum-joinmarket.

It carries JoinMarket messages (IRC and onion channels, NaCl boxes, chunking, routing, orderbook,
commitment blacklist) for a client connected over AMP; it never sees a bitcoin key, a seed or a
wallet file (every nick signature is made and checked by the client).
"""
__version__ = "0.1.0"
