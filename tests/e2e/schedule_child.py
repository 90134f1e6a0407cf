"""A separate Electrum process for the F7 tests (tests/e2e/test_schedule_f7.py): Electrum 4.8 on
regtest with the JoinMarket plugin loaded as Electrum loads it (cmdline GUI, plugin hooks), one
wallet file, the schedule engine running — and nothing that lets it shut down cleanly: the test
kills it with SIGKILL.

    python -m tests.e2e.schedule_child --datadir D --server H:P:t --wallet PATH \\
        --daemon-port N --daemon-datadir DIR --channels JSON [--create STEPS_JSON]
        [--hold-before-broadcast K]

Loading the wallet fires the plugin's ``daemon_wallet_loaded`` hook: a schedule the previous
process was running resumes by itself (the wallet has no password).  ``--create`` creates and
starts a schedule.  ``--hold-before-broadcast K`` makes the taker stop forever right before it
broadcasts the coinjoin of step K (0-based) — after the ``!tx`` went to the makers and their
signatures came back — and print ``HOLD <txid>``: the moment the test kills the process.

Every schedule event is printed as one JSON line on stdout; ``FINISHED <status>`` at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datadir", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--wallet", required=True)
    ap.add_argument("--daemon-port", type=int, required=True)
    ap.add_argument("--daemon-datadir", required=True)     # where its link cookie is
    ap.add_argument("--channels", required=True)
    ap.add_argument("--create")
    ap.add_argument("--hold-before-broadcast", type=int)
    args = ap.parse_args()
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from devstack.electrum_env import ElectrumNode
    node = ElectrumNode(pathlib.Path(args.datadir), args.server)
    c = node.config
    for k, v in {"enabled": True, "daemon_host": "127.0.0.1", "daemon_port": args.daemon_port,
                 "daemon_autostart": False, "daemon_datadir": args.daemon_datadir,
                 "channels": args.channels,
                 "max_cj_fee_abs": 50_000, "max_cj_fee_rel": "0.01", "counterparties": 2,
                 "minimum_makers": 2, "orderbook_wait": 4, "maker_timeout": 20}.items():
        c.set_key(f"plugins.joinmarket.{k}", v)

    from electrum.plugin import Plugins

    from electrum_joinmarket.loader import register_runtime
    register_runtime()
    plugins = Plugins(c, "cmdline")
    node.daemon._plugins = plugins
    plugin = plugins.get("joinmarket")
    assert plugin is not None, "the plugin did not load"

    def say(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
        sys.stdout.flush()

    if args.hold_before_broadcast is not None:
        from electrum_joinmarket.taker import taker as takermod
        real = takermod.Taker._broadcast
        hold_step = args.hold_before_broadcast

        async def held(self, tx, plan, *rest):       # a kill -9 lands here: signed, never broadcast
            service = plugin.runner.schedules(wallet_box[0])
            sched = service.store.load(service.running_id)
            if sched.current == hold_step:
                say({"event": "HOLD", "txid": tx.txid()})
                await asyncio.Event().wait()
            return await real(self, tx, plan, *rest)
        takermod.Taker._broadcast = held  # type: ignore[method-assign,assignment]

    wallet_box: list = []
    # the hook opens the session and resumes an interrupted schedule by itself
    wallet = node.load_wallet(pathlib.Path(args.wallet))
    wallet_box.append(wallet)
    service = plugin.runner.schedules(wallet)
    service.add_listener(lambda ev: say({k: v for k, v in ev.items()
                                         if k in ("event", "schedule", "status", "message",
                                                  "stage", "step", "txid")}))

    async def create() -> None:
        s = service.create(steps=json.loads(args.create), name="f7")
        service.start(s.id, None)
    if args.create:
        node.run(create())
    # the hook's resume runs on Electrum's loop, a moment after load_wallet returned: READY
    # reports what it decided (resumed: running_id; not resumed: no schedule left "running")
    deadline = time.monotonic() + 30
    while service.running_id is None and service.interrupted() and time.monotonic() < deadline:
        time.sleep(0.1)
    say({"event": "READY", "running": service.running_id})
    if service.running_id is not None:      # what it said before the listener was there
        st = service.status(service.running_id)
        say({"event": "updated", "schedule": st["id"], "status": st["status"],
             "message": st["message"]})

    async def wait_end() -> str:
        while True:
            if service.task is not None:
                sched = await asyncio.shield(service.task)
                return sched.status
            await asyncio.sleep(0.2)
    status = node.run(wait_end(), timeout=3600)
    say({"event": "FINISHED", "status": status})
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
