"""What the JoinMarket tab shows, computed without Qt (so it is testable and the widgets stay thin).

* :func:`offer_rows` turns the daemon's orderbook (``Runner.orderbook()``) into table rows: fee in
  sats and percent for the amount the user entered, miner-fee contribution, fidelity-bond value.
* :func:`bond_values` values the fidelity bonds of that orderbook on-chain (as the taker does).
* :func:`check_form` validates the coinjoin form and says, in one sentence, what to fix.
* :func:`failure_hint` turns a failed outcome's failure kind into what to try next.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Optional, Sequence

from electrum_joinmarket.errors import Failure, UserError
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.market.limits import (
    ABS_EXAMPLE,
    REL_EXAMPLE,
    FeeLimitError,
    FeeLimits,
    FeeLimitsUnset,
    parse_fee_limits,
)
from electrum_joinmarket.market.orders import filter_offers, offers_from_rows
from jmcore.offers import Offer, OfferError

log = get_logger(__name__)

__all__ = ["OfferRow", "offer_rows", "bond_values", "FormInput", "FormError", "check_form",
           "failure_hint", "fmt_sats", "fmt_percent", "fmt_percent_text", "channel_summary",
           "spendable_coins"]


def fmt_sats(v: Optional[int]) -> str:
    return "–" if v is None else f"{int(v):,} sat".replace(",", " ")


def fmt_percent(part: Optional[float], whole: Optional[float], digits: int = 4) -> str:
    if part is None or not whole:
        return "–"
    return f"{float(part) * 100 / float(whole):.{digits}f} %"


def fmt_percent_text(fraction: Any) -> str:
    """A stored relative limit ("0.004") as the form shows it ("0.4%"); what the user typed
    goes back through market.limits' parser, which reads both notations."""
    from decimal import Decimal, InvalidOperation
    try:
        d = Decimal(str(fraction)) * 100
    except InvalidOperation:
        return str(fraction)
    return format(d.normalize(), "f") + "%"


@dataclass
class OfferRow:
    maker: str
    oid: int
    ordertype: str
    minsize: int
    maxsize: int
    cjfee: str                 # as announced (fraction for rel, sats for abs)
    txfee: int                 # miner-fee contribution
    fee_sats: Optional[int]    # real cj fee for the entered amount (None: no amount)
    fee_percent: Optional[float]
    bond_value: float
    fits: Optional[bool]       # amount inside (minsize, maxsize) — None: no amount entered

    @property
    def kind(self) -> str:
        return "relative" if self.ordertype.endswith("reloffer") else "absolute"

    @property
    def cjfee_text(self) -> str:
        if self.kind == "relative":
            try:
                return f"{float(Decimal(self.cjfee)) * 100:.4f} %"
            except (InvalidOperation, ValueError):
                return str(self.cjfee)
        return fmt_sats(int(self.cjfee))


def parse_offers(raw: Sequence[Any]) -> list[Offer]:
    """The valid offers of an orderbook (:func:`market.orders.offers_from_rows`)."""
    return offers_from_rows(raw)


def offer_rows(raw_offers: Sequence[Any], amount: Optional[int],
               bonds: Optional[dict[str, float]] = None) -> list[OfferRow]:
    rows = []
    for o in parse_offers(raw_offers):
        fee = pct = fits = None
        if amount:
            try:
                fee = o.real_cjfee(amount)
                pct = fee * 100.0 / amount
            except (OfferError, ValueError):
                fee = pct = None
            fits = o.minsize < amount < o.maxsize
        rows.append(OfferRow(maker=o.counterparty or "?", oid=o.oid, ordertype=o.ordertype,
                             minsize=o.minsize, maxsize=o.maxsize, cjfee=str(o.cjfee),
                             txfee=o.txfee, fee_sats=fee, fee_percent=pct,
                             bond_value=float((bonds or {}).get(o.counterparty or "", 0.0)),
                             fits=fits))
    return rows


