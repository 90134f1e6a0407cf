"""A JoinMarket maker (yield generator) running on an Electrum wallet.

One :class:`Maker` per wallet.  It is the role handler of a :class:`~.client.DaemonClient`
(docs/protocol.md §10.3 "Maker"): ``JMInit → JMInitProto → JMStartMC → JMUp → JMSetup("MAKER",
offers) → JMSetupDone``; per taker ``JMAuthReceived → JMIOAuth``, ``JMTXReceived → JMTXSigs``,
``JMTXBroadcast``; after our coins moved ``JMAnnounceOffers``.

Offers (§9, Ref ``YieldGeneratorBasic``): one offer, oid 0, of the wallet's script type (``sw0*``
for p2wpkh, ``sw*`` for p2sh-p2wpkh wallets); ``maxsize = confirmed spendable balance of the
richest depth − max(27 300, txfee)``: a coinjoin spends coins of one JoinMarket depth only
(:mod:`electrum_joinmarket.depths`), the lowest-numbered depth that can pay, its coinjoin output
goes to an address reserved for the next depth and its change to one reserved for the same
depth; relative offers lift ``minsize`` so the fee is ≥ 1.5 × txfee; absolute
offers announce ``cjfee = txfee + cjfee_a``.  Coins counted: confirmed, not frozen in Electrum
(coin or address), of the wallet's script type, not excluded (fidelity-bond coins).

Money-safety invariants (docs/architecture.md, docs/testing.md T1–T9):

* **Nothing is revealed before the taker is checked** (``!auth``, §7.5): the revelation parses and
  the PoDLE verifies against the ``!fill`` commitment for an index in ``0..retries−1`` (T6); the
  commitment (canonical lower-case hex) was never used with us (T5); the commitment utxo exists,
  is unspent, has ≥ ``taker_utxo_age`` confirmations, is worth ≥ ``amtpercent`` % of the amount
  and is owned by ``P`` (T7, chain answers from :mod:`.chain`, SPV-checked); the amount is inside
  *our* offer's range and the net fee ``real_cjfee − txfee`` is ≥ 0 (T9).  A chain failure is not
  blamed on the taker, but nothing is revealed either.
* **Commitment recorded before answering**: it is written to the wallet file (plugin storage,
  ``wallet.save_db``) before ``JMIOAuth`` is sent, and never forgotten.
* **Never sign what we did not agree**: ``!tx`` is checked with
  :func:`.makertx.verify_taker_tx` against *our* session record (our offered utxos, our two
  addresses, the amount, our offer) — never against what the daemon echoes back.  A rejected
  ``!tx`` (T1–T4, T9, malformed) drops the session without any signature; a ``!tx`` for a nick
  without a live session, or a second ``!tx`` in a signed session, is refused (T8).  Only the
  offered inputs are signed (SIGHASH_ALL, :func:`.makertx.maker_sign`).
* **Reservations never outlive a session** (invariant 2): coins handed out in ``!ioauth`` are
  reserved *in memory only* (never frozen in the wallet file) for that taker until the
  coinjoin is seen by the wallet, the session is dropped, the daemon link is lost, the maker
  stops, or ``session_timeout`` passes.  Another session never gets a reserved coin.  A user
  spending a reserved coin from Electrum simply invalidates the taker's transaction.
* **Addresses are never handed out twice**: coinjoin and change addresses are unused change-branch
  addresses of the wallet, marked *reserved* in Electrum (persisted) when handed out, so neither
  another session nor Electrum's own change selection picks them again.  Exception (issue 12
  M2): the two addresses of a session that ended *without our signature* go to a pool
  (``maker_spare_addresses`` in plugin storage, still reserved in Electrum) and are handed out
  again, for the JoinMarket depth they were recorded for, lowest index first, before any new
  address — otherwise every failed session (cheap for a taker to cause) would push the next
  coinjoin output further past Electrum's change gap limit (10), where a wallet restored from
  its seed no longer finds it.  The cost: the taker of the failed session saw them, and can
  recognise our output if they appear in a later coinjoin.
  Addresses of a session we signed are never reused (that transaction may still confirm), nor is
  an address with history or one a live session holds.
* **Broadcast** (``!push``) only a transaction we signed in a session (inputs, outputs, version,
  locktime equal to the one we signed; NG behaviour, safer than Ref).
* **Hostile input** never raises out of a handler: every refusal is logged at INFO with its case
  id, recorded in :attr:`Maker.refusals`, and the session is dropped.
* **Secrets**: private keys and the password are never logged.  The password (if the wallet has
  one) is checked at construction and held in this object only while the maker runs
  (:meth:`stop` drops it); we do not use Electrum 4.8's ``wallet.unlock`` so that stopping the
  maker never changes the unlock state the user chose for the wallet elsewhere.

Everything runs on Electrum's asyncio loop; wallet calls are synchronous and do not block on the
network.  Per-wallet state lives in the wallet's plugin storage (``plugin_data.joinmarket``):
``maker_commitments`` {C: time} and ``maker_history`` {txid: record}.
"""
from __future__ import annotations

import asyncio
import collections
import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Mapping, MutableMapping, Optional, Sequence

