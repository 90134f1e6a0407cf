"""The taker: one coinjoin from an Electrum wallet with makers found through jmdaemon.

Stages (each reported to ``progress``): connect → orderbook → choose makers → commit (PoDLE) →
fill → check every ``!ioauth`` on-chain → build → ``!tx`` → collect and check ``!sig``s → sign →
broadcast → seen by the wallet.

Money-safety invariants held here (docs/architecture.md):

1. We sign only through :func:`txbuild.sign_our_inputs`, which runs
   :func:`txbuild.check_before_signing` against the plan made from *verified* ``!ioauth`` data
   (every maker input confirmed, unspent and owned by the key that signed the ``!ioauth``:
   :func:`ioauth.verify_ioauth`), and every maker signature was checked against the input's
   on-chain script and amount before it was inserted (:func:`txbuild.verify_and_add_maker_sig`).
2. Our coins are frozen only for the duration of a run and are unfrozen in ``finally`` whatever
   happens (success, failure, cancellation, daemon loss); a PoDLE commitment is recorded as used
   (and the wallet saved) *before* it is sent, so a failed run never forgets it.
3. A cancellation asked for before we sign is honoured even if its ``CancelledError`` was lost on
   the way (swallowed by an await: cpython gh-86296, or any other): right before our signature,
   :meth:`Taker._lost_cancellation` looks at the task's pending cancellations (3.11+) and at the
   job's ``cancel_requested`` flag, and the run ends cancelled with nothing signed.
4. Nothing a maker or the daemon sends can raise out of a handler: bad data drops that maker.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, MutableMapping, Optional, Sequence

from electrum_joinmarket.chain.server import ChainError, ElectrumChain
from electrum_joinmarket.errors import Failure, JoinMarketError, UserError
from electrum_joinmarket.link.client import DaemonClient, DaemonError
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.market import feemodel
from electrum_joinmarket.market import orders as ordermod
from electrum_joinmarket.market.limits import FeeLimits, FeeLimitsUnset
from electrum_joinmarket.protocol.commitments import CommitmentStore
from electrum_joinmarket.protocol.ioauth import IoauthRejected, verify_ioauth
from electrum_joinmarket.protocol.podle import (
    CommitmentCandidate,
    CommitmentChoice,
    CommitmentPolicy,
    choose_commitment_utxo,
    generate_podle,
)
from electrum_joinmarket.stages import OutcomeStatus, TakerStage
from electrum_joinmarket.taker import signed
from electrum_joinmarket.tx import taker_tx as txbuild
from jmcore.aio import wait_for
from jmcore.constants import MAKER_TIMEOUT_SEC, TX_FEES_FACTOR
from jmcore.offers import Offer, calc_cj_fee

log = get_logger(__name__)

BROADCAST_POLICIES = ("self", "random-peer", "not-self")
FROZEN_KEY = "taker_frozen_coins"


class TakerError(UserError):
    """A coinjoin could not be done; the message says why and what to try."""


@dataclass
class TakerConfig:
    """Everything a run needs besides the wallet. Amounts in sats; ``amount=0`` means sweep."""
    amount: int
    destination: str
    limits: FeeLimits                     # the user's fee limits: no default, ever
    n_makers: int = 3
    minimum_makers: int = 2
    chooser: str = "fidelity_bond"
    # the orderbook stage (real-network defaults, safe over Tor): never decide before min_wait;
    # then as soon as the book has offers from n_makers makers and was unchanged for `quiet`;
    # at max_wait go with what there is.  `poll`: how often to ask a daemon that does not push.
    orderbook_min_wait: float = 20.0
    orderbook_quiet: float = 5.0
    orderbook_max_wait: float = 60.0
    orderbook_poll: float = 1.0
    maker_timeout_sec: int = MAKER_TIMEOUT_SEC
    sig_timeout: float = 60.0
    channels_timeout: float = 90.0         # the daemon's channels up (Tor: up to 60 s/attempt)
    server_timeout: float = 60.0           # a round waits this long for an Electrum server
    max_rounds: int = 3                    # one try + replacements
    broadcast: str = "self"
    seen_timeout: float = 60.0
    fallback_feerate: int = 10_000         # sat/kvB, used when the server has no estimate
    max_feerate: int = feemodel.DEFAULT_MAX_FEERATE   # sat/kvB: the user's cap (max_fee_rate)
    tx_fees_factor: float = TX_FEES_FACTOR
    coins: Optional[Sequence[str]] = None  # outpoints chosen by the user (Coins tab)
    # a new destination for a round after one that showed ours to makers (e.g. the schedule's
    # next-depth address); None: own plain receiving addresses are renewed, others kept
    fresh_destination: Optional[Callable[[], str]] = None
    commitment_policy: CommitmentPolicy = field(default_factory=CommitmentPolicy)

    def check(self) -> None:
        if self.amount < 0:
            raise TakerError("the amount cannot be negative (0 means sweep)")
        if self.n_makers < 1:
            raise TakerError("at least one counterparty is needed")
        if not 1 <= self.minimum_makers <= self.n_makers:
            raise TakerError("minimum makers must be between 1 and the number of counterparties")
        if self.broadcast not in BROADCAST_POLICIES:
            raise TakerError(f"broadcast policy must be one of {', '.join(BROADCAST_POLICIES)}")
        if not isinstance(self.limits, FeeLimits):
            raise FeeLimitsUnset()
        if isinstance(self.max_feerate, bool) or not isinstance(self.max_feerate, int) \
                or self.max_feerate < feemodel.MIN_RELAY_FEERATE:
            raise TakerError(f"the fee rate cap (setting plugins.joinmarket.max_fee_rate) must "
                             f"be a whole number of sat/kvB, at least "
                             f"{feemodel.MIN_RELAY_FEERATE}; got {self.max_feerate!r}")


@dataclass
class TakerOutcome:
    status: OutcomeStatus
    message: str
    failure: Optional[Failure] = None   # why it failed (None on success): what the GUI hints from
    txid: Optional[str] = None
    cj_amount: int = 0
    destination: str = ""               # where the coinjoin output went (renewed per round)
    makers: list[str] = field(default_factory=list)
    maker_fees: dict[str, int] = field(default_factory=dict)   # real cj fee paid to each maker
    miner_fee: int = 0
    taker_miner_fee: int = 0
    total_cost: int = 0                 # what the coinjoin cost us: maker fees + our miner fee share
    rounds: int = 0
    ignored_makers: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    anonymity_set: Optional[int] = None     # outputs of exactly cj_amount in the broadcast tx
    fee_rate: Optional[float] = None        # its miner fee rate, sat/vB
    script_type_warning: Optional[str] = None   # the destination stood out (the user went ahead)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def spendable_coins(wallet: Any, cfg: TakerConfig) -> list:
    """Confirmed, unfrozen coins, limited to the user's selection if there is one."""
    coins = [c for c in wallet.get_spendable_coins(None) if (c.block_height or 0) > 0]
    if cfg.coins:
        wanted = set(cfg.coins)
        coins = [c for c in coins if c.prevout.to_str() in wanted]
    return coins


