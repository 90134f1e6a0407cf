"""Plain data shared by the chain checks and the transaction builder (no Electrum imports here)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class UtxoInfo:
    """What the chain says about one transaction output.

    ``confirmations`` is 0 for a mempool output; ``height`` is the block height (0 or negative
    when unconfirmed, as Electrum reports it). ``unspent`` is False once the server no longer lists
    it in the scripthash's unspent set.
    """
    outpoint: str              # "txid:n", txid lower-case hex
    value: int                 # satoshis
    script_pubkey: bytes
    address: Optional[str]     # None for non-standard scripts
    height: int
    confirmations: int
    unspent: bool = True

    @property
    def txid(self) -> str:
        return self.outpoint.split(":")[0]

    @property
    def vout(self) -> int:
        return int(self.outpoint.split(":")[1])
