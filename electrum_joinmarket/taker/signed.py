r"""Coinjoins our taker fully signed and gave out, watched until they go out or never can.

Once the taker has signed, the transaction is complete: broadcast through our server or handed
to a maker to broadcast (``!push``).  If the run then reports failure — the transaction was
not seen in time, the server refused it, the user cancelled — a maker holding it (or the server)
can still broadcast it later, and it may confirm.  So (issue 12):

* the taker records the transaction in the wallet's plugin storage (``taker_signed_txs``,
  saved to disk) *before* it leaves the process, and :func:`settle`\ s it when its run ends:
  forgotten if the run succeeded (the run's own history entry records it), kept otherwise;
* while its run is still going a record is *in flight* and the watch leaves it alone: the run
  itself waits for the wallet to see it, and must not also get a "late" history entry;
* :class:`SignedTxWatch` (one per wallet session) notices when the wallet sees a recorded
  transaction — on Electrum's ``adb_added_tx`` event, when its run settles, and when the session
  opens (it may have gone out while Electrum was closed) — and hands a history entry for it to
  ``record``, once;
* a record is dropped once one of our inputs is spent by another confirmed transaction (then it
  can never go out).

Records hold no secret: the txid, our input outpoints and the summary the history shows.
"""
from __future__ import annotations

import time
from typing import Any, Callable, MutableMapping, Optional, Sequence

from electrum.util import EventListener, event_listener

from electrum_joinmarket.logs import get_logger

__all__ = ["SIGNED_KEY", "SETTLED_EVENT", "remember", "settle", "forget", "pending", "in_flight",
           "SignedTxWatch"]

log = get_logger(__name__)

SIGNED_KEY = "taker_signed_txs"
SETTLED_EVENT = "joinmarket_signed_settled"    # Electrum callback event: (txid,)
_LIMIT = 100
_in_flight: set[str] = set()      # txids whose taker run (in this process) has not ended yet


def remember(storage: MutableMapping[str, Any], save: Callable[[], None], txid: str,
             inputs: Sequence[str], summary: dict) -> None:
    """Record ``txid`` (our inputs ``inputs``, the history ``summary``) and save, before the
    transaction leaves the process."""
    recs = dict(storage.get(SIGNED_KEY) or {})
    recs[txid] = {"time": time.time(), "inputs": list(inputs), "summary": dict(summary)}
    while len(recs) > _LIMIT:
        recs.pop(min(recs, key=lambda t: recs[t].get("time", 0)))
    storage[SIGNED_KEY] = recs
    _in_flight.add(txid)
    save()


def settle(storage: MutableMapping[str, Any], save: Callable[[], None], txid: str, *,
           recorded: bool) -> None:
    """The run that gave out ``txid`` ended.  ``recorded``: it succeeded and its history entry
    records the transaction (the record is dropped); else the record stays and the session's
    watch takes over (told at once, in case the wallet already has the transaction)."""
    _in_flight.discard(txid)
    if recorded:
        forget(storage, save, txid)
        return
    from electrum import util
    try:
        util.trigger_callback(SETTLED_EVENT, txid)
    except AssertionError:       # no running event loop (not inside Electrum): the session
        pass                     # checks when it opens


def in_flight(txid: str) -> bool:
    """True while the taker run that gave out ``txid`` is still going."""
    return txid in _in_flight


def forget(storage: MutableMapping[str, Any], save: Callable[[], None], txid: str) -> None:
    """Drop the record of ``txid`` (its run recorded it, or it can never go out)."""
    recs = dict(storage.get(SIGNED_KEY) or {})
    if recs.pop(txid, None) is not None:
        storage[SIGNED_KEY] = recs
        save()


def pending(storage: MutableMapping[str, Any]) -> dict:
    """The recorded transactions still watched: {txid: record}."""
    return dict(storage.get(SIGNED_KEY) or {})


class SignedTxWatch(EventListener):
    """Watches one wallet for the transactions recorded by :func:`remember`.

    ``record(entry)`` is called once per transaction the wallet sees: a history entry (the
    recorded summary, ``status`` success, ``late`` True, a message saying it went out after its
    run had reported failure).  Call :meth:`start` once, :meth:`stop` when the session closes.
    """

    def __init__(self, wallet: Any, storage: MutableMapping[str, Any], save: Callable[[], None],
                 record: Callable[[dict], None]):
        self.wallet = wallet
        self.storage = storage
        self.save = save
        self.record = record
        self.found: list[str] = []

    def start(self) -> None:
        self.register_callbacks()
        self.check_now()

    def stop(self) -> None:
        self.unregister_callbacks()

    @event_listener
    def on_event_adb_added_tx(self, adb: Any, txid: str, *_: Any) -> None:
        if adb is getattr(self.wallet, "adb", None) and txid in pending(self.storage):
            self.check_now()

    @event_listener
    def on_event_joinmarket_signed_settled(self, txid: str) -> None:
        if txid in pending(self.storage):
            self.check_now()

    @event_listener
    def on_event_adb_added_verified_tx(self, adb: Any, txid: str, *_: Any) -> None:
        if adb is getattr(self.wallet, "adb", None) and pending(self.storage):
            self.check_now()       # a conflicting spend may have confirmed

    def check_now(self) -> list[str]:
        """Record the recorded transactions the wallet has; drop those that can never go out.
        Records whose run is still going are left alone.  Returns the txids recorded now."""
        now_found: list[str] = []
        adb = self.wallet.adb
        for txid, rec in pending(self.storage).items():
            if in_flight(txid):
                continue
            if adb.get_transaction(txid) is not None:
                self._found(txid, rec)
                now_found.append(txid)
            elif self._conflicted(txid, rec):
                log.info("taker: signed coinjoin %s can no longer go out (an input was spent "
                         "elsewhere); no longer watched", txid)
                forget(self.storage, self.save, txid)
        return now_found

    def _conflicted(self, txid: str, rec: dict) -> bool:
        """True if one of our inputs of ``txid`` is spent by another, confirmed transaction."""
        for op in rec.get("inputs") or ():
            prev, _, n = str(op).rpartition(":")
            spender: Optional[str] = self.wallet.db.get_spent_outpoint(prev, n)
            if spender and spender != txid and self.wallet.adb.get_tx_height(spender).conf > 0:
                return True
        return False

    def _found(self, txid: str, rec: dict) -> None:
        summary = dict(rec.get("summary") or {})
        entry = dict(summary, time=time.time(), status="success", failure=None, txid=txid,
                     late=True,
                     message=(f"coinjoin {txid} went out after its run had reported failure "
                              f"(a maker or the server broadcast the transaction we had signed): "
                              f"{summary.get('cj_amount', '?')} sat to "
                              f"{summary.get('destination', '?')}"))
        log.info("taker: signed coinjoin %s seen after its run reported failure; recorded", txid)
        forget(self.storage, self.save, txid)
        self.found.append(txid)
        self.record(entry)