from electrum_joinmarket.chain.server import ChainBackend, ChainError, ElectrumChain
from electrum_joinmarket.errors import Failure, JoinMarketError, UserError
from electrum_joinmarket.link.client import DaemonClient, DaemonError
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.protocol.ioauth import make_ioauth
from electrum_joinmarket.protocol.podle import (
    CommitmentPolicy,
    PoDLEError,
    normalize_commitment,
    parse_revelation,
    pubkey_matches_script,
    pubkey_script,
)
from electrum_joinmarket.stages import MakerSessionState, RefusalStage
from electrum_joinmarket.tx.coins import coin_outpoint, coin_value
from electrum_joinmarket.tx.errors import TakerTxRejected, TxBuildError
from electrum_joinmarket.tx.maker_tx import coinjoin_txid, maker_sign, verify_taker_tx
from electrum_joinmarket.tx.taker_tx import wire_to_tx_bytes
from jmcore.aio import wait_for
from jmcore.constants import (
    DUST_THRESHOLD,
    MAX_MAKER_INPUTS,
    TAKER_UTXO_AGE,
    TAKER_UTXO_AMTPERCENT,
    TAKER_UTXO_RETRIES,
)
from jmcore.errors import OfferError
from jmcore.offers import Offer, canonical_cjfee

__all__ = ["PLUGIN_STORAGE_NAME", "COMMITMENTS_KEY", "HISTORY_KEY", "SPARE_ADDRESSES_KEY",
           "MakerError", "MakerSettings", "Refusal", "Maker", "plugin_storage"]

log = get_logger(__name__)

PLUGIN_STORAGE_NAME = "joinmarket"
COMMITMENTS_KEY = "maker_commitments"
HISTORY_KEY = "maker_history"
SPARE_ADDRESSES_KEY = "maker_spare_addresses"      # M2: addresses of sessions we never signed

_NACL_PUB_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
_WALLET_OFFER_PREFIX = {"p2wpkh": "sw0", "p2wpkh-p2sh": "sw"}
_SCRIPT_NAME = {"p2wpkh": "p2wpkh", "p2wpkh-p2sh": "p2sh-p2wpkh"}


class MakerError(UserError):
    """The maker cannot start or run (wallet unsuitable, bad settings, no daemon…)."""


def plugin_storage(wallet: Any) -> MutableMapping[str, Any]:
    """The wallet's plugin storage for ``joinmarket`` (what ``BasePlugin.get_storage`` returns),
    also usable when the plugin object is not at hand."""
    return wallet.db.get_plugin_storage().setdefault(PLUGIN_STORAGE_NAME, {})


# ---------------------------------------------------------------------------------------------
# settings