def check_request(wallet: Any, cfg: TakerConfig, password: Optional[str], *,
                  require_connected: bool = True) -> None:
    """The user's request against the wallet, before anything runs (TakerError says what to
    change): a valid destination, a wallet that can sign, the password, coins, the amount.
    ``require_connected``: refuse while Electrum has no server (a request being made: say so
    at once); a run already started passes False and its round waits for the server (F2)."""
    from electrum.bitcoin import is_address
    cfg.check()
    if not is_address(cfg.destination):
        raise TakerError(f"{cfg.destination!r} is not a valid address for this network",
                         failure=Failure.INPUT)
    if wallet.is_watching_only():
        raise TakerError("a watching-only wallet cannot take part in a coinjoin")
    if wallet.has_keystore_encryption():
        try:
            wallet.check_password(password)
        except Exception:
            raise TakerError("wrong wallet password", failure=Failure.PASSWORD) from None
    network = getattr(wallet, "network", None)
    if require_connected and network is not None and not network.is_connected():
        raise TakerError("Electrum is not connected to a server yet; try again when it is "
                         "(electrum getinfo shows 'connected')", failure=Failure.CHAIN)
    coins = spendable_coins(wallet, cfg)
    total = sum(c.value_sats() for c in coins)
    if not coins:
        if not wallet.is_up_to_date():       # e.g. right after load_wallet: not "no coins" yet
            raise TakerError("the wallet is still synchronising with its Electrum server; try "
                             "again in a moment (electrum getinfo / the status bar says when it "
                             "is done)", failure=Failure.COINS)
        raise TakerError("no spendable confirmed coins (frozen and unconfirmed coins are not used)",
                         failure=Failure.COINS)
    if cfg.amount and cfg.amount >= total:
        raise TakerError(f"amount {cfg.amount} sat is not below the spendable balance "
                         f"{total} sat (fees must fit too); use sweep (amount 0) to spend all",
                         failure=Failure.COINS)
    _check_podle_coin(wallet, cfg, coins, total)


def _check_podle_coin(wallet: Any, cfg: TakerConfig, coins: list, total: int) -> None:
    """Makers accept a taker only with a PoDLE commitment made from one of its coins that is at
    least ``taker_utxo_age`` blocks deep and worth ``taker_utxo_amtpercent`` % of the amount
    (the reference's policy): say so before the orderbook wait when no coin can do it.
    (Whether a coin's commitment indices are used up needs its key: checked later.)"""
    policy = cfg.commitment_policy
    amount = cfg.amount or total                 # a sweep's amount is at most the total
    need_value = policy.min_value(amount)

    def conf(c: Any) -> int:
        return wallet.adb.get_tx_height(c.prevout.txid.hex()).conf
    if any(conf(c) >= policy.taker_utxo_age and c.value_sats() >= need_value for c in coins):
        return
    big = [c for c in coins if c.value_sats() >= need_value]
    if not big:
        largest = max(c.value_sats() for c in coins)
        raise TakerError(f"no coin can back the PoDLE commitment makers require: it must be worth "
                         f"at least {policy.taker_utxo_amtpercent}% of the amount ({need_value} "
                         f"sat) and your largest confirmed coin has {largest} sat; lower the "
                         f"amount or add a larger coin", failure=Failure.COINS)
    best = max(conf(c) for c in big)
    raise TakerError(f"no coin can back the PoDLE commitment makers require yet: it needs "
                     f"{policy.taker_utxo_age} confirmations and your coins of at least "
                     f"{need_value} sat have {best}; wait about "
                     f"{policy.taker_utxo_age - best} more block(s)", failure=Failure.COINS)


def privacy_facts(tx: Any, cj_amount: int, miner_fee: int, destination: str,
                  wallet: Any) -> dict:
    """What the coinjoin shows the world (for the confirmation and the result): its anonymity
    set (outputs of exactly the coinjoin amount), its fee rate, and a warning when the
    destination's script type differs from the other coinjoin outputs'."""
    from electrum_joinmarket.tx.privacy import anonymity_set, destination_type_warning
    vsize = tx.estimated_size()
    return {"anonymity_set": anonymity_set(tx.outputs(), cj_amount),
            "outputs": len(tx.outputs()), "vsize": vsize,
            "fee_rate": round(miner_fee / vsize, 2) if vsize else None,
            "script_type_warning": destination_type_warning(destination,
                                                            getattr(wallet, "txin_type", "p2wpkh"))}


class _RoundFailed(JoinMarketError):
    """This round cannot complete; retry with other makers if rounds remain. Most rounds fail
    for want of makers; other causes say so with ``failure=``."""

    failure = Failure.MAKERS