async def bond_values(raw_bonds: Sequence[Any], network: Any) -> dict[str, float]:
    """Value of each maker's fidelity bond in this orderbook, checked on-chain through Electrum's
    server exactly as the taker does (0/absent when not verifiable). Runs on Electrum's loop."""
    from electrum_joinmarket.chain.server import ElectrumChain
    from electrum_joinmarket.protocol import bonds
    if not raw_bonds or network is None:
        return {}
    chain = ElectrumChain(network)
    return await bonds.bond_values(chain, raw_bonds, tip_height=network.get_local_height(),
                                   header_at=chain.header_at, now=time.time())


def spendable_coins(wallet: Any, selected: Optional[Sequence[Any]] = None) -> list:
    """Confirmed, unfrozen coins the taker may use (limited to the Coins-tab selection)."""
    coins = [c for c in wallet.get_spendable_coins(None) if (c.block_height or 0) > 0]
    if selected is not None:
        wanted = {c.prevout.to_str() for c in selected}
        coins = [c for c in coins if c.prevout.to_str() in wanted]
    return coins


class FormError(UserError, ValueError):
    """A coinjoin form value the user must fix; the message says how."""


@dataclass
class FormInput:
    amount: Optional[int]          # sats; None = empty/invalid
    sweep: bool
    destination: str
    n_makers: int
    max_fee_abs: str               # as typed; parsed by market.limits
    max_fee_rel: str
    feerate_sat_vb: Optional[float]
    coins: Optional[list] = None   # Coins-tab selection (PartialTxInput) or None
    offers: Optional[list] = None  # raw orderbook rows, if one was fetched
    minimum_makers: int = 1
    script_type: str = "p2wpkh"
    extra: dict = field(default_factory=dict)


def check_form(f: FormInput, wallet: Any) -> dict:
    """Validate the form; return TakerConfig overrides (amount, destination, limits...); the fee
    limits go through the one parser (:func:`market.limits.parse_fee_limits`).
    Raises :class:`FormError` with a message that says what to change."""
    from electrum.bitcoin import is_address
    dest = (f.destination or "").strip()
    if not dest:
        raise FormError("Enter a destination address, or press 'Next unused' to use a fresh "
                        "address of this wallet.")
    if not is_address(dest):
        raise FormError(f"'{dest}' is not a valid bitcoin address for this network.")
    coins = spendable_coins(wallet, f.coins)
    balance = sum(c.value_sats() for c in coins)
    where = "the coins selected in the Coins tab" if f.coins is not None else "this wallet"
    if not coins:
        raise FormError(f"No confirmed, unfrozen coins in {where}: a coinjoin needs confirmed coins.")
    if f.sweep:
        amount = 0
    else:
        if not f.amount or f.amount <= 0:
            raise FormError("Enter the amount to send, or tick 'Sweep' to send all of " + where + ".")
        amount = int(f.amount)
        if amount >= balance:
            raise FormError(f"The amount {fmt_sats(amount)} is above the spendable confirmed balance "
                            f"of {where} ({fmt_sats(balance)}), and fees must fit too. Lower the "
                            "amount or tick 'Sweep'.")
    if not 1 <= f.n_makers <= 20:
        raise FormError("The number of counterparties must be between 1 and 20.")
    try:
        limits = parse_fee_limits(f.max_fee_abs, f.max_fee_rel)
    except FeeLimitsUnset:
        raise FormError(f"Set both fee limits per maker: sats (e.g. {ABS_EXAMPLE}) and a fraction "
                        f"of the amount (e.g. {REL_EXAMPLE} or 0.4%).") from None
    except FeeLimitError as exc:
        raise FormError(f"{exc}.") from None
    if f.feerate_sat_vb is not None and not 1 <= f.feerate_sat_vb <= 1000:
        raise FormError("The miner fee rate must be between 1 and 1000 sat/vB.")
    if f.offers:
        _check_offers(f, amount or balance, limits, sweep=f.sweep)
    out = {"amount": amount, "destination": dest, "n_makers": int(f.n_makers), "limits": limits}
    if f.feerate_sat_vb is not None:
        out["fallback_feerate"] = int(round(f.feerate_sat_vb * 1000))
    if f.coins is not None:
        out["coins"] = [c.prevout.to_str() for c in coins]
    return out


