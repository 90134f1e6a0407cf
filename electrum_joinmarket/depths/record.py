"""The per-wallet depth record: JoinMarket's mixdepths inside a standard Electrum wallet.

An Electrum wallet is one pool of coins.  This module gives every coin of the wallet a *depth*
(0 .. count-1, default 5 depths like JoinMarket's mixdepths) so that the plugin never merges coins
of different histories: a taker's coins come from one depth, a maker offers from one depth, a
coinjoin output goes to the next depth and change stays where it came from (rules in
:mod:`.rules`).

Where it lives: the wallet's plugin storage (``plugin_data.joinmarket.depths``, written with
``wallet.save_db``), so it travels with the wallet file::

    count          number of depths (default 5)
    deposit_depth  depth for coins arriving from outside (default 0)
    addresses      {address: depth}   change-branch addresses the plugin reserved for a depth
                                      (INTERNAL destinations, maker coinjoin/change outputs)
    overrides      {outpoint: depth}  the user put this coin in that depth
    deposits       {outpoint: depth}  the depth each coin from outside got when it was first
                                      seen (a later change of deposit_depth does not move it)
    coinjoins      {txid: amount}     coinjoins the plugin took part in, with their amount
    coins          {outpoint: [depth, coinjoins, kind]}  the last computed depth of every coin
                                      the wallet holds (what the views show)
    merges         [{txid, depths}]   transactions that spent coins of several depths
    report         what a rebuild could and could not recover (until the user dismisses it)

Invariants:

* **Depths are recomputed, never guessed**: :meth:`DepthRecord.refresh` replays the wallet's own
  transactions in dependency order through :func:`.rules.classify_outputs`, applying the
  record's facts (reserved addresses, user overrides, recorded coinjoins).  The same history and
  record always give the same depths; a wallet restored from seed (no record) gets the depths the
  rules alone give, and :attr:`DepthRecord.report` says what could not be recovered.
* **Reserved addresses are change-branch addresses** marked reserved in Electrum
  (``set_reserved_state_of_address``): Electrum's Receive tab only hands out receiving-branch
  addresses and its coin chooser skips reserved change addresses, so neither gives them away.
* :meth:`DepthRecord.check_one_depth` is the guard every spend of the plugin goes through: it
  raises :class:`MixedDepthsError` for coins of more than one depth (or of unknown depth).
"""
from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, MutableMapping, Optional, Sequence

from electrum_joinmarket.depths import rules
from electrum_joinmarket.depths.rules import (
    DEFAULT_DEPTH_COUNT,
    MAX_DEPTH_COUNT,
    CoinDepth,
    TxFacts,
    classify_outputs,
)
from electrum_joinmarket.errors import Failure, UserError
from electrum_joinmarket.logs import get_logger

__all__ = ["DEPTHS_KEY", "DepthError", "MixedDepthsError", "DepthRecord", "DepthCoin",
           "RebuildReport"]

log = get_logger(__name__)

DEPTHS_KEY = "depths"
RECORD_VERSION = 1
MERGES_LIMIT = 100
# plugin-storage keys of other modules whose coinjoins we fold in (taker/maker histories)
_TAKER_HISTORY_KEY = "taker_history"
_MAKER_HISTORY_KEY = "maker_history"


class DepthError(UserError):
    """A depth request the user can fix (bad depth number, unknown coin…): says how."""


class MixedDepthsError(DepthError):
    """Coins of more than one depth were about to be spent together."""

    failure = Failure.COINS

    def __init__(self, depths: Iterable[int]):
        self.depths = tuple(sorted(set(depths)))
        super().__init__(
            "these coins belong to different JoinMarket depths ("
            + ", ".join(str(d) for d in self.depths)
            + "): spending them together would link their histories. "
            "Spend from one depth at a time.")


