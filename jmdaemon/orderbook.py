"""The taker's view of offers (docs/protocol.md §4.3): validated, bounded in memory (D7).

Rows are the JSON objects that ``JMOffers`` carries: counterparty, oid, ordertype, minsize, maxsize,
txfee (ints) and cjfee (decimal string), as Ref's sqlite orderbook produces them.
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any

from jmcore import constants as C
from jmcore.errors import OfferError
from jmcore.offers import Offer

from . import wire

log = logging.getLogger(__name__)
_UINT = re.compile(r"^[0-9]{1,19}$")


def _uint(text: object) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str) or not _UINT.match(text):
        raise ValueError("not an unsigned integer: %r" % (text,))
    return int(text)


def validate_offer(ordertype: str, oid: object, minsize: object, maxsize: object, txfee: object,
                   cjfee: object, dust: int = C.DUST_THRESHOLD) -> dict[str, Any]:
    """A clean offer row (without counterparty) or ValueError: the taker checks of §4.3 made by
    jmcore's offer parser, the one the plugin applies to the rows it receives (so the daemon
    keeps exactly the offers the plugin would accept), with ``minsize`` lifted to ``dust``."""
    try:
        offer = Offer.from_dict({"ordertype": ordertype, "oid": oid, "minsize": minsize,
                                 "maxsize": maxsize, "txfee": txfee, "cjfee": cjfee},
                                lift_dusty_minsize=False)
    except OfferError as exc:
        raise ValueError(str(exc)) from None
    minsize_n = max(offer.minsize, dust)
    if minsize_n > offer.maxsize:
        raise ValueError("minsize above maxsize")
    return {"oid": offer.oid, "ordertype": offer.ordertype, "minsize": minsize_n,
            "maxsize": offer.maxsize, "txfee": offer.txfee, "cjfee": offer.cjfee}


PUBLIC, PRIVATE, BONDED = 0, 1, 2
"""How a nick's offers reached us: only unsigned public announcements (hints, §13); a signed
private reply to our ``!orderbook`` (verified by the client); such a reply carrying a ``!tbond``."""

MAX_OFFERS_PER_NICK = 12
MAX_NICKS = 5000
MAX_BONDED_NICKS = 500
MAX_OFFERS = 20000
MAX_OFFERS_TO_CLIENT = 3000


def bond_utxo(proof: str) -> str | None:
    """``txid:vout`` of the bond a ``!tbond`` proof names (bytes 212..248 of the 252-byte proof,
    docs/protocol.md §11), or None if it is not such a proof. Parsing only: the client checks the
    signatures and the utxo."""
    import base64
    import binascii
    if not isinstance(proof, str) or len(proof) > 400:
        return None
    try:
        raw = base64.b64decode(proof, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 252:
        return None
    return raw[212:244].hex() + ":" + str(int.from_bytes(raw[244:248], "little"))


class _Maker:
    __slots__ = ("rank", "offers", "bond")

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.offers: dict[int, tuple[str, int, int, int, str]] = {}
        self.bond: dict[str, str] | None = None


class Orderbook:
    """Offers keyed by (nick, oid) and fidelity-bond proofs by nick (D7, D13).

    Invariants:

    * memory is bounded: at most ``max_offers_per_nick`` offers per nick (more are refused),
      ``max_nicks`` nicks without a bond plus ``max_bonded`` nicks with one, and ``max_offers``
      offers in all; rows are stored as tuples;
    * nothing in the book is pushed out by a newcomer of the same or a lower standing: when the
      book is full, the makers seen first stay and the newcomer is refused. Standing is PUBLIC <
      PRIVATE < BONDED (see above); a PRIVATE newcomer may only replace the most recently seen
      PUBLIC-only nick, and bonded nicks have their own pool, so neither a flood of public offers,
      nor of signed replies, nor of (possibly fake) bond claims can evict a maker seen earlier with
      a better standing — nor can a flood of bond claims push out makers without a bond;
    * one bond utxo lends its standing to one nick only (the first that presented it);
    * the client gets a ranked, bounded book (:meth:`offers`): bonded nicks first, then PRIVATE,
      then PUBLIC, first-seen first within each, at most ``max_to_client`` offers.
    """

    def __init__(self, max_offers_per_nick: int = MAX_OFFERS_PER_NICK, max_nicks: int = MAX_NICKS,
                 dust: int = C.DUST_THRESHOLD, max_bonded: int = MAX_BONDED_NICKS,
                 max_offers: int = MAX_OFFERS, max_to_client: int = MAX_OFFERS_TO_CLIENT) -> None:
        self.max_offers_per_nick = max_offers_per_nick
        self.max_nicks = max_nicks
        self.max_bonded = max_bonded
        self.max_offers = max_offers
        self.max_to_client = max_to_client
        self.dust = dust
        self.by_nick: OrderedDict[str, _Maker] = OrderedDict()     # first-seen order
        self.bond_owner: dict[str, str] = {}                         # bond utxo -> nick
        self.n_bonded = 0
        self.n_offers = 0
        self.rejected = 0
        self.refused_nicks = 0

    # ------------------------------------------------------------------ admission
    def _full(self) -> bool:
        return (len(self.by_nick) - self.n_bonded >= self.max_nicks
                or self.n_offers >= self.max_offers)

    def _admit(self, nick: str, rank: int) -> _Maker | None:
        """A new nick's entry, or None if the book is full for its standing."""
        if rank == BONDED:
            if self.n_bonded >= self.max_bonded:
                rank = PRIVATE
            else:
                self.n_bonded += 1
                maker = self.by_nick[nick] = _Maker(BONDED)
                return maker
        if self._full():
            victim = None
            if rank > PUBLIC:
                for other in reversed(self.by_nick):
                    if self.by_nick[other].rank == PUBLIC:
                        victim = other
                        break
            if victim is None:
                self._refused()
                return None
            self.remove_nick(victim)
        maker = self.by_nick[nick] = _Maker(rank)
        return maker

    def _refused(self) -> None:
        self.refused_nicks += 1
        if self.refused_nicks in (1, 1000, 100000, 10000000):
            log.warning("orderbook full (%d nicks, %d offers): %d offers of new nicks refused so "
                        "far; the makers seen first are kept", len(self.by_nick), self.n_offers,
                        self.refused_nicks)

    def _claim_bond(self, nick: str, proof: str | None) -> bool:
        """Whether ``proof`` may lend BONDED standing to nick (its utxo not claimed by another)."""
        utxo = bond_utxo(proof) if proof else None
        if utxo is None:
            return False
        owner = self.bond_owner.get(utxo)
        if owner is not None and owner != nick and owner in self.by_nick:
            return False
        return True

    def add_offer(self, nick: str, ordertype: str, oid: object, minsize: object, maxsize: object,
                  txfee: object, cjfee: object, private: bool = False,
                  bond: str | None = None) -> bool:
        """Store an offer; False (and the old row for that oid deleted) if it is invalid or there
        is no room for it. ``private``: it came in a verified private message, with ``bond`` the
        ``!tbond`` proof that message carried, if any."""
        maker = self.by_nick.get(nick)
        if maker is None and not private and self._full():
            self.rejected += 1          # the common case of a flood: refused at once
            self._refused()
            return False
        try:
            oid_int = _uint(oid)
        except ValueError:
            self.rejected += 1
            return False
        if maker is not None and maker.offers.pop(oid_int, None) is not None:
            self.n_offers -= 1      # delete eagerly, even if the new one is invalid
        try:
            row = validate_offer(ordertype, oid, minsize, maxsize, txfee, cjfee, self.dust)
        except ValueError as exc:
            self.rejected += 1
            log.debug("invalid offer from %s dropped: %s", nick, wire.printable(str(exc)))
            return False
        rank = PUBLIC
        if private:
            rank = BONDED if self._claim_bond(nick, bond) else PRIVATE
        if maker is None:
            maker = self._admit(nick, rank)
            if maker is None:
                self.rejected += 1
                return False
        elif rank > maker.rank and maker.rank < BONDED:
            if rank == BONDED and self.n_bonded < self.max_bonded:
                self.n_bonded += 1
                maker.rank = BONDED
            else:
                maker.rank = max(maker.rank, PRIVATE)
        if len(maker.offers) >= self.max_offers_per_nick or self.n_offers >= self.max_offers:
            self.rejected += 1
            if not maker.offers:
                self.remove_nick(nick)
            return False
        maker.offers[oid_int] = (row["ordertype"], row["minsize"], row["maxsize"], row["txfee"],
                                 row["cjfee"])
        self.n_offers += 1
        return True

    def cancel(self, nick: str, oid: int) -> None:
        maker = self.by_nick.get(nick)
        if maker is not None:
            if maker.offers.pop(oid, None) is not None:
                self.n_offers -= 1
            if not maker.offers:
                self.remove_nick(nick)

    def remove_nick(self, nick: str) -> None:
        maker = self.by_nick.pop(nick, None)
        if maker is None:
            return
        self.n_offers -= len(maker.offers)
        if maker.rank == BONDED:
            self.n_bonded -= 1
        if maker.bond is not None:
            utxo = bond_utxo(maker.bond["proof"])
            if utxo is not None and self.bond_owner.get(utxo) == nick:
                del self.bond_owner[utxo]

    def clear(self) -> None:
        self.by_nick.clear()
        self.bond_owner.clear()
        self.n_bonded = self.n_offers = 0

    def add_bond(self, nick: str, takernick: str, proof: str) -> bool:
        """Record the ``!tbond`` proof a nick sent with its offers (in a verified private
        message). Only the first nick presenting a bond utxo gets it recorded."""
        maker = self.by_nick.get(nick)
        if maker is None or not isinstance(proof, str) or len(proof) > 1000:
            return False
        utxo = bond_utxo(proof)
        if utxo is None or not self._claim_bond(nick, proof):
            return False
        if maker.bond is not None:
            old = bond_utxo(maker.bond["proof"])
            if old is not None and old != utxo and self.bond_owner.get(old) == nick:
                del self.bond_owner[old]
        self.bond_owner[utxo] = nick
        maker.bond = {"counterparty": nick, "takernick": takernick, "proof": proof}
        if maker.rank < BONDED and self.n_bonded < self.max_bonded:
            self.n_bonded += 1
            maker.rank = BONDED
        return True

    # ------------------------------------------------------------------ reading
    def has_nick(self, nick: str) -> bool:
        return nick in self.by_nick

    def nicks(self) -> list[str]:
        return list(self.by_nick)

    def _ranked(self) -> list[str]:
        return [n for rank in (BONDED, PRIVATE, PUBLIC)
                for n, m in self.by_nick.items() if m.rank == rank]

    def offers(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The ranked, bounded book for the client (see the class docstring)."""
        limit = self.max_to_client if limit is None else limit
        out: list[dict[str, Any]] = []
        for nick in self._ranked():
            rows = self.by_nick[nick].offers
            if len(out) + len(rows) > limit:
                break
            for oid, (otype, mn, mx, txfee, cjfee) in rows.items():
                out.append({"counterparty": nick, "oid": oid, "ordertype": otype,
                            "minsize": mn, "maxsize": mx, "txfee": txfee, "cjfee": cjfee})
        return out

    def fidelity_bonds(self, nicks: set[str] | None = None) -> list[dict[str, str]]:
        """Bond proofs of the book's nicks (of ``nicks`` only, if given)."""
        return [dict(m.bond) for n, m in self.by_nick.items()
                if m.bond is not None and (nicks is None or n in nicks)]

    @property
    def bonds(self) -> dict[str, dict[str, str]]:
        return {n: m.bond for n, m in self.by_nick.items() if m.bond is not None}

    def __len__(self) -> int:
        return self.n_offers
