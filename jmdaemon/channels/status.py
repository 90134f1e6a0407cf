"""What the daemon tells about its message channels: the ``EJMChannelStatus`` report (our AMP
extension, see docs/amp-extensions.md), a one-line description of a client's channel configs
for the log, and default channels for a client that sends none."""
import json
import logging

from jmcore.channels import ChannelConfigError, ChannelSettings, TorEndpoints, build_chan_configs

log = logging.getLogger(__name__)

REPORT_VERSION = 1
MAX_REPORT_BYTES = 60000        # one AMP value holds at most 65 535 bytes


def _bounded(value, limit=1200):
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    if isinstance(value, dict):
        return {k: _bounded(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded(v, limit) for v in value]
    return value


def channel_report(session):
    """JSON-able state of one client session's channels."""
    mcc = session.mcc
    jminit = "none"
    if session.jminit_error:
        jminit = "refused"
    elif mcc is not None:
        jminit = "accepted"
    out = {"version": REPORT_VERSION, "client_network": session.network, "nick": session.nick,
           "jminit": jminit, "error": session.jminit_error,
           "up": bool(mcc is not None and mcc.welcomed), "channels": []}
    if mcc is not None:
        for mc in mcc.channels:
            status = getattr(mc, "status", None)
            try:
                out["channels"].append(status() if status else {"type": mc.kind,
                                                                "hostid": mc.hostid})
            except Exception:
                log.exception("status of channel %s failed", mc.hostid)
    out = _bounded(out)
    while len(json.dumps(out)) > MAX_REPORT_BYTES and out["channels"]:
        for ch in out["channels"]:          # keep the summary, drop detail
            if ch.get("directories"):
                ch["directories"] = ch["directories"][:len(ch["directories"]) // 2]
        if all(not ch.get("directories") for ch in out["channels"]):
            out["channels"] = out["channels"][:-1]
    return out


def describe_chan_configs(configs):
    """``onion: 7 directories via Tor 127.0.0.1:9050, serving; IRC h:6667 via Tor`` (no
    secrets)."""
    if not isinstance(configs, list):
        return "invalid channel list"
    parts = []
    for c in configs[:16]:
        if not isinstance(c, dict):
            parts.append("invalid entry")
            continue
        ctype = str(c.get("type", "irc")).lower()
        if ctype == "onion":
            dns = c.get("directory_nodes", "")
            n = len([d for d in dns.split(",") if d.strip()]) if isinstance(dns, str) else 0
            rc = str(c.get("regtest_count", "0,0")).replace(" ", "")
            test = str(c.get("test_mode", "")).lower() in ("1", "true") or rc not in ("0,0", "")
            via = "plain TCP (test mode)" if test else "Tor %s:%s" % (c.get("socks5_host"),
                                                                       c.get("socks5_port"))
            parts.append("onion: %d director%s via %s%s (btcnet %s)" % (
                n, "y" if n == 1 else "ies", via,
                ", serving" if str(c.get("serving", "")).lower() in ("1", "true") else "",
                c.get("btcnet", "unset")))
        else:
            tor = str(c.get("socks5", "false")).lower() == "true"
            parts.append("IRC %s:%s%s%s (btcnet %s)" % (
                c.get("host"), c.get("port"), " TLS" if str(c.get("usessl", "")).lower() ==
                "true" else "", " via Tor" if tor else "", c.get("btcnet", "unset")))
    return "; ".join(parts) or "no channels"


def network_default_configs(network, tor_defaults=None):
    """The default directories of ``network`` over the daemon's configured Tor (``[tor]``),
    or [] (testnet/regtest have none)."""
    tor_defaults = tor_defaults or {}
    tor = TorEndpoints(
        socks5_host=str(tor_defaults.get("socks5_host", "127.0.0.1")),
        socks5_port=int(tor_defaults.get("socks5_port", 9050)),
        tor_control_host=str(tor_defaults.get("tor_control_host", "127.0.0.1")),
        tor_control_port=int(tor_defaults.get("tor_control_port", 9051)),
        tor_control_password=tor_defaults.get("tor_control_password") or None,
        source="daemon config")
    try:
        return build_chan_configs(ChannelSettings(), network, role="TAKER", tor=tor)
    except ChannelConfigError as exc:
        log.info("no default channels for a %s client: %s", network, exc)
        return []