@dataclass(frozen=True)
class DepthCoin:
    """One coin of the wallet with its depth (what views and coin selection use)."""
    outpoint: str
    address: str
    value: int
    height: int             # Electrum's block height (<= 0: unconfirmed or local)
    depth: int
    coinjoins: int
    kind: str
    frozen: bool

    @property
    def confirmed(self) -> bool:
        return self.height > 0


@dataclass
class RebuildReport:
    """What happened when the record was (re)built from history without a stored record."""
    time: float
    coins: int
    coinjoins_recognised: int
    deposits: int
    merges: int
    by_depth: dict

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def message(self) -> str:
        lines = [
            "No JoinMarket depth record was found in this wallet file (first use of the "
            "plugin with this wallet, a restore from seed, or a copied wallet file).",
            f"The depths of its {self.coins} coin(s) were worked out from the wallet's own "
            f"transactions: {self.coinjoins_recognised} coinjoin(s) recognised by their equal "
            f"outputs; coins that arrived from outside ({self.deposits}) were put in depth 0.",
            "What a seed cannot restore: depths you chose by hand for deposits, the schedules "
            "(multiple joins) and the list of used PoDLE commitments. Check the Depths view, "
            "move deposits to the depth you want, and create any schedule again.",
        ]
        if self.merges:
            lines.append(f"{self.merges} past transaction(s) spent coins of different depths "
                         "together; their outputs are in the lowest of those depths.")
        return "\n".join(lines)


