"""The taker's view of offers (docs/protocol.md §4.3): validated, bounded in memory (D7).

Rows are the JSON objects that ``JMOffers`` carries: counterparty, oid, ordertype, minsize, maxsize,
txfee (ints) and cjfee (decimal string), as Ref's sqlite orderbook produces them.
"""
from __future__ import annotations

import logging
import re
import sys
from collections import OrderedDict
from decimal import Decimal, InvalidOperation
from typing import Any

from . import constants as C
from . import wire

log = logging.getLogger(__name__)
_UINT = re.compile(r"^[0-9]{1,19}$")
_DECIMAL = re.compile(r"^[0-9]{1,16}(\.[0-9]{1,20})?$|^[0-9]{0,16}\.[0-9]{1,20}$")


def _uint(text: object) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str) or not _UINT.match(text):
        raise ValueError("not an unsigned integer: %r" % (text,))
    return int(text)


def validate_offer(ordertype: str, oid: object, minsize: object, maxsize: object, txfee: object,
                   cjfee: object, dust: int = C.JM_DUST) -> dict[str, Any]:
    """A clean offer row (without counterparty) or ValueError (taker checks of §4.3)."""
    if ordertype not in C.OFFER_TYPES:
        raise ValueError("unknown offer type")
    oid_n = _uint(oid)
    if oid_n > sys.maxsize:
        raise ValueError("oid out of range")
    min_n, max_n, txfee_n = _uint(minsize), _uint(maxsize), _uint(txfee)
    if min_n > C.MAX_SATS or max_n > C.MAX_SATS:
        raise ValueError("size out of range")
    min_n = max(min_n, dust)
    if min_n > max_n:
        raise ValueError("minsize above maxsize")
    if txfee_n > C.MAX_SATS:
        raise ValueError("txfee out of range")
    if ordertype in C.ABS_OFFER_TYPES:
        cjfee = str(_uint(cjfee))
    else:
        if not isinstance(cjfee, str) or len(cjfee) > 40 or not _DECIMAL.match(cjfee):
            raise ValueError("bad relative cjfee")
        try:
            value = Decimal(cjfee)
        except InvalidOperation:
            raise ValueError("bad relative cjfee") from None
        if not value.is_finite():
            raise ValueError("bad relative cjfee")
        cjfee = str(value)
    return {"oid": oid_n, "ordertype": ordertype, "minsize": min_n, "maxsize": max_n,
            "txfee": txfee_n, "cjfee": cjfee}


class Orderbook:
    """Offers keyed by (nick, oid) and fidelity-bond proofs by nick, with hard caps.

    Caps: ``max_offers_per_nick`` (extra offers of a nick are refused), ``max_nicks``
    (a new nick beyond it evicts the least recently updated nick), so a flood of offers from
    many nicks keeps memory bounded while the most recent makers remain usable.
    """

    def __init__(self, max_offers_per_nick: int = 50, max_nicks: int = 5000, dust: int = C.JM_DUST) -> None:
        self.max_offers_per_nick = max_offers_per_nick
        self.max_nicks = max_nicks
        self.dust = dust
        self.by_nick: OrderedDict[str, dict[int, dict[str, Any]]] = OrderedDict()   # nick -> {oid: row}
        self.bonds: dict[str, dict[str, str]] = {}  # nick -> {"counterparty","takernick","proof"}
        self.rejected = 0

    def add_offer(self, nick: str, ordertype: str, oid: object, minsize: object, maxsize: object,
                  txfee: object, cjfee: object) -> bool:
        """Store an offer; False (and the old row for that oid deleted) if it is invalid."""
        offers = self.by_nick.get(nick)
        try:
            oid_int = _uint(oid)
        except ValueError:
            self.rejected += 1
            return False
        if offers is not None:
            offers.pop(oid_int, None)   # delete eagerly, even if the new one is invalid
        try:
            row = validate_offer(ordertype, oid, minsize, maxsize, txfee, cjfee, self.dust)
        except ValueError as exc:
            self.rejected += 1
            log.debug("invalid offer from %s dropped: %s", nick, wire.printable(str(exc)))
            return False
        if offers is None:
            if len(self.by_nick) >= self.max_nicks:
                old, _ = self.by_nick.popitem(last=False)
                self.bonds.pop(old, None)
            offers = self.by_nick[nick] = {}
        else:
            self.by_nick.move_to_end(nick)
        if len(offers) >= self.max_offers_per_nick:
            self.rejected += 1
            return False
        row["counterparty"] = nick
        offers[oid_int] = row
        return True

    def cancel(self, nick: str, oid: int) -> None:
        offers = self.by_nick.get(nick)
        if offers is not None:
            offers.pop(oid, None)
            if not offers:
                del self.by_nick[nick]

    def remove_nick(self, nick: str) -> None:
        self.by_nick.pop(nick, None)
        self.bonds.pop(nick, None)

    def clear(self) -> None:
        self.by_nick.clear()
        self.bonds.clear()

    def add_bond(self, nick: str, takernick: str, proof: object) -> bool:
        if nick not in self.by_nick or not isinstance(proof, str) or len(proof) > 1000:
            return False
        self.bonds[nick] = {"counterparty": nick, "takernick": takernick, "proof": proof}
        return True

    def has_nick(self, nick: str) -> bool:
        return nick in self.by_nick

    def nicks(self) -> list[str]:
        return list(self.by_nick)

    def offers(self) -> list[dict[str, Any]]:
        return [{k: row[k] for k in C.ORDER_KEYS}
                for offers in self.by_nick.values() for row in offers.values()]

    def fidelity_bonds(self) -> list[dict[str, str]]:
        return list(self.bonds.values())

    def __len__(self) -> int:
        return sum(len(o) for o in self.by_nick.values())
