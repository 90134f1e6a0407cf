"""Every question the plugin asks the Electrum server (``server``), and the plain data it
returns (``utxo``)."""