def _check_offers(f: FormInput, amount: int, limits: FeeLimits, *, sweep: bool) -> None:
    offers = parse_offers(f.offers or [])
    if not offers:
        return
    everything = FeeLimits(10 ** 16, Decimal(1))
    kw: dict[str, Any] = {"sweep_total_txfee": 0} if sweep else {}
    fitting = filter_offers(offers, amount, script_type=f.script_type, limits=everything, **kw)
    if not fitting:
        raise FormError(f"No offer in the orderbook accepts {fmt_sats(amount)} for this wallet's "
                        "coin type. Change the amount or refresh the orderbook.")
    allowed = filter_offers(offers, amount, script_type=f.script_type, limits=limits, **kw)
    need = max(1, min(f.minimum_makers, f.n_makers))
    if len(allowed) < need:
        cheapest = fitting[min(need, len(fitting)) - 1]
        raise FormError(
            f"Your fee limits ({limits.describe()}) are too low for the offers in the "
            f"orderbook: {len(allowed)} maker(s) "
            f"accept them, {need} needed. The cheapest makers ask up to "
            f"{fmt_sats(cheapest.fee)} ({cheapest.fee * 100 / amount:.4f} %). Raise a limit.")


FAILURE_HINTS: dict[Failure, str] = {
    Failure.CANCELLED: "Nothing was spent; your coins are unfrozen. Start again when you are ready.",
    Failure.DECLINED: "Nothing was signed. Adjust the amount or fee limits and try again.",
    Failure.INPUT: "Nothing was spent. Correct what the message names and try again.",
    Failure.PASSWORD: "Enter the wallet's password again.",
    Failure.COINS: "Wait for your coins to confirm, or select other coins in the Coins tab.",
    Failure.FEE_LIMITS: "Raise the fee limits, or choose fewer counterparties.",
    Failure.MAKERS: ("Too few makers took part. Try fewer counterparties, a longer orderbook wait, "
                     "or try again later."),
    Failure.DAEMON: ("Check the daemon address in JoinMarket settings, or press 'Start daemon'; "
                     "then try again."),
    Failure.CHAIN: ("Electrum's server could not answer a check; nothing was spent. Check "
                    "Electrum's connection and try again."),
    Failure.BROADCAST: ("The coinjoin was signed but is not seen yet: look for it in the History "
                        "tab before trying again."),
    Failure.INTERNAL: "Nothing was spent. See Electrum's log for details and try again.",
}


def failure_hint(failure: Any) -> str:
    """One line of advice for a failed or cancelled coinjoin, from its :class:`Failure` kind (an
    outcome's or history entry's ``failure``; unknown or missing: the generic advice)."""
    try:
        kind = Failure(failure)
    except ValueError:
        kind = Failure.INTERNAL
    return FAILURE_HINTS[kind]


def channel_summary(chan_configs: Sequence[dict]) -> str:
    """``7 onion directory nodes over Tor; IRC host:6667 #joinmarket-pit (Tor)``."""
    if not chan_configs:
        return "none configured"
    parts = []
    for c in chan_configs:
        t = c.get("type", "irc")
        if t == "irc":
            tor = " (Tor)" if str(c.get("socks5", "false")).lower() == "true" else ""
            parts.append(f"IRC {c.get('host')}:{c.get('port')} #{c.get('channel', '')}{tor}")
        elif t == "onion":
            dns = [d for d in str(c.get("directory_nodes", "")).split(",") if d.strip()]
            test = str(c.get("regtest_count", "0,0")).replace(" ", "") not in ("0,0", "")
            n = len(dns)
            parts.append(f"{n} onion directory node{'s' if n != 1 else ''} "
                         f"{'(test mode, plain TCP)' if test else 'over Tor'}")
        else:
            parts.append(str(t))
    return "; ".join(parts)


def tor_status_text(report: dict) -> str:
    """The Tor line of the tab from ``Runner.channel_report()``: where Tor was found, or the one
    message saying what to install or set."""
    tor = report.get("tor") or {}
    if tor.get("needed") is False:
        return ""
    if tor.get("found"):
        return f"Tor: {tor.get('source')} (control port {tor.get('control')} for a maker)"
    return f"Tor: {tor.get('message') or report.get('problem') or 'not found'}"