class Taker:
    """One coinjoin run for one wallet. Create, then ``await run()`` on Electrum's loop."""

    def __init__(self, *, wallet: Any, network: Any, commitments: CommitmentStore,
                 config: TakerConfig, password: Optional[str], daemon_host: str,
                 daemon_port: int, chan_configs: list[dict], net_name: str,
                 progress: Optional[Callable[[dict], None]] = None,
                 rng: Optional[random.Random] = None,
                 confirm: Optional[Callable[[dict], Any]] = None,
                 frozen_store: Optional[MutableMapping[str, Any]] = None,
                 depths: Any = None,
                 cancel_requested: Optional[Callable[[], bool]] = None):
        self.wallet = wallet
        self.network = network
        self.commitments = commitments
        self.cfg = config
        self.password = password
        self.daemon_host, self.daemon_port = daemon_host, daemon_port
        self.chan_configs = chan_configs
        self.net_name = net_name
        self._progress = progress
        self.confirm = confirm          # optional: async/sync callable(breakdown) -> bool
        self.rng = rng or random.SystemRandom()
        self.chain = ElectrumChain(network)
        self.client: Optional[DaemonClient] = None
        self.outcome = TakerOutcome(status=OutcomeStatus.FAILED, message="not started")
        self.ignored: dict[str, str] = {}
        self._frozen: set[str] = set()
        # what we froze, kept in the wallet's plugin storage: Electrum saves frozen coins with
        # the wallet, so after a crash mid-run release_stale_freezes() can undo exactly ours
        self._frozen_store = frozen_store if frozen_store is not None else {}
        self.depths = depths            # the wallet's DepthRecord: no tx of ours mixes depths
        self.cancel_requested = cancel_requested   # the job's flag (Runner.cancel_now sets it)
        self._offers_event = asyncio.Event()
        self._book: list[Offer] = []
        self._bonds_raw: list[dict] = []
        self._fill_response: Optional[asyncio.Future] = None
        self._sig_queue: Optional[asyncio.Queue] = None
        self._daemon_lost = asyncio.Event()
        self._t_fill: Optional[float] = None
        self._user_wait = 0.0
        self._next_feerate: Optional[int] = None     # fetched before the run, used by round 1
        self._unchecked: list[str] = []               # makers the server could not check (round)
        self._dest: str = config.destination          # this round's destination
        self._shown: set[str] = set()                 # our addresses makers saw in a !tx
        self._gave_out: Optional[tuple[str, Optional[str]]] = None   # (txid, pusher) once out
        self.stage: Optional[TakerStage] = None

    # ---------------------------------------------------------------- progress
    @property
    def _link(self) -> DaemonClient:
        """The daemon link of this run (connected by the connect stage)."""
        if self.client is None:
            raise TakerError("not connected to jmdaemon")
        return self.client

    def progress(self, stage: TakerStage, message: str, **info: Any) -> None:
        self.stage = stage
        event = {"stage": stage, "message": message, "time": time.time(), **info}
        log.info("taker %s: %s", stage, message)
        if self._progress is not None:
            try:
                self._progress(event)
            except Exception:
                log.exception("progress callback failed")

    # ---------------------------------------------------------------- daemon events
    def on_JMOffers(self, orderbook: str, fidelitybonds: str) -> None:
        try:
            rows = json.loads(orderbook)
            bonds = json.loads(fidelitybonds)
        except ValueError:
            log.info("daemon sent an orderbook that is not JSON: ignored")
            return
        self._book = ordermod.offers_from_rows(rows)
        self._bonds_raw = [b for b in bonds if isinstance(b, dict)] if isinstance(bonds, list) else []
        self._offers_event.set()

    def on_JMFillResponse(self, success: bool, ioauth_data: Any) -> None:
        if self._fill_response is not None and not self._fill_response.done():
            self._fill_response.set_result((bool(success), ioauth_data))

    def on_JMSigReceived(self, nick: str, sig: str) -> None:
        if self._sig_queue is not None:
            self._sig_queue.put_nowait((nick, sig))

    def on_daemon_lost(self) -> None:
        self._daemon_lost.set()
        for fut in (self._fill_response,):
            if fut is not None and not fut.done():
                fut.set_exception(DaemonError("the JoinMarket daemon connection was lost"))

    # ---------------------------------------------------------------- the run
    async def run(self) -> TakerOutcome:
        """Do the coinjoin; always returns an outcome (never raises, except CancelledError is
        turned into a "cancelled" outcome). Coins are unfrozen whatever happens."""
        t0 = time.monotonic()
        try:
            self.cfg.check()
            self._check_wallet()
            self._next_feerate = await self._feerate()   # above the user's cap: stop before
            await self._connect()                         # anything is asked of the network
            self.outcome.timings.setdefault("connect", time.monotonic() - t0)
            last_error, last_failure = "no round ran", Failure.INTERNAL
            for rnd in range(1, self.cfg.max_rounds + 1):
                self.outcome.rounds = rnd
                try:
                    if rnd > 1:
                        self.progress(TakerStage.RETRY, f"round {rnd} of {self.cfg.max_rounds} with "
                                      f"replacement makers (ignoring {len(self.ignored)})",
                                      round=rnd)
                        await self._restart_session()
                    await self._collect_orderbook()
                    await self._round()
                    self.outcome.status = OutcomeStatus.SUCCESS
                    break
                except _RoundFailed as exc:
                    if self._gave_out is not None:     # never another round once it is out
                        raise TakerError(str(exc), failure=exc.failure) from exc
                    last_error, last_failure = str(exc), exc.failure
                    log.info("round %d failed: %s", rnd, exc)
                    self._unfreeze()
            else:
                raise TakerError(f"the coinjoin failed after {self.cfg.max_rounds} round(s): "
                                 f"{last_error}", failure=last_failure)
        except asyncio.CancelledError:
            self.outcome.status = OutcomeStatus.CANCELLED
            self.outcome.message = "cancelled by the user" + self._late_note()
            self.outcome.failure = Failure.CANCELLED
            self.progress(TakerStage.CANCELLED, "coinjoin cancelled; coins unfrozen, commitments "
                          "kept" + self._late_note())
        except JoinMarketError as exc:
            self.outcome.status, self.outcome.message = OutcomeStatus.FAILED, str(exc) + self._late_note()
            self.outcome.failure = exc.failure
            self.progress(TakerStage.FAILED, self.outcome.message)
        except Exception as exc:  # a bug: report it cleanly, still clean up
            log.exception("taker crashed")
            self.outcome.status = OutcomeStatus.FAILED
            self.outcome.message = f"internal error: {exc!r}" + self._late_note()
            self.outcome.failure = Failure.INTERNAL
            self.progress(TakerStage.FAILED, self.outcome.message)
        finally:
            self._unfreeze()
            if self._gave_out is not None:     # succeeded: in the history; else: watched
                signed.settle(self._frozen_store, self.wallet.save_db, self._gave_out[0],
                              recorded=self.outcome.status == OutcomeStatus.SUCCESS)
            if self.client is not None:
                self.client.close()
            self.outcome.ignored_makers = dict(self.ignored)
            self.outcome.timings["total"] = time.monotonic() - t0
        if self.outcome.status == OutcomeStatus.SUCCESS:
            self.progress(TakerStage.DONE, self.outcome.message, txid=self.outcome.txid)
        return self.outcome

    # ---------------------------------------------------------------- stages
    def _check_wallet(self) -> None:
        coins = self._my_coins()
        if self.depths is not None and coins:      # DepthError: the user's to fix
            self.depths.check_one_depth([c.prevout.to_str() for c in coins])
        check_request(self.wallet, self.cfg, self.password, require_connected=False)

    def _my_coins(self) -> list:
        return spendable_coins(self.wallet, self.cfg)

    async def _connect(self) -> None:
        self.progress(TakerStage.CONNECT, f"connecting to jmdaemon at {self.daemon_host}:{self.daemon_port}")
        self.client = DaemonClient(network=self.net_name, chan_configs=self.chan_configs,
                                   minmakers=self.cfg.minimum_makers,
                                   maker_timeout_sec=self.cfg.maker_timeout_sec, handler=self)
        await self.client.connect(self.daemon_host, self.daemon_port)
        await self.client.wait_up(timeout=self.cfg.channels_timeout, on_report=self._channels)
        await self.client.setup("TAKER")
        self.progress(TakerStage.CONNECTED, f"connected as {self.client.nick}", nick=self.client.nick)

    def _channels(self, report: Any) -> None:
        self.progress(TakerStage.CHANNELS, report.summary(), directories=report.directory_lines())

    async def _restart_session(self) -> None:
        """Next round on the same daemon (Ref's next-schedule-entry sequence): JMInit with the
        same channels keeps them; JMStartMC brings the daemon back to state 0."""
        assert self.client is not None
        await self.client.init()
        await self.client.wait_up(timeout=self.cfg.channels_timeout, on_report=self._channels)
        await self.client.setup("TAKER")

    async def _collect_orderbook(self) -> None:
        """Collect offers until the book has been quiet (unchanged) for ``orderbook_quiet``
        seconds, after at least ``orderbook_min_wait``, with offers from at least ``n_makers``
        makers (ignored ones included) — or until ``orderbook_max_wait`` (then we go with what
        there is).  Wakes when offers arrive: pushed by our daemon when it follows
        the book for us (:meth:`_follow_offers`), else answers to ``JMRequestOffers`` asked every
        ``orderbook_poll`` seconds (a reference joinmarketd)."""
        assert self.client is not None
        cfg = self.cfg
        t0 = time.monotonic()
        following = await self._follow_offers()
        last_sig: Optional[list] = None
        quiet_since = t0
        next_poll = t0
        while True:
            now = time.monotonic()
            if not following and now >= next_poll:
                self._offers_event.clear()
                await self._link.call("JMRequestOffers")
                next_poll = now + cfg.orderbook_poll
                try:   # the answer: the book as it is now
                    await wait_for(self._offers_event.wait(), 10)
                except asyncio.TimeoutError:
                    pass
                now = time.monotonic()
            self._offers_event.clear()       # a change from here on wakes the wait below
            sig = sorted((o.counterparty, o.oid, o.ordertype, o.minsize, o.maxsize, o.txfee,
                          o.cjfee) for o in self._book)
            makers = {o.counterparty for o in self._book}
            if sig != last_sig:
                last_sig, quiet_since = sig, now
                left = max(0.0, cfg.orderbook_max_wait - (now - t0))
                self.progress(TakerStage.ORDERBOOK, f"{len(self._book)} offers from {len(makers)} makers",
                              offers=len(self._book), makers=len(makers),
                              seconds_left=round(left, 1))
            # complete enough to decide: n_makers makers seen — counting those we ignore after a
            # failed round (they are part of the network's book; we choose among the others)
            enough = len(makers) >= cfg.n_makers
            settle_at = max(t0 + cfg.orderbook_min_wait, quiet_since + cfg.orderbook_quiet)
            if (now >= settle_at and enough) or now >= t0 + cfg.orderbook_max_wait:
                break
            wake = t0 + cfg.orderbook_max_wait
            if enough:
                wake = min(wake, settle_at)
            if not following:
                wake = min(wake, next_poll)
            try:
                await wait_for(self._offers_event.wait(), max(0.0, wake - now))
            except asyncio.TimeoutError:
                pass
        self.outcome.timings.setdefault("orderbook", time.monotonic() - t0)

    async def _follow_offers(self) -> bool:
        """Whether the daemon pushes the book to us as it changes (our daemon does when asked;
        a reference joinmarketd only answers ``JMRequestOffers``)."""
        assert self.client is not None
        return await self.client.follow_offers()

    async def _bond_values(self) -> dict[str, float]:
        """Value of each maker's fidelity bond (0 if absent or not verifiable on-chain)."""
        from electrum_joinmarket.protocol.bonds import bond_values
        assert self.client is not None
        return await bond_values(self.chain, self._bonds_raw, taker_nick=self.client.nick,
                                 tip_height=self.network.get_local_height(),
                                 header_at=self.chain.header_at, now=time.time())

    async def _feerate(self) -> int:
        """This round's fee rate (sat/kvB): the server's estimate (else the fallback),
        randomised upward, never above the user's cap; TakerError naming the setting if the
        rate is above the cap."""
        cfg = self.cfg
        try:
            return await feemodel.fetch_feerate(
                self.network, fallback_feerate=cfg.fallback_feerate,
                tx_fees_factor=cfg.tx_fees_factor, max_feerate=cfg.max_feerate, rng=self.rng)
        except feemodel.FeeRateAboveCap as exc:
            raise TakerError(
                f"the fee rate now is {exc.feerate / 1000:g} sat/vB, above your cap of "
                f"{exc.cap / 1000:g} sat/vB (setting plugins.joinmarket.max_fee_rate = "
                f"{exc.cap} sat/kvB): wait for lower fees, or raise the cap with "
                f"'electrum setconfig plugins.joinmarket.max_fee_rate <sat/kvB>'",
                failure=Failure.FEE_LIMITS) from None

    async def _wait_server(self) -> None:
        """Return once Electrum is connected to its server; _RoundFailed (kind ``chain``) after
        ``server_timeout``.  A round sends a commitment and asks makers for their inputs: never
        while nothing can check them (F2)."""
        from electrum import util
        net = self.network
        if net.is_connected():
            return
        log.info("taker: waiting for the Electrum server before the next round")
        changed = asyncio.Event()

        def on_change(*_: Any) -> None:
            changed.set()
        util.register_callback(on_change, ["network_updated", "default_server_changed"])
        try:
            deadline = time.monotonic() + self.cfg.server_timeout
            while not net.is_connected():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _RoundFailed(f"no connection to an Electrum server for "
                                       f"{self.cfg.server_timeout:.0f}s: the makers' coins "
                                       f"cannot be checked", failure=Failure.CHAIN)
                changed.clear()
                try:
                    await wait_for(changed.wait(), min(left, 1.0))
                except asyncio.TimeoutError:
                    pass
        finally:
            util.unregister_callback(on_change)

    async def _round(self) -> None:
        cfg = self.cfg
        await self._wait_server()
        self._dest = self._round_destination()
        sweep = cfg.amount == 0
        script_type = txbuild.wallet_script_type(self.wallet)
        feerate, self._next_feerate = self._next_feerate or await self._feerate(), None
        limits = cfg.limits
        chooser = ordermod.get_chooser(cfg.chooser)
        bond_values = await self._bond_values()
        all_coins = self._my_coins()
        usable = [o for o in self._book if o.counterparty not in self.ignored]
        n = min(cfg.n_makers, len({o.counterparty for o in usable}))
        if n < cfg.minimum_makers:
            self._shortfall(cfg.minimum_makers, script_type, sweep, all_coins, feerate)
        try:
            if sweep:
                my_coins = all_coins
                total_in = sum(c.value_sats() for c in my_coins)
                est = feemodel.sweep_fee_estimate(len(my_coins), n, feerate, my_type=script_type)
                choice = ordermod.choose_sweep_orders(
                    usable, total_in, est, n, chooser, limits=limits, script_type=script_type,
                    ignored_makers=self.ignored, bond_values=bond_values, rng=self.rng)
                chosen, cj_amount, sweep_est = choice.orders, choice.cj_amount, est
            else:
                cj_amount, sweep_est = cfg.amount, None
                chosen = ordermod.choose_orders(
                    usable, cj_amount, n, chooser, limits=limits, script_type=script_type,
                    ignored_makers=self.ignored, bond_values=bond_values, rng=self.rng)
                est = feemodel.initial_fee_estimate(n, feerate, script_type)
                need = cj_amount + ordermod.total_cj_fee(chosen, cj_amount) + est
                my_coins = self._select_coins(all_coins, need)
        except ordermod.NotEnoughMakers as exc:
            self._shortfall(exc.needed, script_type, sweep, all_coins, feerate)
            raise _RoundFailed(str(exc)) from exc        # (not reached: _shortfall raises)
        nicks = [c.counterparty for c in chosen]
        self.progress(TakerStage.CHOSEN, f"chose {len(nicks)} makers for {cj_amount} sat",
                      makers=nicks, cj_amount=cj_amount,
                      fees={c.counterparty: calc_cj_fee(c.offer.ordertype, c.offer.cjfee, cj_amount)
                            for c in chosen})
        self._freeze(my_coins)

        podle = self._make_commitment(my_coins, all_coins, cj_amount)
        # invariant 2: recorded (and the wallet saved) before the commitment leaves the process
        self.commitments.mark_used(podle.commitment)
        offers_by_nick = {c.counterparty: c.offer for c in chosen}
        self._fill_response = asyncio.get_running_loop().create_future()
        t_fill = self._t_fill = time.monotonic()
        self._user_wait = 0.0
        await self._link.call("JMFill", amount=cj_amount, commitment=podle.fill_commitment(),
                               revelation=podle.serialize_revelation(),
                               filled_offers={n_: o.to_dict() for n_, o in offers_by_nick.items()})
        self.progress(TakerStage.FILL, f"waiting for {len(nicks)} makers to answer",
                      makers_asked=len(nicks), seconds_left=cfg.maker_timeout_sec)
        my_change = self._change_address(sweep)   # wallet work while the makers answer
        try:
            success, data = await wait_for(self._fill_response, cfg.maker_timeout_sec + 30)
        except asyncio.TimeoutError:
            raise _RoundFailed("the daemon reported no answer from the makers") from None
        answered = set(data) if success and isinstance(data, dict) else set()
        refusals = (await self._link.fill_refusals()
                    if set(offers_by_nick) - answered else {})
        if not success:
            missing = [x for x in (data or []) if isinstance(x, str)]
            silent = [n for n in missing if n not in refusals]
            refused = [n for n in missing if n in refusals]
            for nick in refused:
                self._maker_refused(nick, refusals[nick])
            for nick in silent:
                self.ignored[nick] = "M10: silent after !fill"
            parts = [f"refused: {n} ({refusals[n]})" for n in refused]
            if silent or not refused:
                parts.append(f"silent: {', '.join(silent) or 'unknown'}")
            raise _RoundFailed(f"too few makers answered ({'; '.join(parts)})")
        for nick in offers_by_nick:
            if nick not in answered and nick in refusals:
                self._maker_refused(nick, refusals[nick])
        verified = await self._verify_ioauths(data, offers_by_nick, my_coins, cj_amount)
        self.outcome.timings.setdefault("fill_to_ioauth", time.monotonic() - t_fill)
        if len(verified) < cfg.minimum_makers:
            unchecked = (f"; the Electrum server could not check {len(self._unchecked)} of "
                         f"them (nothing was signed)" if self._unchecked else "")
            raise _RoundFailed(f"only {len(verified)} makers passed the checks, at least "
                               f"{cfg.minimum_makers} needed{unchecked}",
                               failure=Failure.CHAIN if self._unchecked else Failure.MAKERS)

        t_ioauth = time.monotonic()
        prev_txs, failed = await self._funding_txs(verified)
        for nick, why in failed.items():
            self.ignored[nick] = why
            verified.pop(nick, None)
            self.progress(TakerStage.MAKER_REJECTED, f"maker {nick} dropped: {why}", maker=nick,
                          case="M14")
        if len(verified) < cfg.minimum_makers:
            raise _RoundFailed(f"only {len(verified)} makers left after their funding "
                               f"transactions were fetched, at least {cfg.minimum_makers} needed")
        plan = self._plan(cj_amount, my_coins, verified, offers_by_nick, feerate,
                          script_type, sweep, sweep_est, my_change)
        tx = txbuild.build_coinjoin(plan, my_coins, prev_txs, self.network.get_local_height(),
                                    wallet=self.wallet, rng=self.rng)
        if self.depths is not None:      # never one transaction of coins of two depths
            self.depths.check_tx_inputs(tx)
        breakdown = self._breakdown(plan)
        breakdown.update(privacy_facts(tx, breakdown["cj_amount"], breakdown["miner_fee"],
                                       self.cfg.destination, self.wallet))
        if self.confirm is not None:
            t_confirm = time.monotonic()
            ok = self.confirm(breakdown)
            if inspect.isawaitable(ok):          # coroutine or Future (answer from the GUI)
                ok = await ok
            if not ok:
                raise TakerError("the user declined the coinjoin before signing",
                                 failure=Failure.DECLINED)
            self._user_wait = time.monotonic() - t_confirm
            t_ioauth += self._user_wait                   # the user's time is not ours
        self.outcome.timings.setdefault("ioauth_to_tx", time.monotonic() - t_ioauth)
        # the schedule engine saves this txid before the !tx leaves (resume after a crash)
        self.progress(TakerStage.BUILT, f"coinjoin {tx.txid()} built; sending it to the makers",
                      txid=tx.txid(), cj_amount=plan.cj_amount,
                      inputs=[c.prevout.to_str() for c in my_coins])
        await self._collect_sigs(tx, plan)
        # invariant 3: no await from here to the broadcast stage; a cancellation that was asked
        # for and lost on the way stops the run here, before any signature of ours exists
        lost = self._lost_cancellation()
        if lost:
            log.warning("taker: a cancellation was lost before the point of no return (%s): "
                        "stopping without signing", lost)
            raise asyncio.CancelledError()
        # invariant 1: check_before_signing runs inside sign_our_inputs
        txbuild.sign_our_inputs(self.wallet, tx, self.password, plan)
        if not tx.is_complete():
            raise _RoundFailed("the transaction is not complete after signing",
                               failure=Failure.INTERNAL)
        await self._broadcast(tx, plan, breakdown)
        self._record(plan, tx, breakdown)

    def _lost_cancellation(self) -> Optional[str]:
        """Why this run counts as cancelled although no ``CancelledError`` reached it, or None:
        the task has cancellation requests pending (``Task.cancelling()``, Python 3.11+; every
        cancel of our task that was delivered and handled has been uncancelled, as
        ``asyncio.timeout`` does), or the job says the user cancelled."""
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)
        if cancelling is not None and cancelling() > 0:
            return f"the task has {cancelling()} cancellation request(s) pending"
        if self.cancel_requested is not None and self.cancel_requested():
            return "the user cancelled the job"
        return None

    def _shortfall(self, needed: int, script_type: str, sweep: bool, coins: list,
                   feerate: int) -> None:
        """Too few makers qualify: raise the honest reason — a TakerError (no further round)
        unless another round can help (makers were dropped for misbehaving)."""
        from electrum_joinmarket.market.shortfall import explain
        cfg = self.cfg
        if sweep:
            amount = sum(c.value_sats() for c in coins)
            est = feemodel.sweep_fee_estimate(len(coins), max(needed, 1), feerate,
                                              my_type=script_type)
        else:
            amount, est = cfg.amount, 0
        why = explain(self._book, amount, needed, script_type=script_type, limits=cfg.limits,
                      ignored_makers=self.ignored, sweep=sweep, sweep_total_txfee=est,
                      minimum_makers=cfg.minimum_makers)
        if why.retry_can_help:
            raise _RoundFailed(why.message)
        raise TakerError(why.message, failure=why.failure)

    def _select_coins(self, coins: list, need: int) -> list:
        """Largest-first until ``need`` is covered (the user's Coins-tab selection, if any, was
        applied before)."""
        chosen, total = [], 0
        for c in sorted(coins, key=lambda c: c.value_sats(), reverse=True):
            chosen.append(c)
            total += c.value_sats()
            if total >= need:
                return chosen
        raise TakerError(f"not enough funds: {need} sat needed (amount + maker fees + miner fee "
                         f"estimate), {total} sat spendable", failure=Failure.COINS)

    def _privkey(self, address: str) -> bytes:
        from electrum.bitcoin import deserialize_privkey
        wif = self.wallet.export_private_key(address, self.password)
        _txin_type, secret, _compressed = deserialize_privkey(wif)
        return secret

    def _make_commitment(self, tx_coins: list, all_coins: list, cj_amount: int):
        policy = self.cfg.commitment_policy
        keys: dict[str, bytes] = {}

        def candidates(coins: list) -> list[CommitmentCandidate]:
            out = []
            for c in coins:
                outpoint = c.prevout.to_str()
                if outpoint not in keys:
                    keys[outpoint] = self._privkey(c.address)
                conf = self.wallet.adb.get_tx_height(c.prevout.txid.hex()).conf
                used = self.commitments.used_indices_for_key(keys[outpoint],
                                                             policy.taker_utxo_retries)
                out.append(CommitmentCandidate(utxo=outpoint, value=c.value_sats(),
                                               confirmations=conf, used_indices=used))
            return out
        # this coinjoin's own inputs first (Ref); the rest of the wallet only if none qualifies,
        # so a large wallet does not export every key for nothing
        choice = choose_commitment_utxo(candidates(tx_coins), cj_amount, policy)
        if not isinstance(choice, CommitmentChoice):
            choice = choose_commitment_utxo(candidates(tx_coins), cj_amount, policy,
                                            wallet_utxos=candidates(all_coins))
        if not isinstance(choice, CommitmentChoice):
            raise TakerError(f"no utxo can back a PoDLE commitment: {choice.reason}. Wait for "
                             f"more confirmations or add a larger coin "
                             f"(≥ {policy.taker_utxo_amtpercent}% of the amount, "
                             f"≥ {policy.taker_utxo_age} confirmations)", failure=Failure.COINS)
        return generate_podle(keys[choice.utxo], choice.utxo, choice.index)

    def _maker_refused(self, nick: str, reason: str) -> None:
        """The maker answered our ``!fill``/``!auth`` with ``!error``: it declined this round
        (no coins, amount out of its range, a commitment it will not take, …). Not used again
        in this run, reported as refused rather than silent."""
        self.ignored[nick] = f"refused: {reason}"
        self.progress(TakerStage.MAKER_REJECTED, f"maker {nick} refused: {reason}", maker=nick,
                      case="refused")

    async def _verify_ioauths(self, data: Any, offers: dict[str, Offer], my_coins: list,
                              cj_amount: int) -> dict[str, Any]:
        """Check every maker's ``!ioauth`` on-chain; drop (and ignore for the run) the bad ones.

        All makers are checked at once (their chain questions share round trips); what depends
        on several makers — an outpoint or address claimed twice (M8, M6) — is decided after,
        in the order we chose the makers, so the outcome does not depend on answer timing."""
        verified: dict[str, Any] = {}
        if not isinstance(data, dict):
            raise _RoundFailed("the daemon sent malformed !ioauth data")
        mine = [c.prevout.to_str() for c in my_coins]
        self._unchecked = []
        for nick in list(offers):
            if nick not in data and nick not in self.ignored:
                self.ignored[nick] = "M10: silent after !fill"
        order = [nick for nick in offers if nick in data]

        async def check(nick: str) -> Any:
            try:
                utxos, auth_pub, cj_addr, change_addr, btc_sig, maker_pk = data[nick]
                if isinstance(utxos, str):
                    utxos = utxos.split(",")
                body = " ".join([",".join(utxos), auth_pub, cj_addr, change_addr, btc_sig])
                return await verify_ioauth(body, maker_pk, self.chain, cj_amount=cj_amount,
                                           offer=offers[nick], taker_utxos=mine)
            except (IoauthRejected, ChainError, TypeError, ValueError) as exc:
                return exc
        results = await asyncio.gather(*(check(nick) for nick in order))
        taken: set[str] = set()
        used_addrs = {self._dest}
        for nick, v in zip(order, results, strict=True):
            if isinstance(v, IoauthRejected):
                self.ignored[nick] = f"{v.case_id}: {v}"
                self.progress(TakerStage.MAKER_REJECTED, f"maker {nick} refused: {v}", maker=nick,
                              case=v.case_id)
                continue
            if isinstance(v, ChainError):    # the server's trouble, not proof against the maker
                self._unchecked.append(nick)
                self.progress(TakerStage.MAKER_UNCHECKED, f"could not check maker {nick} on-chain: {v}",
                              maker=nick)
                continue
            if isinstance(v, Exception):
                self.ignored[nick] = f"malformed !ioauth: {v}"
                continue
            dup = next((o for o in v.outpoints if o in taken), None)
            problem = (f"M8: utxo {dup} already declared by another maker" if dup
                       else self._unplannable(v, used_addrs))
            if problem:
                self.ignored[nick] = problem
                self.progress(TakerStage.MAKER_REJECTED, f"maker {nick} refused: {problem}", maker=nick)
                continue
            verified[nick] = v
            taken.update(v.outpoints)
            used_addrs.update((v.cj_addr, v.change_addr))
        self.progress(TakerStage.IOAUTH, f"{len(verified)} of {len(offers)} makers verified on-chain",
                      makers_answered=len(verified), makers_asked=len(offers))
        return verified

    async def _funding_txs(self, verified: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Each verified maker's funding transactions, from what its ``!ioauth`` check fetched
        and proved (heights known: no history lookup, nothing asked about other scripts).  A
        maker whose transactions cannot be had now is returned in the second dict with the
        reason (M14): it is dropped from this round, never the run's end."""
        async def fetch(v: Any) -> Any:
            txids = {u.txid: u.height for u in v.utxos}
            try:
                txs = await asyncio.gather(*(self.chain.get_transaction(t, height=h)
                                             for t, h in txids.items()))
            except ChainError as exc:
                return exc
            return dict(zip(txids, txs, strict=True))
        nicks = list(verified)
        results = await asyncio.gather(*(fetch(verified[n]) for n in nicks))
        prev_txs: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for nick, r in zip(nicks, results, strict=True):
            if isinstance(r, Exception):
                failed[nick] = f"M14: funding transaction unavailable after !ioauth ({r})"
            else:
                prev_txs.update(r)
        return prev_txs, failed

    @staticmethod
    def _unplannable(v: Any, used_addrs: set) -> Optional[str]:
        """Why a verified ``!ioauth`` still cannot go into our transaction (None if it can):
        maker inputs must be of a type JoinMarket signs (p2wpkh, p2sh-p2wpkh), its addresses of a
        known type and not already used in this coinjoin."""
        from electrum.bitcoin import address_to_script
        for u in v.utxos:
            try:
                kind = feemodel.script_type_of_scriptpubkey(u.script_pubkey)
            except feemodel.FeeError:
                kind = "non-standard"
            if kind not in ("p2wpkh", "p2sh"):
                return f"M4: maker input {u.outpoint} is {kind}, not a JoinMarket input type"
        for addr in (v.cj_addr, v.change_addr):
            if addr in used_addrs or v.cj_addr == v.change_addr:
                return f"M6: address {addr} is used twice in this coinjoin"
            try:
                feemodel.script_type_of_scriptpubkey(address_to_script(addr))
            except Exception:
                return f"M6: address {addr} has an unsupported type"
        return None

    def _change_address(self, sweep: bool) -> Optional[str]:
        """Our change address for this round (None for a sweep): the first unused one that no
        maker saw in an earlier round's ``!tx`` (a retry must not link the rounds' makers to the
        same address of ours)."""
        if sweep:
            return None
        w = self.wallet
        change = bool(getattr(w, "use_change", True))
        pool = w.get_change_addresses() if change else w.get_unused_addresses()
        for addr in pool:
            if addr not in self._shown and not w.adb.is_used(addr) \
                    and not w.is_address_reserved(addr):
                return addr
        if w.is_deterministic():
            return w.create_new_address(for_change=change)
        raise TakerError("no unused address left in this wallet for the change",
                         failure=Failure.COINS)

    def _round_destination(self) -> str:
        """This round's destination: the same as before unless makers of an earlier round saw
        it in a ``!tx``; then ``cfg.fresh_destination()`` if given, else (our wallet's own unused
        receiving address) the next one no maker saw. Any other address is the user's choice
        and is kept."""
        dest = self._dest
        if dest not in self._shown:
            return dest
        w = self.wallet
        if self.cfg.fresh_destination is not None:
            from electrum.bitcoin import is_address
            new = self.cfg.fresh_destination()
            if not is_address(new):
                raise TakerError(f"the fresh destination {new!r} is not a valid address")
        elif w.is_mine(dest) and not w.is_change(dest) and dest in w.get_unused_addresses():
            new = next((a for a in w.get_unused_addresses() if a not in self._shown), None) \
                or (w.create_new_address(for_change=False) if w.is_deterministic() else dest)
        else:
            return dest
        if new != dest:
            log.info("taker: makers of an earlier round saw the destination: using a fresh one")
        return new

    def _plan(self, cj_amount: int, my_coins: list, verified: dict[str, Any],
              offers: dict[str, Offer], feerate: int, script_type: str, sweep: bool,
              sweep_est: Optional[int], my_change: Optional[str]):
        """Solve the amounts with the offers we FILLED (what each maker agreed to in ``!fill``
        and what its ``!ioauth`` was checked against), dropping makers whose data cannot be
        planned; _RoundFailed when too few remain."""
        limits = self.cfg.limits
        makers = dict(verified)
        while True:
            mis = [txbuild.MakerInput(nick=nick, offer=offers[nick], utxos=v.utxos,
                                      cj_addr=v.cj_addr, change_addr=v.change_addr)
                   for nick, v in makers.items()]
            try:
                return txbuild.plan_coinjoin(
                    cj_amount=cj_amount, my_coins=my_coins, makers=mis,
                    my_cj_addr=self._dest, my_change_addr=my_change, feerate=feerate,
                    limits=limits, script_type=script_type, sweep=sweep,
                    sweep_est_fee=sweep_est)
            except feemodel.DustMakerChange as exc:
                culprit, why = exc.nick, "M7: maker change below dust"
            except txbuild.FeeLimitExceeded as exc:
                if exc.nick is None:
                    raise _RoundFailed(f"fees above your limits: {exc}",
                                       failure=Failure.FEE_LIMITS) from exc
                culprit, why = exc.nick, f"M12: {exc}"
            except feemodel.SweepFeeChanged as exc:
                raise _RoundFailed(str(exc)) from exc
            except (txbuild.TxBuildError, feemodel.FeeError) as exc:
                raise _RoundFailed(f"cannot plan the coinjoin: {exc}",
                                   failure=exc.failure) from exc
            if culprit is None:
                raise _RoundFailed(f"cannot plan the coinjoin: {why}")
            self.ignored[culprit] = why
            makers.pop(culprit, None)
            if len(makers) < self.cfg.minimum_makers:
                raise _RoundFailed(f"too few makers left after dropping {culprit} ({why})")

    def _breakdown(self, plan: Any) -> dict:
        """What the user pays, exactly as the planned transaction pays it."""
        a = plan.amounts
        fees = {m.nick: m.real_cjfee for m in a.makers}
        total = a.taker_cost            # Σ real cj fees + our miner-fee share (+ dropped change)
        return {"cj_amount": a.cj_amount, "maker_fees": fees, "miner_fee": a.miner_fee,
                "taker_miner_fee": a.my_txfee + a.dropped_change, "total_cost": total,
                "total_cost_percent": float(Decimal(total) * 100 / Decimal(a.cj_amount)),
                "destination": plan.my_cj_addr, "change": a.my_change}

    async def _collect_sigs(self, tx: Any, plan: Any) -> None:
        by_nick = {m.nick: m for m in plan.makers}
        needed = {m.nick: len(m.utxos) for m in plan.makers}
        self._sig_queue = asyncio.Queue()
        t0 = time.monotonic()
        # from here the makers know these addresses are ours: a later round takes new ones
        self._shown.update(a for a in (plan.my_cj_addr, plan.my_change_addr) if a)
        await self._link.call("JMMakeTx", nick_list=list(by_nick),
                               tx=txbuild.wire_to_tx_bytes(txbuild.tx_to_wire(tx)))
        self.progress(TakerStage.TX, f"sent !tx to {len(by_nick)} makers, waiting for signatures",
                      seconds_left=self.cfg.sig_timeout)
        deadline = t0 + self.cfg.sig_timeout
        while any(needed.values()):
            left = deadline - time.monotonic()
            if left <= 0 or self._daemon_lost.is_set():
                silent = [n for n, k in needed.items() if k]
                for nick in silent:
                    self.ignored[nick] = "M10: silent after !ioauth (no !sig)"
                raise _RoundFailed(f"makers did not sign in time: {', '.join(silent)}")
            getter = asyncio.ensure_future(self._sig_queue.get())
            lost = asyncio.ensure_future(self._daemon_lost.wait())
            done, _ = await asyncio.wait({getter, lost}, timeout=left,
                                         return_when=asyncio.FIRST_COMPLETED)
            lost.cancel()
            if getter not in done:
                getter.cancel()
                continue
            nick, sig = getter.result()
            if nick not in by_nick or not needed.get(nick):
                log.info("unexpected !sig from %s ignored", nick)
                continue
            try:
                txbuild.verify_and_add_maker_sig(tx, sig, by_nick[nick].utxos)
            except txbuild.BadMakerSignature as exc:
                self.ignored[nick] = f"M9: bad !sig ({exc})"
                raise _RoundFailed(f"maker {nick} sent an invalid signature") from exc
            needed[nick] -= 1
            self.progress(TakerStage.SIGS, f"{sum(len(m.utxos) for m in plan.makers) - sum(needed.values())}"
                          f" of {sum(len(m.utxos) for m in plan.makers)} maker signatures",
                          seconds_left=round(deadline - time.monotonic(), 1))
        self.outcome.timings.setdefault("tx_to_sigs", time.monotonic() - t0)
        if self._t_fill is not None:
            self.outcome.timings.setdefault("fill_to_sigs", time.monotonic() - self._t_fill
                                            - self._user_wait)

    async def _broadcast(self, tx: Any, plan: Any, breakdown: dict) -> None:
        txid = tx.txid()
        policy = self.cfg.broadcast
        nicks = [m.nick for m in plan.makers]
        pusher = None
        if policy == "not-self":
            pusher = self.rng.choice(nicks)
        elif policy == "random-peer":
            pick = self.rng.choice(nicks + [None])
            pusher = pick
        # from here it may go out whatever this run reports: recorded (and saved) first, so the
        # wallet session records it in the history if it is seen later (taker/signed.py)
        signed.remember(self._frozen_store, self.wallet.save_db, txid, plan.my_inputs,
                        self._summary(plan, breakdown))
        self._gave_out = (txid, pusher)
        t0 = time.monotonic()
        if pusher is None:
            self.progress(TakerStage.BROADCAST, f"broadcasting {txid} through our Electrum server")
            await self.network.broadcast_transaction(tx)
        else:
            self.progress(TakerStage.BROADCAST, f"asking maker {pusher} to broadcast {txid}")
            await self._link.call("JMPushTx", nick=pusher,
                                   tx=bytes.fromhex(tx.serialize()))
        if not await self._wait_seen(txid, self.cfg.seen_timeout):
            if policy == "not-self":
                raise TakerError(f"{txid} was not seen within {self.cfg.seen_timeout:.0f}s and the "
                                 f"policy forbids broadcasting it ourselves",
                                 failure=Failure.BROADCAST)
            log.info("maker %s did not broadcast: broadcasting ourselves", pusher)
            await self.network.broadcast_transaction(tx)
            if not await self._wait_seen(txid, self.cfg.seen_timeout):
                raise TakerError(f"{txid} was broadcast but the wallet has not seen it yet",
                                 failure=Failure.BROADCAST)
        self.outcome.timings.setdefault("broadcast_to_seen", time.monotonic() - t0)
        self.outcome.txid = txid

    async def _wait_seen(self, txid: str, timeout: float) -> bool:
        """True once the wallet has ``txid`` (its server reported it), False after ``timeout``.
        Wakes on Electrum's ``adb_added_tx`` event, not on a timer."""
        from electrum import util
        seen = asyncio.Event()
        adb = self.wallet.adb

        def on_added(which: Any, tx_hash: str, *_: Any) -> None:
            if which is adb and tx_hash == txid:
                seen.set()
        # Electrum keeps a weak reference: `on_added` lives in this frame until unregistered
        util.register_callback(on_added, ["adb_added_tx"])
        try:
            if adb.get_transaction(txid) is not None:
                return True
            try:
                await wait_for(seen.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            return adb.get_transaction(txid) is not None
        finally:
            util.unregister_callback(on_added)

    @staticmethod
    def _summary(plan: Any, breakdown: dict) -> dict:
        """What the history shows of this coinjoin (also kept with a signed transaction)."""
        return {"cj_amount": breakdown["cj_amount"], "destination": plan.my_cj_addr,
                "makers": [m.nick for m in plan.makers],
                "maker_fees": dict(breakdown["maker_fees"]), "miner_fee": breakdown["miner_fee"],
                "taker_miner_fee": breakdown["taker_miner_fee"],
                "total_cost": breakdown["total_cost"], "sweep": plan.sweep}

    def _late_note(self) -> str:
        """What the user must know when a run that gave out a signed transaction fails."""
        if self._gave_out is None:
            return ""
        txid, pusher = self._gave_out
        where = (f"handed to maker {pusher} to broadcast" if pusher
                 else "sent to the Electrum server")
        return (f". Transaction {txid} was fully signed and {where}: it may still be broadcast "
                f"and confirm. If it does, your wallet shows it and the JoinMarket history "
                f"records it; to make sure it never does, spend one of its inputs in another "
                f"transaction")

    def _record(self, plan: Any, tx: Any, breakdown: dict) -> None:
        o = self.outcome
        o.cj_amount = breakdown["cj_amount"]
        o.destination = plan.my_cj_addr
        o.makers = [m.nick for m in plan.makers]
        o.maker_fees = dict(breakdown["maker_fees"])
        o.miner_fee = tx.get_fee() if tx.get_fee() is not None else breakdown["miner_fee"]
        o.taker_miner_fee = breakdown["taker_miner_fee"]
        o.total_cost = breakdown["total_cost"]
        facts = privacy_facts(tx, o.cj_amount, o.miner_fee, plan.my_cj_addr, self.wallet)
        o.anonymity_set, o.fee_rate = facts["anonymity_set"], facts["fee_rate"]
        o.script_type_warning = facts["script_type_warning"]
        o.message = (f"coinjoin {o.txid}: {o.cj_amount} sat to {plan.my_cj_addr} with "
                     f"{len(o.makers)} makers; cost {o.total_cost} sat; anonymity set "
                     f"{o.anonymity_set}, {o.fee_rate} sat/vB")

    # ---------------------------------------------------------------- coins
    def _freeze(self, coins: list) -> None:
        outpoints = [c.prevout.to_str() for c in coins]
        self._frozen.update(outpoints)
        self._frozen_store[FROZEN_KEY] = sorted(self._frozen)
        self.wallet.set_frozen_state_of_coins(outpoints, True, write_to_disk=False)

    def _unfreeze(self) -> None:
        if self._frozen:
            self.wallet.set_frozen_state_of_coins(list(self._frozen), None, write_to_disk=False)
            self._frozen.clear()
            self._frozen_store.pop(FROZEN_KEY, None)
            self.wallet.save_db()


def release_stale_freezes(wallet: Any, store: MutableMapping[str, Any]) -> list[str]:
    """Unfreeze coins a taker froze and never released (Electrum was killed mid-coinjoin);
    returns them. Call when a wallet's JoinMarket session opens."""
    stale = list(store.pop(FROZEN_KEY, None) or [])
    if stale:
        wallet.set_frozen_state_of_coins(stale, None, write_to_disk=True)
        log.info("released %d coin(s) left frozen by an interrupted coinjoin", len(stale))
    return stale

