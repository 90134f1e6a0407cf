"""F5/F8 at the point of no return, through the plugin's runner and job model (what the CLI's
joinmarket_cancel, Ctrl-C and the GUI's Cancel button call): a cancellation decided while the
taker still waits for a maker signature ends the coinjoin with nothing of ours signed or
broadcast; once all signatures are in (the taker signs and enters the broadcast stage without an
await in between) a cancellation is refused with its reason and the coinjoin completes."""
from __future__ import annotations

import asyncio

import pytest

from devstack.daemons import plugin_on_daemon
from devstack.ircd import irc_config
from devstack.wallets import confirmed_balance, new_wallet

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


@pytest.fixture
def runner(electrum_node, irc_net, ircd, tmp_path, jm_plugin):
    with plugin_on_daemon(electrum_node.config, tmp_path, "boundary-taker",
                          irc_config(ircd), minimum_makers=3):
        yield jm_plugin.runner


def _run_cancelling_at(electrum_node, runner, wallet, dest, at_sigs: int):
    """Run a coinjoin; when the taker reports ``at_sigs`` maker signatures, ask for a
    cancellation from a separate loop callback (as joinmarket_cancel and the GUI do)."""
    answers: list = []

    def progress(ev: dict) -> None:
        if ev["stage"] == "sigs" and ev["message"].startswith(f"{at_sigs} of "):
            asyncio.get_running_loop().call_soon(
                lambda: answers.append((runner.jobs.of_wallet(wallet.storage.path).stage,
                                        runner.cancel_now(wallet))))
    cfg = runner.taker_config(3_000_000, dest.get_receiving_address())

    async def go():
        return await runner.coinjoin(wallet, cfg, None, progress=progress)
    return electrum_node.run(go(), timeout=180), answers


def test_f5_cancel_while_waiting_for_the_last_signature_signs_and_sends_nothing(
        electrum_node, bitcoind, irc_net, runner):
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000], confirmations=5)
    dest = new_wallet(electrum_node, bitcoind)
    outcome, answers = _run_cancelling_at(electrum_node, runner, taker_w, dest, at_sigs=2)
    assert answers == [("sigs", None)]                     # accepted while still at "sigs"
    assert outcome.status == "cancelled" and outcome.txid is None, outcome.message
    job = runner.jobs.of_wallet(taker_w.storage.path)
    assert job.state == "cancelled" and job.reached_makers
    assert [e["stage"] for e in job.log if e["stage"] == "broadcast"] == []
    bitcoind.mine(1)
    electrum_node.wait_synced(taker_w)
    assert confirmed_balance(taker_w) == 9_000_000         # nothing spent
    assert taker_w.get_balance()[1] == 0                   # nothing in the mempool
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
    hist = runner.history(taker_w)                         # it reached makers: history
    assert [h["status"] for h in hist] == ["cancelled"]


def test_f5_cancel_after_the_last_signature_is_refused_and_the_coinjoin_completes(
        electrum_node, bitcoind, irc_net, runner):
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000], confirmations=5)
    dest = new_wallet(electrum_node, bitcoind)
    outcome, answers = _run_cancelling_at(electrum_node, runner, taker_w, dest, at_sigs=3)
    assert len(answers) == 1
    stage, why_not = answers[0]
    job = runner.jobs.of_wallet(taker_w.storage.path)
    assert stage == "broadcast"
    assert why_not.startswith(f"too late to cancel coinjoin {job.id}: it is signed and being "
                              f"broadcast (broadcasting {outcome.txid} through our Electrum server); "
                              f"follow it with 'electrum ")
    assert outcome.status == "success", outcome.message
    assert job.state == "success" and not job.cancel_requested
    bitcoind.mine(1)
    electrum_node.wait_tx(dest, outcome.txid, confirmations=1)
    assert confirmed_balance(dest) == 3_000_000
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
