"""``electrum setconfig plugins.joinmarket.<key> VALUE`` as users type it.

Electrum 4.8's ``setconfig`` JSON-decodes the value with ``parse_float=Decimal`` (through the
daemon, and again in ``Commands._setconfig_normalize_value``), then ``SimpleConfig.set_key``
cannot JSON-encode the Decimal: it logs "json error: cannot save" at INFO level, stores
nothing, and the command exits 0. So ``setconfig plugins.joinmarket.max_cj_fee_rel 0.004``
silently did nothing; only ``'"\\"0.004\\""'`` worked.

:func:`install` (called by the plugin's init module in every Electrum process: the client runs
``--offline`` setconfig itself, the daemon the online one) wraps
``Commands._setconfig_normalize_value`` for **our keys only** and turns the value into what the
setting holds, without float rounding:

* ``max_cj_fee_rel``: the one fee-limit parser (``0.004``, ``0.4%``) → its canonical text;
* ``max_cj_fee_abs``: sats (``20000``, ``"20 000"``) → int;
* whole-number settings (ports, counts, seconds, fee rate) → int, refusing ``2.5``;
* on/off settings → bool (``true``/``false``/``1``/``0``);
* ``channels``: JSON text or a JSON list → its JSON text, checked by the channel model;
* any other decimal → its exact text.

A value that is not valid for the setting raises a one-line ``UserError`` naming the setting
and a valid example: the command exits 1 and nothing is stored.
"""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["install", "normalize", "PREFIX"]

PREFIX = "plugins.joinmarket."
INT_KEYS = {"daemon_port": "27183", "counterparties": "8", "minimum_makers": "4",
            "orderbook_wait": "60", "maker_timeout": "60", "fallback_fee_rate": "2000",
            "max_fee_rate": "100000", "channels_timeout": "90"}
"""Whole-number settings and an example of each (every ``type_=int`` ConfigVar is here: tested)."""
BOOL_KEYS = {"daemon_autostart", "daemon_in_process", "daemon_authentication", "enabled"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _error(name: str, why: str) -> Exception:
    from electrum_joinmarket.errors import Failure, UserError
    return UserError(f"{PREFIX}{name}: {why}", failure=Failure.INPUT)


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _error(name, f"must be a whole number, e.g. {INT_KEYS[name]}")
    if isinstance(value, int):
        return value
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        d = None
    if d is None or not d.is_finite() or d != d.to_integral_value():
        raise _error(name, f"must be a whole number, e.g. {INT_KEYS[name]} (got {str(value)[:20]!r})")
    return int(d)


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _error(name, f"must be true or false (got {str(value)[:20]!r})")


def normalize(key: str, value: Any) -> Any:
    """The value to store for ``key`` (one of ours) after Electrum's own decoding; raises a
    one-line UserError if it is not valid for that setting. None (unsetconfig) passes."""
    if value is None or not key.startswith(PREFIX):
        return value
    name = key[len(PREFIX):]
    if isinstance(value, Decimal):            # what Electrum's decoding made of "0.004"
        value = format(value, "f")
    if name == "max_cj_fee_rel":
        from electrum_joinmarket.market.limits import FeeLimitError, format_max_rel, parse_max_rel
        try:
            return format_max_rel(parse_max_rel(value))
        except FeeLimitError as exc:
            raise _error(name, str(exc)) from None
    if name == "max_cj_fee_abs":
        from electrum_joinmarket.market.limits import FeeLimitError, parse_max_abs
        try:
            return parse_max_abs(value)
        except FeeLimitError as exc:
            raise _error(name, str(exc)) from None
    if name in INT_KEYS:
        return _as_int(name, value)
    if name in BOOL_KEYS:
        return _as_bool(name, value)
    if name == "channels":
        return _channels(value)
    if isinstance(value, float):
        return repr(value)
    return value


def _channels(value: Any) -> str:
    from jmcore.channels import ChannelConfigError, ChannelSettings
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    try:
        ChannelSettings.from_setting(text)
    except ChannelConfigError as exc:          # its message names the setting already
        from electrum_joinmarket.errors import Failure, UserError
        raise UserError(str(exc), failure=Failure.INPUT) from None
    return text


def install() -> bool:
    """Wrap ``Commands._setconfig_normalize_value`` (idempotent); returns whether installed."""
    from electrum.commands import Commands
    current = Commands.__dict__.get("_setconfig_normalize_value")
    original = getattr(current, "__func__", None)
    if original is None:
        return False
    if getattr(original, "_joinmarket", False):
        return True

    def _setconfig_normalize_value(cls: Any, key: Any, value: Any) -> Any:
        value = original(cls, key, value)
        if isinstance(key, str) and key.startswith(PREFIX):
            value = normalize(key, value)
        return value

    _setconfig_normalize_value._joinmarket = True   # type: ignore[attr-defined]
    Commands._setconfig_normalize_value = classmethod(_setconfig_normalize_value)  # type: ignore[method-assign]
    return True
