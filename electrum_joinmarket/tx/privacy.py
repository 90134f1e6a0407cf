"""What a coinjoin reveals about our output: its anonymity set and its script type.

* The **anonymity set** of a coinjoin is the number of outputs paying exactly the coinjoin amount:
  an observer cannot tell which of them is ours (every maker gets one, we get one).
* JoinMarket coinjoins are made of one script type (the offers' ``sw0*`` = native segwit
  ``p2wpkh``, ``swa*`` = ``p2sh``-wrapped).  A destination of another type (legacy ``p2pkh``,
  ``p2tr``, ``p2wsh``…) is the only output of its type among the equal outputs: anyone can tell
  it is the taker's, and the anonymity set collapses to 1.  :func:`destination_type_warning`
  says so before anything is sent, so the user can pick another address or override knowingly.

Pure functions over addresses/scripts and Electrum transactions; no network.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

from electrum_joinmarket.market import feemodel

__all__ = ["anonymity_set", "script_type_of_address", "coinjoin_output_type",
           "destination_type_warning", "TYPE_NAMES"]

#: how users recognise each type (mainnet prefixes; testnet/regtest use tb1/bcrt1/2/m,n)
TYPE_NAMES = {
    "p2wpkh": "native segwit (p2wpkh, bc1q…)",
    "p2sh": "wrapped segwit (p2sh, 3…)",
    "p2pkh": "legacy (p2pkh, 1…)",
    "p2tr": "taproot (p2tr, bc1p…)",
    "p2wsh": "segwit script (p2wsh, bc1q…, long)",
}


def anonymity_set(outputs: Iterable[Any], cj_amount: int) -> int:
    """Number of outputs paying exactly ``cj_amount`` sat (``outputs``: Electrum ``TxOutput``s or
    anything with a ``value``)."""
    return sum(1 for o in outputs if int(o.value) == int(cj_amount))


def script_type_of_address(address: str) -> str:
    """``p2wpkh``/``p2sh``/``p2pkh``/``p2tr``/``p2wsh``, or ``unknown`` (not an address of this
    network, or a non-standard script)."""
    from electrum import bitcoin
    try:
        return feemodel.script_type_of_scriptpubkey(bitcoin.address_to_script(address))
    except Exception:
        return "unknown"


def coinjoin_output_type(wallet_script_type: str) -> str:
    """The output type of a coinjoin taken from a wallet of ``wallet_script_type`` (Electrum's
    ``txin_type`` or the size model's spelling): the offers we fill are of the same family."""
    t = feemodel.normalize_script_type(wallet_script_type)
    return "p2sh" if t == "p2sh-p2wpkh" else t


def destination_type_warning(destination: str, wallet_script_type: str) -> Optional[str]:
    """A one-sentence warning if ``destination`` would stand out among the coinjoin outputs by
    its script type, else None."""
    want = coinjoin_output_type(wallet_script_type)
    got = script_type_of_address(destination)
    if got == want:
        return None
    return (f"the destination is a {TYPE_NAMES.get(got, got)} address but every other coinjoin "
            f"output is {TYPE_NAMES.get(want, want)}: yours would be the only one of its type, so "
            f"anyone can tell which output is yours")