@dataclass(frozen=True)
class MakerSettings:
    """Yield-generator settings (Ref ``[YIELDGENERATOR]`` + ``[POLICY]`` taker_utxo_*).

    ``ordertype``: ``"reloffer"``/``"absoffer"`` or a full type (``sw0reloffer``…); the script
    prefix always follows the wallet (``sw0`` p2wpkh, ``sw`` p2sh-p2wpkh).  ``cjfee_a`` is the
    profit of an absolute offer (announced ``cjfee = txfee + cjfee_a``, as Ref).  ``maxsize``
    None = derived from the balance (a number caps it).  ``excluded_outpoints`` are never
    offered nor used (fidelity-bond coins).  ``session_timeout`` bounds every coin reservation.
    """
    ordertype: str = "sw0reloffer"
    cjfee_r: str = "0.00002"
    cjfee_a: int = 500
    txfee: int = 0
    minsize: int = 100_000
    maxsize: Optional[int] = None
    taker_utxo_age: int = TAKER_UTXO_AGE
    taker_utxo_amtpercent: int = TAKER_UTXO_AMTPERCENT
    taker_utxo_retries: int = TAKER_UTXO_RETRIES
    session_timeout: float = 600.0
    min_coin_confirmations: int = 1
    max_inputs: int = MAX_MAKER_INPUTS
    excluded_outpoints: frozenset = frozenset()
    poll_interval: float = 2.0
    wait_up_timeout: float = 120.0
    setup_timeout: float = 30.0
    maker_timeout_sec: int = 60

    def __post_init__(self) -> None:
        kind = self.ordertype[-8:] if isinstance(self.ordertype, str) else ""
        if kind not in ("reloffer", "absoffer"):
            raise MakerError(f"ordertype must end in reloffer/absoffer: {self.ordertype!r}")
        for name in ("txfee", "minsize", "cjfee_a", "taker_utxo_age", "taker_utxo_amtpercent",
                     "min_coin_confirmations"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise MakerError(f"{name} must be a non-negative int")
        if not 1 <= self.taker_utxo_retries <= 256:
            raise MakerError("taker_utxo_retries must be in 1..256")
        if self.maxsize is not None and (isinstance(self.maxsize, bool) or
                                         not isinstance(self.maxsize, int) or self.maxsize < 0):
            raise MakerError("maxsize must be None or a non-negative int")
        try:
            rel = Decimal(str(self.cjfee_r))
        except InvalidOperation:
            raise MakerError(f"cjfee_r is not a number: {self.cjfee_r!r}") from None
        if self.is_relative and not (0 < rel < 1):
            raise MakerError("cjfee_r must be in (0, 1)")
        if not 1 <= self.max_inputs <= MAX_MAKER_INPUTS:
            raise MakerError(f"max_inputs must be in 1..{MAX_MAKER_INPUTS}")
        if self.session_timeout <= 0 or self.poll_interval <= 0:
            raise MakerError("session_timeout and poll_interval must be positive")

    @property
    def is_relative(self) -> bool:
        return self.ordertype.endswith("reloffer")

    @property
    def policy(self) -> CommitmentPolicy:
        return CommitmentPolicy(self.taker_utxo_age, self.taker_utxo_amtpercent,
                                self.taker_utxo_retries)

    def ordertype_for(self, txin_type: str) -> str:
        prefix = _WALLET_OFFER_PREFIX.get(txin_type)
        if prefix is None:
            raise MakerError(f"unsupported wallet script type {txin_type!r} "
                             f"(need p2wpkh or p2wpkh-p2sh)")
        return prefix + ("reloffer" if self.is_relative else "absoffer")


# ---------------------------------------------------------------------------------------------
# sessions

@dataclass(frozen=True)
class Refusal:
    """One refused taker message: docs/testing.md case id (or ``chain``/``internal``/``no-coins``)."""
    nick: str
    case: str
    reason: str
    stage: RefusalStage
    time: float


@dataclass
class _Session:
    nick: str
    offer: Offer
    amount: int
    commitment: str
    coins: list                     # wallet PartialTxInputs offered in !ioauth
    cj_addr: str
    change_addr: str
    deadline: float                 # loop time
    state: MakerSessionState = MakerSessionState.IOAUTH     # -> SIGNED
    txid: Optional[str] = None      # of the coinjoin we signed, when the !tx fixes it
    skeleton: Optional[tuple] = None
    depth: int = 0                  # the JoinMarket depth the coins come from

    @property
    def outpoints(self) -> list[str]:
        return [coin_outpoint(c) for c in self.coins]

    @property
    def real_cjfee(self) -> int:
        return self.offer.real_cjfee(self.amount)

    @property
    def earned(self) -> int:
        return self.real_cjfee - self.offer.txfee


@dataclass
class _Signed:
    """A transaction we signed (kept after its session ended, to recognise a later push or
    confirmation and record the earning)."""
    skeleton: tuple
    outpoints: tuple
    amount: int
    real_cjfee: int
    txfee: int
    signed_at: float
    depth: int = 0


class _Refused(JoinMarketError):
    def __init__(self, case: str, reason: str):
        super().__init__(f"[{case}] {reason}")
        self.case = case
        self.reason = reason


def tx_skeleton(tx: Any) -> tuple:
    """What a signature commits to, minus the signatures: version, locktime, every input's
    outpoint and nSequence, every output.  Equal skeletons = the same coinjoin."""
    return (int(tx.version), int(tx.locktime),
            tuple((i.prevout.to_str(), int(i.nsequence)) for i in tx.inputs()),
            tuple((bytes(o.scriptpubkey).hex(), int(o.value)) for o in tx.outputs()))


def _parse_raw_tx(raw: Any) -> Any:
    from electrum.transaction import Transaction
    if isinstance(raw, str):
        raw = wire_to_tx_bytes(raw)
    if not isinstance(raw, (bytes, bytearray)) or not raw or len(raw) > 400_000:
        raise TxBuildError("transaction bytes missing or too large")
    tx = Transaction(bytes(raw))
    tx.deserialize()
    return tx


# ---------------------------------------------------------------------------------------------
# the maker

class Maker:
    """A yield generator for one Electrum wallet (see the module docstring).

    ``wallet``: a loaded, synced Electrum wallet (p2wpkh or p2wpkh-p2sh, not watching-only).
    ``password``: the wallet password (None if it has none); checked here.
    ``storage``: the wallet's plugin storage (default :func:`plugin_storage`); ``save`` is called
    after every change that must be durable (default ``wallet.save_db``).
    ``electrum_network``: Electrum's ``Network`` (default ``wallet.network``) for chain questions
    and broadcasts; ``chain`` overrides the chain backend (tests count queries).
    """

    def __init__(self, wallet: Any, settings: Optional[MakerSettings] = None, *,
                 password: Optional[str] = None,
                 storage: Optional[MutableMapping[str, Any]] = None,
                 save: Optional[Callable[[], None]] = None,
                 electrum_network: Any = None, chain: Optional[ChainBackend] = None,
                 nick_key: Any = None, depths: Any = None):
        self.wallet = wallet
        self.settings = settings or MakerSettings()
        txin_type = str(getattr(wallet, "txin_type", None))
        self.ordertype = self.settings.ordertype_for(txin_type)
        if self.settings.ordertype not in (self.ordertype, "reloffer", "absoffer"):
            log.info("maker: offer type %s for this %s wallet (asked %s)", self.ordertype,
                     _SCRIPT_NAME[txin_type], self.settings.ordertype)
        if wallet.is_watching_only():
            raise MakerError("a watching-only wallet cannot be a maker")
        self._check_password(password)
        self._password: Optional[str] = password
        self.storage = storage if storage is not None else plugin_storage(wallet)
        self.storage.setdefault(COMMITMENTS_KEY, {})
        self.storage.setdefault(HISTORY_KEY, {})
        self._save = save or wallet.save_db
        self.electrum_network = electrum_network or getattr(wallet, "network", None)
        self._chain = chain
        self._tells: set[asyncio.Future] = set()      # refusals being told to takers
        self._nick_key = nick_key
        if depths is None:
            from electrum_joinmarket.depths.record import DepthRecord
            depths = DepthRecord(wallet, self.storage, save=self._save)
        self.depths = depths
        self.client: Optional[DaemonClient] = None
        self.running = False
        self.sessions: dict[str, _Session] = {}
        self._signed: "collections.OrderedDict[tuple, _Signed]" = collections.OrderedDict()
        self.announced: list[dict] = []
        self.refusals: collections.deque[Refusal] = collections.deque(maxlen=200)
        self.announcements = 0          # JMAnnounceOffers sent
        self.broadcasts = 0
        self._monitor: Optional[asyncio.Task] = None
        self._wake: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._registered = False
        self._auth_gen: dict[str, int] = {}

    # -------------------------------------------------------------------------- password
    def _check_password(self, password: Optional[str]) -> None:
        if self.wallet.has_keystore_encryption():
            if not password:
                raise MakerError("this wallet is password-protected: the maker needs the "
                                 "password to sign")
            try:
                self.wallet.check_password(password)
            except Exception:
                raise MakerError("wrong wallet password", failure=Failure.PASSWORD) from None

    # -------------------------------------------------------------------------- chain
    @property
    def chain(self) -> ChainBackend:
        if self._chain is None:
            self._chain = ElectrumChain(self.electrum_network)
        return self._chain

    # -------------------------------------------------------------------------- coins
    def _reserved(self, except_nick: Optional[str] = None) -> set[str]:
        return {op for n, s in self.sessions.items() if n != except_nick for op in s.outpoints}

    def _eligible_coins(self, exclude: Iterable[str] = ()) -> list:
        """Confirmed (≥ min_coin_confirmations) spendable coins of the wallet's own script type;
        not frozen (Electrum), not excluded (bonds), not in ``exclude``."""
        w = self.wallet
        tip = w.adb.get_local_height()
        excluded = set(self.settings.excluded_outpoints) | set(exclude)
        out = []
        for c in w.get_spendable_coins(nonlocal_only=True, confirmed_only=True):
            op = coin_outpoint(c)
            if op in excluded:
                continue
            h = c.block_height
            if h is None or h <= 0 or tip - h + 1 < self.settings.min_coin_confirmations:
                continue
            if w.get_txin_type(c.address) != w.txin_type:
                continue
            out.append(c)
        return out

    def _by_depth(self, coins: Iterable[Any]) -> dict[int, list]:
        """``coins`` grouped by JoinMarket depth (every depth present, maybe empty)."""
        current = self.depths.refresh()
        out: dict[int, list] = {d: [] for d in range(self.depths.count)}
        for c in coins:
            cd = current.get(coin_outpoint(c))
            if cd is not None:
                out[cd.depth].append(c)
        return out

    def depth_balances(self) -> dict[int, int]:
        """Offerable balance of each depth (confirmed, eligible coins)."""
        return {d: sum(coin_value(c) for c in cs)
                for d, cs in self._by_depth(self._eligible_coins()).items()}

    def offers(self) -> list[dict]:
        """The offer list for the current wallet state (empty if no depth can carry an offer).
        Like Ref's yield generator, the offer is sized by the richest depth: one coinjoin
        never spends coins of two depths.  Reserved coins still count: reservations are
        short-lived."""
        s = self.settings
        balance = max(self.depth_balances().values(), default=0)
        maxsize = balance - max(DUST_THRESHOLD, s.txfee)
        if s.maxsize is not None:
            maxsize = min(maxsize, s.maxsize)
        if s.is_relative:
            cjfee: Any = str(Decimal(str(s.cjfee_r)))
            # Ref: minsize bumped so the fee is always at least 1.5x the miner-fee contribution
            minsize = max(int(Decimal(15) * s.txfee / (Decimal(10) * Decimal(cjfee))), s.minsize)
        else:
            cjfee = s.txfee + s.cjfee_a
            minsize = s.minsize
        minsize = max(minsize, DUST_THRESHOLD)
        if maxsize < minsize:
            return []
        try:
            Offer(self.ordertype, 0, minsize, maxsize, s.txfee,
                  canonical_cjfee(self.ordertype, cjfee))
        except OfferError as exc:
            log.warning("maker: cannot build an offer: %s", exc)
            return []
        return [{"oid": 0, "ordertype": self.ordertype, "minsize": minsize, "maxsize": maxsize,
                 "txfee": s.txfee, "cjfee": cjfee}]

    def _offer_by_oid(self, oid: Any) -> Optional[Offer]:
        for o in self.announced:
            if str(o.get("oid")) == str(oid):
                return Offer.from_dict(o, lift_dusty_minsize=False)
        return None

    def _select_coins(self, need: int, exclude: set[str]) -> Optional[tuple[int, list]]:
        """(depth, coins): the lowest-numbered depth whose unreserved coins cover ``need`` (Ref
        ``select_input_mixdepth``), and from it few inputs: the smallest single coin covering
        ``need``, else the largest coins until covered (at most ``max_inputs``); None if no
        depth can."""
        for depth, in_depth in sorted(self._by_depth(self._eligible_coins(exclude)).items()):
            coins = sorted(in_depth, key=lambda c: (coin_value(c), coin_outpoint(c)))
            single = [c for c in coins if coin_value(c) >= need]
            if single:
                return depth, [single[0]]
            chosen, total = [], 0
            for c in reversed(coins):
                chosen.append(c)
                total += coin_value(c)
                if total >= need:
                    if len(chosen) <= self.settings.max_inputs:
                        return depth, chosen
                    break
        return None

    def _session_addresses(self, depth: int) -> tuple[str, str]:
        """(coinjoin address, change address) of a session paid from ``depth``: the coinjoin
        output goes to the next depth, the change stays in ``depth``. Each is first a spare of
        that depth (an address of a session that ended unsigned, M2: :meth:`_spare_addresses`),
        else a fresh one reserved for it (:meth:`DepthRecord.reserve_address`: reserved in
        Electrum and recorded, never handed out twice)."""
        from electrum_joinmarket.depths.rules import next_depth
        cj_depth = next_depth(depth, self.depths.count)
        cj_addr = self._spare_for(cj_depth) or self.depths.reserve_address(cj_depth)
        change_addr = self._spare_for(depth) or self.depths.reserve_address(depth)
        return cj_addr, change_addr

    def _spare_for(self, depth: int) -> Optional[str]:
        """The lowest spare address (nearest the used ones) recorded for ``depth``, taken out
        of the pool; spares no longer usable are dropped from it."""
        w = self.wallet
        held = {a for x in self.sessions.values() for a in (x.cj_addr, x.change_addr)}
        pool = sorted((a for a in self.storage.get(SPARE_ADDRESSES_KEY) or ()
                       if a not in held and w.is_mine(a) and not w.adb.is_used(a)),
                      key=self._address_order)
        out = next((a for a in pool if self.depths.address_depth(a) == depth), None)
        if out is not None:
            pool.remove(out)
        if SPARE_ADDRESSES_KEY in self.storage or pool:
            self.storage[SPARE_ADDRESSES_KEY] = pool
        return out

    def _address_order(self, addr: str) -> tuple:
        index = self.wallet.get_address_index(addr)
        return tuple(index) if isinstance(index, (list, tuple)) else (1 << 31,)

    def _spare_addresses(self, addrs: Iterable[str]) -> None:
        """M2: addresses handed out in a session that ended without our signature go back to
        the pool :meth:`_session_addresses` draws from first, each for the depth it was
        recorded for (they stay reserved in Electrum)."""
        pool = list(self.storage.get(SPARE_ADDRESSES_KEY) or ())
        for addr in addrs:
            if addr not in pool and not self.wallet.adb.is_used(addr):
                pool.append(addr)
        self.storage[SPARE_ADDRESSES_KEY] = pool
        self._save()

    # -------------------------------------------------------------------------- commitments
    def commitment_used(self, commitment: str) -> bool:
        return normalize_commitment(commitment) in self.storage[COMMITMENTS_KEY]

    def _mark_commitment(self, commitment: str) -> None:
        c = normalize_commitment(commitment)
        self.storage[COMMITMENTS_KEY][c] = int(time.time())
        self._save()

    def used_commitments(self) -> frozenset:
        return frozenset(self.storage[COMMITMENTS_KEY].keys())

    # -------------------------------------------------------------------------- history
    def history(self) -> list[dict]:
        return sorted((dict(v) for v in self.storage[HISTORY_KEY].values()),
                      key=lambda r: r.get("time", 0))

    def earned_by_depth(self) -> dict[int, int]:
        """Earnings per depth the coinjoin's inputs came from (its change stays there)."""
        out: dict[int, int] = {}
        for r in self.storage[HISTORY_KEY].values():
            d = int(r.get("depth", 0))
            out[d] = out.get(d, 0) + int(r.get("earned", 0))
        return out

    def earned_total(self) -> int:
        return sum(int(r.get("earned", 0)) for r in self.storage[HISTORY_KEY].values())

    # -------------------------------------------------------------------------- lifecycle
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def start(self, host: str, port: int, chan_configs: list[dict],
                    network: Optional[str] = None) -> None:
        """Connect to jmdaemon at ``host:port``, bring the channels up and announce our offers.
        ``network`` is the JoinMarket network name (default from Electrum's chain)."""
        if self.running:
            raise MakerError("the maker is already running")
        offers = self.offers()
        if not offers:
            raise MakerError(f"no offer possible: the wallet's confirmed balance is below the "
                             f"minimum size ({self.settings.minsize} sat) plus dust; fund the "
                             f"wallet (coins need {self.settings.min_coin_confirmations} "
                             f"confirmation) or lower --minsize", failure=Failure.COINS)
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.client = DaemonClient(network=network or _jm_network_name(),
                                   chan_configs=chan_configs, handler=self,
                                   maker_timeout_sec=self.settings.maker_timeout_sec,
                                   nick_key=self._nick_key)
        try:
            await self.client.connect(host, port)
            await self.client.wait_up(self.settings.wait_up_timeout, on_report=self._channels)
            self.announced = offers
            await self.client.setup("MAKER", offers, False, timeout=self.settings.setup_timeout)
        except BaseException:
            self.client.close()
            self.client = None
            self.announced = []
            raise
        self.running = True
        self._register_callbacks()
        self._monitor = asyncio.ensure_future(self._monitor_loop())
        log.info("maker %s running: %s", self.nick, _fmt_offers(offers))

    def stop(self) -> None:
        """Stop: release every reservation, close the daemon link, forget the password."""
        was = self.running
        self.running = False
        for nick in list(self.sessions):
            self._drop(nick, "maker stopped")
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
        self._unregister_callbacks()
        if self.client is not None:
            self.client.close()
        self._password = None
        if was:
            log.info("maker stopped")

    def _channels(self, report: Any) -> None:
        log.info("maker channels: %s", report.summary())

    @property
    def nick(self) -> Optional[str]:
        return self.client.nick if self.client is not None else None

    def status(self) -> dict:
        """JSON-able state (no secrets)."""
        now = self._loop.time() if self._loop is not None else None
        return {
            "running": self.running,
            "nick": self.nick,
            "offers": [dict(o) for o in self.announced],
            "sessions": [{"nick": s.nick, "amount": s.amount, "state": s.state,
                          "inputs": len(s.coins), "txid": s.txid,
                          "expires_in": (round(s.deadline - now, 1) if now is not None else None)}
                         for s in self.sessions.values()],
            "reserved_coins": sorted(self._reserved()),
            "coinjoins": len(self.storage[HISTORY_KEY]),
            "depth_balances": self.depth_balances(),
            "earned_by_depth": self.earned_by_depth(),
            "earned_total": self.earned_total(),
            "refusals": len(self.refusals),
            "channels": (self.client.last_report.summary()
                         if self.client is not None and self.client.last_report else None),
        }

    # -------------------------------------------------------------------------- session helpers
    def _refuse(self, nick: str, stage: RefusalStage, case: str, reason: str) -> None:
        log.info("maker: refused %s from %s: [%s] %s", stage, nick, case, reason)
        self.refusals.append(Refusal(nick, case, reason, stage, time.time()))

    def _tell_refused(self, nick: str, case: str) -> None:
        """Tell the taker we refused (``!error refused (<case>)``, through our daemon's EJMRefuse
        extension) so it need not wait out its timeout; a reference daemon does not know the
        command and the taker then times out as before. Only the case id leaves."""
        client = self.client
        if client is None or not self.running:
            return

        async def tell() -> None:
            try:
                await client.refuse(nick, f"refused ({case})")
            except Exception as exc:
                log.debug("maker: could not tell %s of the refusal: %r", nick, exc)
        task = asyncio.ensure_future(tell())
        self._tells.add(task)
        task.add_done_callback(self._tells.discard)

    def _drop(self, nick: str, why: str) -> None:
        s = self.sessions.pop(nick, None)
        if s is not None:
            if s.state == MakerSessionState.IOAUTH:       # never signed: the addresses are free
                self._spare_addresses((s.cj_addr, s.change_addr))
            log.info("maker: session with %s ended (%s); %d coin(s) released", nick, why,
                     len(s.coins))
            self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -------------------------------------------------------------------------- daemon events
    def on_daemon_lost(self) -> None:
        if self.running:
            log.warning("maker: lost the JoinMarket daemon; releasing all sessions")
        for nick in list(self.sessions):
            self._drop(nick, "daemon lost")
        self.running = False
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
        self._unregister_callbacks()

    def on_JMFidelityBondProofRequest(self, takernick: str, makernick: str) -> None:
        log.debug("maker: bond proof requested but we run without a fidelity bond")

    async def on_JMAuthReceived(self, nick: Any = None, offer: Any = None, commitment: Any = None,
                                revelation: Any = None, amount: Any = None,
                                kphex: Any = None, **_: Any) -> None:
        nick = str(nick)[:64]
        gen = self._auth_gen.get(nick, 0) + 1       # what _handle_auth numbers this !auth
        try:
            await self._handle_auth(nick, offer, commitment, revelation, amount, kphex)
        except _Refused as r:               # no session of this !auth exists at this point
            self._refuse(nick, RefusalStage.AUTH, r.case, r.reason)
            if self._auth_gen.get(nick) == gen:    # not superseded by a newer !auth
                self._tell_refused(nick, r.case)
        except Exception as exc:            # never out of a handler
            self._refuse(nick, RefusalStage.AUTH, "internal", repr(exc)[:200])
            log.warning("maker: !auth from %s failed: %r", nick, exc)
            if self._auth_gen.get(nick) == gen:
                self._tell_refused(nick, "internal")

    async def _handle_auth(self, nick: str, offer_in: Any, commitment: Any, revelation: Any,
                           amount: Any, kphex: Any) -> None:
        if not self.running or self.client is None:
            raise _Refused("T8", "maker not running")
        # a new !auth from this nick replaces its previous session (Ref: !fill resets it)
        self._drop(nick, "new !auth from the same taker")
        gen = self._auth_gen[nick] = self._auth_gen.get(nick, 0) + 1
        if len(self._auth_gen) > 1000:
            self._auth_gen = {nick: gen}
        s = self.settings
        if not isinstance(offer_in, Mapping):
            raise _Refused("D1", "offer is not an object")
        offer = self._offer_by_oid(offer_in.get("oid"))
        if offer is None:
            raise _Refused("T8", f"no offer with oid {str(offer_in.get('oid'))[:20]!r}")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise _Refused("D1", "amount is not an integer")
        if not offer.minsize <= amount <= offer.maxsize:
            raise _Refused("T9", f"amount {amount} outside our offer [{offer.minsize}, "
                                 f"{offer.maxsize}]")
        if offer.real_cjfee(amount) - offer.txfee < 0:
            raise _Refused("T9", f"net fee {offer.real_cjfee(amount) - offer.txfee} < 0")
        try:
            c = normalize_commitment(commitment)
        except (PoDLEError, TypeError):
            raise _Refused("T6", "malformed commitment") from None
        if self.commitment_used(c):
            raise _Refused("T5", f"commitment {c} already used")
        try:
            pod = parse_revelation(revelation)
        except (PoDLEError, TypeError):
            raise _Refused("T6", "malformed revelation") from None
        if not pod.verify(c, range(s.taker_utxo_retries)):
            raise _Refused("T6", "PoDLE does not verify for an index in "
                                 f"0..{s.taker_utxo_retries - 1}")
        if not isinstance(kphex, str) or not _NACL_PUB_RE.match(kphex):
            raise _Refused("D1", "our NaCl key from the daemon is not 64 hex characters")
        try:
            hint = pubkey_script(pod.P, offer.script_type)   # the revealed key gives the script
        except (KeyError, ValueError):
            hint = None
        try:
            info = await self.chain.get_utxo(pod.utxo, script_hint=hint)
        except ChainError as exc:
            raise _Refused("chain", f"cannot check the commitment utxo: {exc}") from None
        if info is None:
            raise _Refused("T7", f"commitment utxo {pod.utxo} does not exist")
        if not info.unspent:
            raise _Refused("T7", f"commitment utxo {pod.utxo} is spent")
        if info.confirmations < s.taker_utxo_age:
            raise _Refused("T7", f"commitment utxo has {info.confirmations} confirmation(s), "
                                 f"need {s.taker_utxo_age}")
        min_value = s.policy.min_value(amount)
        if info.value < min_value:
            raise _Refused("T7", f"commitment utxo worth {info.value} < {min_value}")
        if not pubkey_matches_script(pod.P, info.script_pubkey):
            raise _Refused("T7", "P does not own the commitment utxo")
        if not self.running or self.client is None:
            raise _Refused("T8", "maker stopped meanwhile")
        if self.commitment_used(c):          # a concurrent !auth with the same C got there first
            raise _Refused("T5", f"commitment {c} already used")
        if self._auth_gen.get(nick) != gen or nick in self.sessions:
            raise _Refused("T8", "a newer !auth from this taker superseded this one")

        # --- from here to the JMIOAuth call: no await (selection + reservation are atomic)
        real_cjfee = offer.real_cjfee(amount)
        need = amount + offer.txfee - real_cjfee + DUST_THRESHOLD + 1
        picked = self._select_coins(need, self._reserved())
        if picked is None:
            raise _Refused("no-coins", f"no depth has unreserved coins for {need} sats")
        depth, coins = picked
        cj_addr, change_addr = self._session_addresses(depth)
        auth_addr = coins[0].address
        from electrum.bitcoin import deserialize_privkey
        try:
            _, secret, _ = deserialize_privkey(self.wallet.export_private_key(auth_addr,
                                                                              self._password))
            try:
                body = make_ioauth([coin_outpoint(x) for x in coins], secret, kphex, cj_addr,
                                   change_addr)
            except ValueError as exc:
                raise _Refused("D1", f"cannot answer: {exc}") from None
            finally:
                secret = None
        except BaseException:
            self._spare_addresses((cj_addr, change_addr))       # revealed to nobody
            raise
        _, auth_pub, _, _, btc_sig = body.split(" ")
        self._mark_commitment(c)             # durable before anything is revealed
        session = _Session(nick, offer, amount, c, list(coins), cj_addr, change_addr,
                           self._now() + s.session_timeout, depth=depth)
        self.sessions[nick] = session
        utxolist = {coin_outpoint(x): {"value": coin_value(x), "address": x.address}
                    for x in coins}
        log.info("maker: !auth from %s accepted (amount %d, fee %d); offering %d input(s)",
                 nick, amount, real_cjfee, len(coins))
        try:
            await self.client.call("JMIOAuth", nick=nick, utxolist=utxolist, pubkey=auth_pub,
                                   cjaddr=cj_addr, changeaddr=change_addr, pubkeysig=btc_sig)
        except BaseException as exc:
            if self.sessions.get(nick) is session:
                self._drop(nick, f"JMIOAuth failed: {exc!r}")
            if isinstance(exc, DaemonError):
                return
            raise
        self._poke()

    async def on_JMTXReceived(self, nick: Any = None, tx: Any = None, offer: Any = None,
                              **_: Any) -> None:
        nick = str(nick)[:64]
        try:
            await self._handle_tx(nick, tx)
        except _Refused as r:
            self._drop(nick, f"refused [{r.case}]")
            self._refuse(nick, RefusalStage.TX, r.case, r.reason)
            self._tell_refused(nick, r.case)
        except Exception as exc:
            self._drop(nick, "internal error")
            self._refuse(nick, RefusalStage.TX, "internal", repr(exc)[:200])
            log.warning("maker: !tx from %s failed: %r", nick, exc)
            self._tell_refused(nick, "internal")

    async def _handle_tx(self, nick: str, raw: Any) -> None:
        session = self.sessions.get(nick)
        if session is None or not self.running or self.client is None:
            # do not drop anything: there is no session of this nick to drop
            self._refuse(nick, RefusalStage.TX, "T8", "!tx without a session")
            return
        if session.state != MakerSessionState.IOAUTH:
            # keep the session (and its reservation): the transaction we signed stays valid
            self._refuse(nick, RefusalStage.TX, "T8", "a second !tx in a session we already signed")
            return
        if self._now() > session.deadline:
            raise _Refused("T8", "!tx after the session timed out")
        if isinstance(raw, str):
            try:
                raw = wire_to_tx_bytes(raw)
            except TxBuildError as exc:
                raise _Refused("malformed", str(exc)) from None
        try:
            tx = verify_taker_tx(raw, session.coins, session.cj_addr, session.change_addr,
                                 session.amount, session.offer, wallet=self.wallet)
            sigs = maker_sign(self.wallet, tx, session.coins, self._password)
        except TakerTxRejected as exc:
            raise _Refused(exc.case, str(exc)) from None
        except TxBuildError as exc:
            raise _Refused("malformed", str(exc)) from None
        session.state = MakerSessionState.SIGNED
        session.txid = coinjoin_txid(tx, self.wallet.txin_type)
        session.skeleton = tx_skeleton(tx)
        self._signed[session.skeleton] = _Signed(session.skeleton, tuple(session.outpoints),
                                                 session.amount, session.real_cjfee,
                                                 session.offer.txfee, time.time(),
                                                 session.depth)
        while len(self._signed) > 100:
            self._signed.popitem(last=False)
        log.info("maker: signed %d input(s) of %s's coinjoin (txid %s)", len(sigs), nick,
                 session.txid or "known once broadcast: p2sh-p2wpkh inputs")
        try:
            await self.client.call("JMTXSigs", nick=nick, sigs=sigs)
        except DaemonError as exc:
            log.info("maker: daemon refused JMTXSigs for %s: %s", nick, exc)
        self._poke()

    async def on_JMTXBroadcast(self, tx: Any = None, **_: Any) -> None:
        try:
            try:
                parsed = _parse_raw_tx(tx)
            except Exception as exc:
                self._refuse("?", RefusalStage.PUSH, "malformed", f"cannot parse: {exc!r}"[:200])
                return
            if tx_skeleton(parsed) not in self._signed:
                self._refuse("?", RefusalStage.PUSH, "T8", "refusing to broadcast a transaction we did "
                                               "not sign")
                return
            if not parsed.is_complete():
                self._refuse("?", RefusalStage.PUSH, "malformed", "pushed transaction is not complete")
                return
            net = self.electrum_network
            if net is None:
                log.info("maker: offline, cannot broadcast %s", parsed.txid())
                return
            await net.broadcast_transaction(parsed)
            self.broadcasts += 1
            log.info("maker: broadcast %s at the taker's request", parsed.txid())
            self._poke()
        except Exception as exc:
            log.info("maker: broadcast failed: %r", exc)

    # -------------------------------------------------------------------------- monitoring
    def _register_callbacks(self) -> None:
        from electrum import util
        util.register_callback(self._on_wallet_event,
                               ["adb_added_tx", "adb_removed_tx", "adb_added_verified_tx",
                                "adb_tx_height_changed", "blockchain_updated"])
        self._registered = True

    def _unregister_callbacks(self) -> None:
        if self._registered:
            from electrum import util
            util.unregister_callback(self._on_wallet_event)
            self._registered = False

    def _on_wallet_event(self, *args: Any) -> None:
        loop = self._loop
        if loop is not None and self._wake is not None:
            loop.call_soon_threadsafe(self._wake.set)

    async def _monitor_loop(self) -> None:
        wake = self._wake
        assert wake is not None                  # set by start() before this loop runs
        while self.running:
            try:
                await wait_for(wake.wait(), self.settings.poll_interval)
            except asyncio.TimeoutError:
                pass
            wake.clear()
            try:
                await self.check_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("maker: monitor step failed: %r", exc)

    async def check_now(self) -> None:
        """One monitor step: expire sessions, notice our coinjoins in the wallet (record the
        earning, release the coins), re-announce offers if they changed."""
        now = self._now()
        for nick, s in list(self.sessions.items()):
            if now > s.deadline:
                self._drop(nick, "timed out")
        self._scan_spent()
        self._update_confirmations()
        if self.running and self.client is not None:
            await self._reannounce()

    def _spender(self, outpoint: str) -> Optional[str]:
        txid, n = outpoint.split(":")
        return self.wallet.db.get_spent_outpoint(txid, int(n))

    def _scan_spent(self) -> None:
        # sessions whose coins moved
        for nick, s in list(self.sessions.items()):
            spenders = {t for t in (self._spender(op) for op in s.outpoints) if t is not None}
            if spenders:
                matched = any(self._record_if_ours(t) for t in spenders)
                self._drop(nick, "coinjoin seen" if matched else "coins spent elsewhere")
        # signed transactions whose session already ended
        for sk, sg in list(self._signed.items()):
            spenders = {t for t in (self._spender(op) for op in sg.outpoints) if t is not None}
            for t in spenders:
                self._record_if_ours(t)
            if spenders:
                self._signed.pop(sk, None)

    def _record_if_ours(self, txid: str) -> bool:
        tx = self.wallet.adb.get_transaction(txid)
        if tx is None:
            return False
        sg = self._signed.get(tx_skeleton(tx))
        if sg is None:
            return False
        hist = self.storage[HISTORY_KEY]
        if txid not in hist:
            hist[txid] = {"txid": txid, "cj_amount": sg.amount, "cjfee": sg.real_cjfee,
                          "txfee": sg.txfee, "earned": sg.real_cjfee - sg.txfee,
                          "time": int(time.time()), "inputs": len(sg.outpoints),
                          "confirmed": False, "depth": sg.depth}
            self.depths.note_coinjoin(txid, sg.amount)
            self._save()
            log.info("maker: coinjoin %s seen; earned %d sats (fee %d - txfee %d)", txid,
                     sg.real_cjfee - sg.txfee, sg.real_cjfee, sg.txfee)
        return True

    def _update_confirmations(self) -> None:
        hist = self.storage[HISTORY_KEY]
        changed = False
        for txid, rec in list(hist.items()):
            if rec.get("confirmed"):
                continue
            try:
                conf = self.wallet.adb.get_tx_height(txid).conf
            except Exception:
                continue
            if conf >= 1:
                new = dict(rec)
                new["confirmed"] = True
                hist[txid] = new
                changed = True
        if changed:
            self._save()

    async def _reannounce(self) -> None:
        new = self.offers()
        old = self.announced
        if new == old:
            return
        old_by = {o["oid"]: o for o in old}
        new_by = {o["oid"]: o for o in new}
        to_cancel = [oid for oid in old_by if oid not in new_by]
        to_announce = [o for oid, o in new_by.items() if old_by.get(oid) != o]
        client = self.client
        if client is None:                       # stopped meanwhile: nothing to announce on
            return
        try:
            await client.call("JMAnnounceOffers", to_announce=to_announce,
                                   to_cancel=to_cancel, offerlist=new)
        except DaemonError as exc:
            log.info("maker: could not re-announce offers: %s", exc)
            return
        self.announced = new
        self.announcements += 1
        log.info("maker: offers updated: %s (cancelled %s)", _fmt_offers(new) or "none",
                 to_cancel or "none")


def _fmt_offers(offers: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{o['ordertype']} oid {o['oid']} {o['minsize']}-{o['maxsize']} "
                     f"txfee {o['txfee']} cjfee {o['cjfee']}" for o in offers)


def _jm_network_name() -> str:
    from electrum import constants
    name = getattr(constants.net, "NET_NAME", "mainnet")
    return {"mainnet": "mainnet", "testnet": "testnet", "testnet4": "testnet",
            "regtest": "regtest", "signet": "signet"}.get(name, "mainnet")
