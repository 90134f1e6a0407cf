"""electrum_joinmarket."""
