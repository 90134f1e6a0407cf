"""F5/F8 at the point of no return, through the plugin's runner and job model (what the CLI's
joinmarket_cancel, Ctrl-C and the GUI's Cancel button call): a cancellation decided while the
taker still waits for a maker signature ends the coinjoin with nothing of ours signed or
broadcast; once all signatures are in (the taker signs and enters the broadcast stage without an
await in between) a cancellation is refused with its reason and the coinjoin completes.

A cancellation that lands in the loop iteration in which an offer arrives is not lost (it was,
with asyncio.wait_for on 3.10/3.11: cpython gh-86296), and one that *is* lost on the way (made
so here on purpose) still stops the taker right before it would sign (taker invariant 3)."""
from __future__ import annotations

import asyncio
import sys

import pytest

from devstack.daemons import plugin_on_daemon
from devstack.ircd import irc_config
from devstack.wallets import SignSpy, confirmed_balance, new_wallet
from electrum_joinmarket.jobs import MAKER_STAGES

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


@pytest.fixture
def runner(electrum_node, irc_net, ircd, tmp_path, jm_plugin):
    with plugin_on_daemon(electrum_node.config, tmp_path, "boundary-taker",
                          irc_config(ircd), minimum_makers=3):
        yield jm_plugin.runner


def _coinjoin(electrum_node, runner, wallet, dest, progress):
    """A 3,000,000 sat coinjoin from ``wallet`` to ``dest`` on Electrum's loop; its outcome."""
    cfg = runner.taker_config(3_000_000, dest.get_receiving_address())

    async def go():
        return await runner.coinjoin(wallet, cfg, None, progress=progress)
    return electrum_node.run(go(), timeout=180)


def _run_cancelling_at(electrum_node, runner, wallet, dest, at_sigs: int):
    """Run a coinjoin; when the taker reports ``at_sigs`` maker signatures, ask for a
    cancellation from a separate loop callback (as joinmarket_cancel and the GUI do)."""
    answers: list = []

    def progress(ev: dict) -> None:
        if ev["stage"] == "sigs" and ev["message"].startswith(f"{at_sigs} of "):
            asyncio.get_running_loop().call_soon(
                lambda: answers.append((runner.jobs.of_wallet(wallet.storage.path).stage,
                                        runner.cancel_now(wallet))))
    return _coinjoin(electrum_node, runner, wallet, dest, progress), answers


def test_f5_cancel_while_waiting_for_the_last_signature_signs_and_sends_nothing(
        electrum_node, bitcoind, irc_net, runner):
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000], confirmations=5)
    dest = new_wallet(electrum_node, bitcoind)
    outcome, answers = _run_cancelling_at(electrum_node, runner, taker_w, dest, at_sigs=2)
    assert answers == [("sigs", None)]                     # accepted while still at "sigs"
    assert outcome.status == "cancelled" and outcome.txid is None, outcome.message
    _assert_nothing_signed_or_spent(bitcoind, electrum_node, runner, taker_w, None,
                                    reached_makers=True)
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


def _run_cancelling_as_an_offer_arrives(electrum_node, runner, wallet, dest, cancel):
    """Run a coinjoin; while the taker waits in its orderbook stage, an offer arrives (the book
    delivered again through the daemon link's JMOffers responder, as the AMP connection does)
    and ``cancel(job)`` runs in the same loop callback: the cancellation and the offer land in
    one loop iteration, the race asyncio.wait_for lost on 3.10/3.11. Returns the outcome and
    [(the job's stage, what cancel returned)]."""
    answers: list = []
    book: dict = {}

    def progress(ev: dict) -> None:
        taker = runner.plugin.session_for(wallet).taker
        if "hooked" not in book:                  # record what the daemon sends
            book["hooked"] = True
            real = taker.on_JMOffers

            def on_offers(orderbook: str, fidelitybonds: str) -> None:
                book["last"] = dict(orderbook=orderbook, fidelitybonds=fidelitybonds)
                real(orderbook, fidelitybonds)
            taker.on_JMOffers = on_offers

        def offer_and_cancel() -> None:          # the taker is suspended in its offers wait
            job = runner.jobs.of_wallet(wallet.storage.path)
            taker.client._responder("JMOffers")(**book["last"])
            answers.append((job.stage, cancel(job)))
        if ev["stage"] == "orderbook" and "fired" not in book and "last" in book:
            book["fired"] = True
            asyncio.get_running_loop().call_soon(offer_and_cancel)
    return _coinjoin(electrum_node, runner, wallet, dest, progress), answers


