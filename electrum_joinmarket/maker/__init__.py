"""The maker (yield generator) on an Electrum wallet."""
