"""The traffic-analysis padding hold of the Electrum protocol, switched off in the lab stack.

Electrum 4.8 (``electrum/interface.py``) and e-x 1.20 (``electrumx/server/transport.py``) both
send through a ``PaddedRSTransport`` that, once a connection has used its 1 KiB warm-up budget,
holds every write under 1 KiB for up to ``WAIT_FOR_BUFFER_GROWTH_SECONDS`` (1.0 s) hoping to pad
it together with the next one. On a real server that is a privacy defence and the plugin keeps
it. On the local regtest stack it only adds ~1 s to each request chained after another, at both
ends, so the dev/test stack turns it off: Electrum's class attribute in this process, and e-x
through :data:`ELECTRUMX_WRAPPER`, which sets its class attribute before running e-x.

``EJM_PADDING_HOLD=1`` keeps the production behaviour everywhere (e.g. for
``benchmarks/bench_coinjoin.py --production-like``).
"""
from __future__ import annotations

import os

ENV = "EJM_PADDING_HOLD"

# Run by e-x's own venv Python: ``python -c ELECTRUMX_WRAPPER`` (argv untouched otherwise).
ELECTRUMX_WRAPPER = (
    "import sys\n"
    "from electrumx.server import transport\n"
    "transport.PaddedRSTransport.WAIT_FOR_BUFFER_GROWTH_SECONDS = 0.0\n"
    "from electrumx.cli.electrumx_server import main\n"
    "sys.argv[0] = 'electrumx_server'\n"
    "sys.exit(main())\n"
)


def hold_wanted() -> bool:
    """True when the user asked for the production padding hold (``EJM_PADDING_HOLD=1``)."""
    return os.environ.get(ENV, "0").strip() not in ("", "0", "false", "no")


def disable_electrum_hold() -> bool:
    """Turn Electrum's padding hold off in this process unless :func:`hold_wanted`; returns
    whether it is now off."""
    if hold_wanted():
        return False
    from electrum.interface import PaddedRSTransport
    PaddedRSTransport.WAIT_FOR_BUFFER_GROWTH_SECONDS = 0.0
    return True


def electrumx_command(exe: str) -> list[str]:
    """The argv that starts e-x (``exe`` = its ``electrumx_server`` script) with the hold off,
    or plain ``exe`` when :func:`hold_wanted`."""
    if hold_wanted():
        return [exe]
    python = os.path.join(os.path.dirname(exe), "python3")
    if not os.path.exists(python):
        python = os.path.join(os.path.dirname(exe), "python")
    return [python, "-c", ELECTRUMX_WRAPPER]
