"""The taker: one coinjoin from an Electrum wallet, stage by stage."""
