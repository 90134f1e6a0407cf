"""Tor for the daemon: a stream-isolating SOCKS5 endpoint, a local Tor check, and onion services
through the control port."""