def _assert_nothing_signed_or_spent(bitcoind, electrum_node, runner, wallet, spy, *,
                                    reached_makers: bool):
    job = runner.jobs.of_wallet(wallet.storage.path)
    assert job.state == "cancelled" and job.reached_makers is reached_makers
    if spy is not None:
        assert spy.count == 0                              # our wallet was never asked to sign
    assert [e["stage"] for e in job.log if e["stage"] == "broadcast"] == []
    bitcoind.mine(1)
    electrum_node.wait_synced(wallet)
    assert confirmed_balance(wallet) == 9_000_000          # nothing spent
    assert wallet.get_balance()[1] == 0                    # nothing in the mempool
    assert not any(wallet.is_frozen_coin(c) for c in wallet.get_utxos())
    return job


def test_f5_cancel_as_an_offer_arrives_is_not_lost(electrum_node, bitcoind, irc_net, runner,
                                                   monkeypatch):
    """joinmarket_cancel (Runner.cancel_now) decided in the iteration an offer arrives: the
    taker stops in its orderbook stage — it never chooses makers, never sends !fill."""
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000], confirmations=5)
    dest = new_wallet(electrum_node, bitcoind)
    spy = SignSpy(taker_w, monkeypatch)
    outcome, answers = _run_cancelling_as_an_offer_arrives(
        electrum_node, runner, taker_w, dest, lambda job: runner.cancel_now(taker_w))
    assert answers == [("orderbook", None)]                # accepted in the orderbook stage
    assert outcome.status == "cancelled" and outcome.txid is None, outcome.message
    job = _assert_nothing_signed_or_spent(bitcoind, electrum_node, runner, taker_w, spy,
                                          reached_makers=False)
    stages = [e["stage"] for e in job.log]
    assert "orderbook" in stages and not set(stages) & (MAKER_STAGES | {"chosen", "built"})
    assert runner.history(taker_w) == []                   # it never reached makers


async def _lossy_wait_for(aw, timeout):
    """asyncio.wait_for as 3.10/3.11 have it, on every version: when the caller is cancelled
    in the iteration the awaited thing completes, the result is returned and the cancellation
    is lost."""
    inner = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({inner}, timeout=timeout)
    except asyncio.CancelledError:
        if inner.done():
            return inner.result()                          # the lost cancellation
        inner.cancel()
        raise
    if not done:
        inner.cancel()
        raise asyncio.TimeoutError()
    return inner.result()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is 3.11+")
def test_f5_a_lost_cancellation_of_the_task_stops_the_taker_before_it_signs(
        electrum_node, bitcoind, irc_net, runner, monkeypatch):
    """The job's task is cancelled (as a stopped schedule cancels it: the job's flag is not
    set) as an offer arrives, and the cancellation is lost on purpose (the taker's waits made
    lossy again). The taker runs on through !fill, !ioauth, !tx and every !sig — and stops
    right before its signature: the task has a cancellation pending."""
    import electrum_joinmarket.taker.taker as takermod
    monkeypatch.setattr(takermod, "wait_for", _lossy_wait_for)
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000], confirmations=5)
    dest = new_wallet(electrum_node, bitcoind)
    spy = SignSpy(taker_w, monkeypatch)
    outcome, answers = _run_cancelling_as_an_offer_arrives(
        electrum_node, runner, taker_w, dest, lambda job: job.task.cancel())
    assert answers == [("orderbook", True)]
    job = runner.jobs.of_wallet(taker_w.storage.path)
    assert not job.cancel_requested                        # only the task knows
    assert outcome.status == "cancelled" and outcome.txid is None, outcome.message
    assert "sigs" in [e["stage"] for e in job.log]         # the cancel was lost indeed
    _assert_nothing_signed_or_spent(bitcoind, electrum_node, runner, taker_w, spy,
                                    reached_makers=True)
    assert [h["status"] for h in runner.history(taker_w)] == ["cancelled"]


def test_f5_a_cancelled_job_stops_the_taker_before_it_signs(electrum_node, bitcoind, irc_net,
                                                            runner, monkeypatch):
    """The job says the user cancelled (Runner.cancel_now sets ``cancel_requested`` before it
    cancels the task), but no cancellation reaches the task at all — what a lost one looks like
    on 3.10, which has no Task.cancelling(). The taker stops right before its signature."""
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000], confirmations=5)
    dest = new_wallet(electrum_node, bitcoind)
    spy = SignSpy(taker_w, monkeypatch)
    outcome, answers = _run_cancelling_as_an_offer_arrives(
        electrum_node, runner, taker_w, dest, lambda job: setattr(job, "cancel_requested", True))
    assert answers == [("orderbook", None)]
    job = runner.jobs.of_wallet(taker_w.storage.path)
    assert outcome.status == "cancelled" and outcome.txid is None, outcome.message
    assert "sigs" in [e["stage"] for e in job.log]
    _assert_nothing_signed_or_spent(bitcoind, electrum_node, runner, taker_w, spy,
                                    reached_makers=True)
    assert [h["status"] for h in runner.history(taker_w)] == ["cancelled"]