class DepthRecord:
    """The depth record of one wallet (see module docstring). Thread-safe; every method is
    synchronous and does no network I/O."""

    def __init__(self, wallet: Any, storage: MutableMapping[str, Any], *,
                 save: Optional[Any] = None):
        self.wallet = wallet
        self._storage = storage
        self._save_cb = save if save is not None else getattr(wallet, "save_db", None)
        self._lock = threading.RLock()
        if DEPTHS_KEY not in storage:
            storage[DEPTHS_KEY] = {"version": RECORD_VERSION, "count": DEFAULT_DEPTH_COUNT,
                                   "deposit_depth": 0, "addresses": {}, "overrides": {},
                                   "coinjoins": {}, "deposits": {}, "coins": {}, "merges": []}
        self._rec = storage[DEPTHS_KEY]
        # a record is "fresh" until its first replay has run (and said what it rebuilt)
        self._fresh_record = not self._rec.get("initialised")
        for key, default in (("addresses", {}), ("overrides", {}), ("coinjoins", {}),
                             ("deposits", {}), ("coins", {}), ("merges", [])):
            if key not in self._rec:
                self._rec[key] = default
        self._cache_key: Any = None
        self._current_cache: dict[str, CoinDepth] = {}
        self._computed: dict[str, CoinDepth] = {}
        self._seen: set[str] = set()          # txids replayed into _computed
        self._replayed_gen = -1               # _gen of the last full replay
        self._pins_added = False
        self._merges: list[dict] = []
        self._gen = 0

    # ------------------------------------------------------------------ settings
    @property
    def count(self) -> int:
        return int(self._rec.get("count", DEFAULT_DEPTH_COUNT))

    @property
    def deposit_depth(self) -> int:
        return int(self._rec.get("deposit_depth", 0)) % self.count

    def set_count(self, count: int) -> None:
        """Change the number of depths (coins in depths that no longer exist wrap around)."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_DEPTH_COUNT:
            raise DepthError(f"the number of depths must be between 1 and {MAX_DEPTH_COUNT}")
        with self._lock:
            self._rec["count"] = count
            self._changed(save=True)

    def set_deposit_depth(self, depth: int) -> None:
        """The depth coins arriving from outside are put in from now on (coins already in the
        wallet stay where they are)."""
        self.refresh()           # pin the deposits seen so far to their current depth
        self._check_depth(depth)
        with self._lock:
            self._rec["deposit_depth"] = depth
            self._changed(save=True)

    def _check_depth(self, depth: Any) -> int:
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth < self.count:
            raise DepthError(f"depth must be a whole number from 0 to {self.count - 1}")
        return depth

    # ------------------------------------------------------------------ facts the plugin records
    def note_coinjoin(self, txid: str, cj_amount: int) -> None:
        """The plugin took part in coinjoin ``txid`` of ``cj_amount`` sats (taker or maker)."""
        if not txid or not isinstance(cj_amount, int) or cj_amount <= 0:
            return
        with self._lock:
            if self._rec["coinjoins"].get(txid) != cj_amount:
                self._rec["coinjoins"][txid] = cj_amount
                self._changed()

    def reserve_address(self, depth: int) -> str:
        """A fresh change-branch address of the wallet reserved for ``depth``: never used, never
        reserved before, then marked reserved in Electrum and recorded (saved to disk) before it
        is returned, so it is never handed out twice."""
        self._check_depth(depth)
        w = self.wallet
        if not w.is_deterministic():
            raise DepthError("JoinMarket depths need a wallet with a seed (deterministic "
                             "addresses); this wallet imports single keys")
        with self._lock:
            known = self._rec["addresses"]
            addr = None
            for a in w.get_change_addresses():
                if not (w.adb.is_used(a) or w.is_address_reserved(a) or a in known):
                    addr = a
                    break
            while addr is None:
                a = w.create_new_address(for_change=True)
                if not (w.adb.is_used(a) or w.is_address_reserved(a) or a in known):
                    addr = a
            w.set_reserved_state_of_address(addr, reserved=True)
            known[addr] = depth
            self._changed(save=True)
            return addr

    def address_depth(self, address: str) -> Optional[int]:
        d = self._rec["addresses"].get(address)
        return None if d is None else int(d) % self.count

    def set_coin_depth(self, outpoint: str, depth: int) -> None:
        """The user puts one coin of the wallet in ``depth`` (its change follows it)."""
        self._check_depth(depth)
        if outpoint not in {c.prevout.to_str() for c in self.wallet.get_utxos()}:
            raise DepthError(f"{outpoint} is not a coin of this wallet")
        with self._lock:
            self._rec["overrides"][outpoint] = depth
            self._changed(save=True)

    # ------------------------------------------------------------------ the replay
    def _changed(self, save: bool = False) -> None:
        self._gen += 1
        if save and self._save_cb is not None:
            self._save_cb()

    def _known_coinjoins(self) -> dict[str, int]:
        """Recorded coinjoins, including those in the taker/maker histories."""
        known = {str(k): int(v) for k, v in self._rec["coinjoins"].items()}
        for entry in self._storage.get(_TAKER_HISTORY_KEY, []) or []:
            if isinstance(entry, Mapping) and entry.get("status") == "success":
                txid, amt = entry.get("txid"), entry.get("cj_amount")
                if isinstance(txid, str) and isinstance(amt, int) and amt > 0:
                    known.setdefault(txid, amt)
        for txid, entry in (self._storage.get(_MAKER_HISTORY_KEY, {}) or {}).items():
            amt = entry.get("cj_amount") if isinstance(entry, Mapping) else None
            if isinstance(amt, int) and amt > 0:
                known.setdefault(str(txid), amt)
        return known

    def _facts(self, txid: str) -> Optional[TxFacts]:
        db = self.wallet.db
        our_inputs: list[str] = []
        for addr in db.get_txi_addresses(txid):
            our_inputs.extend(op for op, _v in db.get_txi_addr(txid, addr))
        our_outputs: dict[int, int] = {}
        for addr in db.get_txo_addresses(txid):
            for n, (value, _cb) in db.get_txo_addr(txid, addr).items():
                our_outputs[int(n)] = int(value)
        if not our_outputs:
            return TxFacts(txid, tuple(our_inputs), len(our_inputs), {}, ())
        n_inputs, values = len(our_inputs), tuple(our_outputs.get(i, 0)
                                                 for i in range(max(our_outputs) + 1))
        if our_inputs:         # the rules look at foreign inputs/outputs only when we spent
            tx = db.get_transaction(txid)
            if tx is not None:
                n_inputs = len(tx.inputs())
                values = tuple(int(o.value) for o in tx.outputs())
        return TxFacts(txid, tuple(our_inputs), n_inputs, our_outputs, values)

    def _order(self, txids: Sequence[str]) -> list[str]:
        """Parents before children; among ready transactions, by block height and position."""
        db, adb = self.wallet.db, self.wallet.adb
        present = set(txids)
        parents: dict[str, set] = {}
        children: dict[str, list] = {t: [] for t in txids}
        for t in txids:
            ps = set()
            for addr in db.get_txi_addresses(t):
                for op, _v in db.get_txi_addr(t, addr):
                    p = op.split(":")[0]
                    if p in present and p != t:
                        ps.add(p)
            parents[t] = ps
            for p in ps:
                children[p].append(t)

        def key(t: str) -> tuple:
            info = adb.get_tx_height(t)
            return (adb.tx_height_to_sort_height(info.height()), info.txpos or 0, t)
        ready = [key(t) for t in txids if not parents[t]]
        heapq.heapify(ready)
        out: list[str] = []
        waiting = {t: len(ps) for t, ps in parents.items()}
        while ready:
            t = heapq.heappop(ready)[2]
            out.append(t)
            for c in children[t]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    heapq.heappush(ready, key(c))
        if len(out) != len(txids):        # a cycle cannot happen in bitcoin; be safe anyway
            out.extend(t for t in txids if t not in set(out))
        return out

    def refresh(self) -> dict[str, CoinDepth]:
        """Recompute the depth of every coin from the wallet's history and the record; store
        what changed. Returns {outpoint: CoinDepth} for the wallet's current coins.

        Transactions that arrived since the last replay are replayed on top of it (each costs
        one transaction's work); the whole history is replayed again when the record changed,
        a transaction left the wallet, or a new one is the parent of one already replayed
        (Electrum may learn a child before its parent)."""
        with self._lock:
            txids = list(self.wallet.db.list_transactions())
            cache_key = (self._gen, len(txids), hash(frozenset(txids)))
            if cache_key == self._cache_key:
                return self._current_cache
            present = set(txids)
            new = [t for t in txids if t not in self._seen]
            incremental = (self._seen and self._replayed_gen == self._gen
                           and self._seen <= present and not self._parents_seen_children(new))
            if incremental:
                recognised = self._replay(self._order(new), self._computed, self._merges)
            else:
                self._computed, self._merges, self._seen = {}, [], set()
                recognised = self._replay(self._order(txids), self._computed, self._merges)
                self._replayed_gen = self._gen
            self._seen.update(txids)
            self._cache_key = cache_key
            self._current_cache = self._current()
            self._store(recognised, force_save=self._pins_added)
            return self._current_cache

    def _parents_seen_children(self, new: Sequence[str]) -> bool:
        """Does a replayed transaction spend an output of one of ``new``?"""
        db = self.wallet.db
        for t in new:
            for addr in db.get_txo_addresses(t):
                for n in db.get_txo_addr(t, addr):
                    spender = db.get_spent_outpoint(t, n)
                    if spender is not None and spender in self._seen:
                        return True
        return False

    def _replay(self, ordered: Sequence[str], depth_of: dict[str, CoinDepth],
                merges: list[dict]) -> int:
        """Classify the outputs of ``ordered`` (parents first) into ``depth_of``; append merges;
        pin new deposits. Returns how many coinjoins were recognised by their shape only."""
        count, deposit = self.count, self.deposit_depth
        known = self._known_coinjoins()
        overrides = {k: int(v) % count for k, v in self._rec["overrides"].items()}
        addresses = {k: int(v) % count for k, v in self._rec["addresses"].items()}
        pinned = self._rec["deposits"]
        new_pins: dict[str, int] = {}
        recognised = 0
        for txid in ordered:
            facts = self._facts(txid)
            if facts is None or not facts.our_outputs:
                continue
            res = classify_outputs(facts, depth_of, count=count, deposit_depth=deposit,
                                   known_cj_amount=known.get(txid))
            if res.cj_amount is not None and txid not in known:
                recognised += 1
            if res.merged_depths:
                merges.append({"txid": txid, "depths": list(res.merged_depths)})
            for n, cd in res.outputs.items():
                op = f"{txid}:{n}"
                if cd.kind == rules.DEPOSIT and not facts.our_inputs:
                    if op in pinned:
                        cd = CoinDepth(int(pinned[op]) % count, 0, rules.DEPOSIT)
                    else:
                        new_pins[op] = cd.depth
                if op in overrides:
                    cd = CoinDepth(overrides[op], cd.coinjoins, rules.USER)
                elif cd.kind in (rules.DEPOSIT, rules.CHANGE, rules.CJ_CHANGE, rules.CJ_OUT):
                    addr_depth = self._output_address_depth(facts, n, addresses)
                    if addr_depth is not None and addr_depth != cd.depth:
                        cd = CoinDepth(addr_depth, cd.coinjoins, rules.ADDRESS)
                depth_of[op] = cd
        for op, d in new_pins.items():
            pinned[op] = d
        self._pins_added = bool(new_pins)
        return recognised

    def _output_address_depth(self, facts: TxFacts, n: int,
                              addresses: Mapping[str, int]) -> Optional[int]:
        if not addresses:
            return None
        for addr in self.wallet.db.get_txo_addresses(facts.txid):
            if n in self.wallet.db.get_txo_addr(facts.txid, addr):
                return addresses.get(addr)
        return None

    def _current(self) -> dict[str, CoinDepth]:
        out = {}
        for c in self.wallet.get_utxos():
            op = c.prevout.to_str()
            out[op] = self._computed.get(op) or CoinDepth(self.deposit_depth, 0, rules.DEPOSIT)
        return out

    def _store(self, recognised: int, force_save: bool = False) -> None:
        current = self._current_cache
        snapshot = {op: [cd.depth, cd.coinjoins, cd.kind] for op, cd in sorted(current.items())}
        changed = force_save
        if dict(self._rec["coins"]) != snapshot:
            self._rec["coins"] = snapshot
            changed = True
        merges = self._merges[-MERGES_LIMIT:]
        if list(self._rec["merges"]) != merges:
            self._rec["merges"] = merges
            changed = True
        if self._fresh_record:
            self._fresh_record = False
            self._rec["initialised"] = True
            # only a history with spends of ours has depths to work out (coinjoins, change);
            # a wallet that only received coins has nothing a rebuild could get wrong
            if any(self.wallet.db.get_txi_addresses(t) for t in self.wallet.db.list_transactions()):
                by_depth: dict[str, int] = {}
                for cd in current.values():
                    by_depth[str(cd.depth)] = by_depth.get(str(cd.depth), 0) + 1
                report = RebuildReport(
                    time=time.time(), coins=len(current), coinjoins_recognised=recognised,
                    deposits=sum(1 for cd in current.values() if cd.kind == rules.DEPOSIT),
                    merges=len(self._merges), by_depth=by_depth)
                self._rec["report"] = report.to_dict()
                log.info("depth record rebuilt from history: %d coins, %d coinjoins recognised",
                         report.coins, report.coinjoins_recognised)
            changed = True
        if changed and self._save_cb is not None:
            self._save_cb()

    # ------------------------------------------------------------------ queries
    def report(self) -> Optional[RebuildReport]:
        raw = self._rec.get("report")
        if not raw:
            return None
        return RebuildReport(**{k: raw[k] for k in RebuildReport.__dataclass_fields__})

    def dismiss_report(self) -> None:
        with self._lock:
            if self._rec.get("report") is not None:
                self._rec.pop("report")
                self._changed(save=True)

    def merges(self) -> list[dict]:
        self.refresh()
        return [dict(m) for m in self._merges]

    def coins(self, depth: Optional[int] = None) -> list[DepthCoin]:
        """The wallet's coins with their depth (all, or those of ``depth``), largest first."""
        current = self.refresh()
        w = self.wallet
        out = []
        for c in w.get_utxos():
            op = c.prevout.to_str()
            cd = current[op]
            if depth is not None and cd.depth != depth:
                continue
            out.append(DepthCoin(op, c.address, c.value_sats(), int(c.block_height or 0),
                                 cd.depth, cd.coinjoins, cd.kind,
                                 bool(w.is_frozen_address(c.address) or w.is_frozen_coin(c))))
        out.sort(key=lambda x: (-x.value, x.outpoint))
        return out

    def depth_of(self, outpoint: str) -> Optional[CoinDepth]:
        """Depth of an unspent coin of the wallet (None if it is not one)."""
        return self.refresh().get(outpoint)

    def history_depth(self, outpoint: str) -> Optional[CoinDepth]:
        """Depth any output of the wallet had when it was created, spent or not (None if it
        never paid us): what a check of a past transaction's inputs needs."""
        self.refresh()
        return self._computed.get(outpoint)

    def check_tx_inputs(self, tx: Any) -> Optional[int]:
        """The depth of our inputs of ``tx`` (None if it spends none of ours);
        :class:`MixedDepthsError` if they come from several depths."""
        self.refresh()
        depths = set()
        for txin in tx.inputs():
            op = txin.prevout.to_str()
            cd = self._computed.get(op)
            if cd is None:
                addr = self.wallet.adb.get_txin_address(txin)
                if addr and self.wallet.is_mine(addr):
                    cd = CoinDepth(self.deposit_depth)
            if cd is not None:
                depths.add(cd.depth)
        if len(depths) > 1:
            raise MixedDepthsError(depths)
        return depths.pop() if depths else None

    def spendable_outpoints(self, depth: int, *, confirmed_only: bool = True) -> list[str]:
        """Outpoints of ``depth`` the plugin may spend: not frozen, confirmed if asked."""
        self._check_depth(depth)
        return [c.outpoint for c in self.coins(depth)
                if not c.frozen and (c.confirmed or not confirmed_only)]

    def balances(self, *, confirmed_only: bool = True, include_frozen: bool = False) -> dict[int, int]:
        """{depth: balance in sats} for every depth (0 for empty ones)."""
        out = {d: 0 for d in range(self.count)}
        for c in self.coins():
            if (c.confirmed or not confirmed_only) and (include_frozen or not c.frozen):
                out[c.depth] += c.value
        return out

    def check_one_depth(self, outpoints: Iterable[str]) -> int:
        """The depth all ``outpoints`` are in; :class:`MixedDepthsError` if they span several,
        :class:`DepthError` if one is not a coin of the wallet."""
        current = self.refresh()
        depths = set()
        for op in outpoints:
            cd = current.get(op)
            if cd is None:
                raise DepthError(f"{op} is not an unspent coin of this wallet")
            depths.add(cd.depth)
        if not depths:
            raise DepthError("no coins")
        if len(depths) > 1:
            raise MixedDepthsError(depths)
        return depths.pop()

    def summary(self) -> dict:
        """JSON-able view: per depth balance, coin count, coins (what the Depths view and the
        ``joinmarket_depths`` command show)."""
        coins = self.coins()
        depths = []
        for d in range(self.count):
            mine = [c for c in coins if c.depth == d]
            depths.append({
                "depth": d,
                "confirmed": sum(c.value for c in mine if c.confirmed and not c.frozen),
                "unconfirmed": sum(c.value for c in mine if not c.confirmed),
                "frozen": sum(c.value for c in mine if c.frozen),
                "coins": [{"outpoint": c.outpoint, "address": c.address, "value": c.value,
                           "confirmed": c.confirmed, "coinjoins": c.coinjoins, "kind": c.kind,
                           "frozen": c.frozen} for c in mine],
            })
        report = self.report()
        return {"count": self.count, "deposit_depth": self.deposit_depth, "depths": depths,
                "merges": self.merges(),
                "rebuild_report": report.message() if report else None}
