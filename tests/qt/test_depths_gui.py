"""Depths and schedules in Electrum's real Qt window (regtest, offscreen):

* the JoinMarket tab's Depths view shows balances and coins per depth and moves a coin; every
  coin's depth is in Electrum's Coins tab (label prefix and tooltip) and its context menu;
* Electrum asks before it signs a payment from its Send flow that merges depths, and drops the
  signed transaction when the user says no; a payment from one depth is not asked about;
* the Multiple join view creates a 3-step schedule (dialog), starts it, shows every step done,
  with our Electrum makers over jmdaemon and IRC.  With EJM_SCREENSHOT_DIR set, the Depths view
  and the Multiple join view are saved there (scripts/screenshot_tab.py)."""
from __future__ import annotations

import os

import pytest

from devstack.wallets import new_wallet

from .helpers import jm_tab, start_taker_daemon

pytestmark = [pytest.mark.qt, pytest.mark.stack]


def _left():
    from PyQt6.QtCore import Qt
    return Qt.MouseButton.LeftButton


def _inner(tab, title):
    for i in range(tab.inner_tabs.count()):
        if tab.inner_tabs.tabText(i) == title:
            return i, tab.inner_tabs.widget(i)
    raise AssertionError(f"no inner tab {title!r}")


def test_depth_view_coins_tab_and_moving_a_coin(electrum_node, bitcoind, jm_qt, open_window,
                                                modals, qtbot):
    wallet = new_wallet(electrum_node, bitcoind, [3_000_000, 2_000_000, 1_000_000])
    window = open_window(wallet)
    tab = jm_tab(window)
    _i, panel = _inner(tab, "Depths")
    assert panel is tab.depths_panel
    _inner(tab, "Multiple join")
    t = panel.depth_table
    assert t.rowCount() == 5
    assert t.item(0, 4).text() == "3" and t.item(1, 4).text() == "0"
    assert t.item(0, 1).text() == window.format_amount_and_units(6_000_000)
    assert panel.coin_table.rowCount() == 3
    assert "Send tab does not know about depths" in panel.advisory.text()

    # Electrum's Coins tab: label prefix and tooltip
    ul = window.utxo_list
    ul.update()
    labels = [ul.std_model.item(r, ul.Columns.LABEL).text() for r in range(ul.std_model.rowCount())]
    assert labels and all(lb.startswith("[depth 0]") for lb in labels)
    tip = ul.std_model.item(0, ul.Columns.AMOUNT).toolTip()
    assert "JoinMarket depth 0" in tip and "arrived from outside" in tip

    # move the 1M coin to depth 3 from the Depths view (the question is answered yes)
    small = [r for r in range(panel.coin_table.rowCount())
             if panel.coin_table.item(r, 2).key == 1_000_000][0]
    panel.coin_table.selectRow(small)
    panel.move_combo.setCurrentIndex(3)
    m = modals()
    _answer_questions_yes(m)
    qtbot.mouseClick(panel.move_button, _left())
    qtbot.waitUntil(lambda: panel.depth_table.item(3, 4).text() == "1", timeout=10_000)
    rec = jm_qt.session_for(wallet).depths
    assert rec.balances() == {0: 5_000_000, 1: 0, 2: 0, 3: 1_000_000, 4: 0}
    ul.update()
    labels = sorted(ul.std_model.item(r, ul.Columns.LABEL).text()
                    for r in range(ul.std_model.rowCount()))
    assert labels == ["[depth 0]", "[depth 0]", "[depth 3]"]

    # the coinjoin form spends one depth: its selector, the coins it shows, what the runner gets
    form = tab.form
    assert [form.depth_combo.itemData(i) for i in range(form.depth_combo.count())] == \
        [None, 0, 1, 2, 3, 4]
    form.depth_combo.setCurrentIndex(4)                      # depth 3
    assert form.coins_label.text() == "confirmed coins of depth 3 ({})".format(
        window.format_amount_and_units(1_000_000))
    form.depth_combo.setCurrentIndex(2)                      # depth 1: empty
    form.amount_e.setAmount(500_000)
    form.dest_e.setText(wallet.get_receiving_addresses()[10])
    form.fee_abs_e.setText("50000")
    form.fee_rel_e.setText("0.01")
    n = len(m.messages)
    qtbot.mouseClick(form.start_button, _left())
    qtbot.waitUntil(lambda: len(m.messages) > n, timeout=10_000)
    assert "depth 1 has no confirmed, unfrozen coins" in m.messages[-1]

    # the Coins tab's context menu (Electrum's qt_utxo_menu hook) offers the depths
    from electrum.plugin import run_hook
    from PyQt6.QtWidgets import QMenu
    menu = QMenu()
    coins = [c for c in wallet.get_utxos()]
    run_hook("qt_utxo_menu", menu, coins[:1], wallet)
    titles = [a.text() for a in menu.actions()]
    assert any(t.startswith("JoinMarket depth:") for t in titles)
    sub = [a.menu() for a in menu.actions() if a.menu() is not None][0]
    assert [a.text() for a in sub.actions()] == [f"Move to depth {d}" for d in range(5)]


def _answer_questions_yes(m):
    """ModalCatcher closes QMessageBoxes with done(0) (= No for a question); answer Yes."""
    from PyQt6.QtWidgets import QApplication, QMessageBox

    def poll():
        for w in QApplication.topLevelWidgets():
            if (isinstance(w, QMessageBox) and w.isVisible()
                    and not any(w is h for h in m._handled)):
                m._handled.append(w)          # the box itself, not id(): ids are reused
                m.messages.append(w.text())
                w.done(QMessageBox.StandardButton.Yes.value)
    m.timer.timeout.disconnect()
    m.timer.timeout.connect(poll)


def _sign_with_electrum(window, tx, qtbot):
    """What Electrum's Send flow does after the confirmation dialog: sign_tx_with_password."""
    result = {}
    window.sign_tx_with_password(tx, callback=lambda ok: result.setdefault("ok", ok),
                                 password=None)
    qtbot.waitUntil(lambda: "ok" in result, timeout=20_000)
    return result["ok"]


def test_electrum_asks_before_signing_a_send_that_merges_depths(electrum_node, bitcoind, jm_qt,
                                                                open_window, modals, qtbot):
    from electrum.fee_policy import FeePolicy
    from electrum.transaction import PartialTxOutput
    wallet = new_wallet(electrum_node, bitcoind, [3_000_000, 2_000_000])
    other = new_wallet(electrum_node, bitcoind)
    window = open_window(wallet)
    rec = jm_qt.session_for(wallet).depths
    def fresh():            # signing fills Electrum's coin objects: new ones for every tx
        return sorted(wallet.get_spendable_coins(), key=lambda c: c.value_sats())
    coins = fresh()
    rec.set_coin_depth(coins[0].prevout.to_str(), 2)         # 2M coin in depth 2
    out = [PartialTxOutput.from_address_and_value(other.get_receiving_addresses()[0], 4_000_000)]
    m = modals()                                              # closes message boxes: "No"
    tx = wallet.make_unsigned_transaction(coins=coins, outputs=out,
                                          fee_policy=FeePolicy("feerate:2000"))
    assert len(tx.inputs()) == 2
    assert _sign_with_electrum(window, tx, qtbot) is False   # declined: not sent
    assert any("depths 0, 2" in msg for msg in m.messages)
    assert any(msg.startswith("Not sent") for msg in m.messages)
    qtbot.wait(500)
    assert wallet.adb.get_transaction(tx.txid()) is None
    # a payment from one depth: no question
    n = len(m.messages)
    one = wallet.make_unsigned_transaction(
        coins=[fresh()[1]], outputs=[PartialTxOutput.from_address_and_value(
            other.get_receiving_addresses()[0], 1_000_000)], fee_policy=FeePolicy("feerate:2000"))
    assert _sign_with_electrum(window, one, qtbot) is True and one.is_complete()
    assert len(m.messages) == n
    # said yes: signed
    _answer_questions_yes(m)
    tx2 = wallet.make_unsigned_transaction(coins=fresh(), outputs=out,
                                           fee_policy=FeePolicy("feerate:2000"))
    assert _sign_with_electrum(window, tx2, qtbot) is True and tx2.is_complete()


@pytest.fixture
def taker_daemon(tmp_path, irc_net, ircd, configure):
    daemon = start_taker_daemon(tmp_path, ircd, configure, "qt-sched-taker", counterparties=2)
    yield daemon
    daemon.stop()


def test_multiple_join_panel_runs_a_schedule(electrum_node, bitcoind, irc_net, taker_daemon,
                                             jm_qt, open_window, modals, qtbot):
    wallet = new_wallet(electrum_node, bitcoind, [20_000_000, 6_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    window = open_window(wallet)
    tab = jm_tab(window)
    idx, panel = _inner(tab, "Multiple join")
    window.tabs.setCurrentWidget(tab)
    tab.inner_tabs.setCurrentIndex(idx)
    panel.service.poll = 1.0

    def fill(d):
        d.name.setText("three steps")
        d.rows[0][1].setText("12000000")
        d.rows[0][4].setValue(1)
        d.add_step(depth=1, amount="0.5", makers=2)
        d.add_step(depth=1, amount="0", makers=2, destination=dest.get_receiving_addresses()[0])
        d.rows[0][2].setValue(2)
        d.accept()
    modals(StepsDialog=fill)
    qtbot.mouseClick(panel.new_steps_button, _left())
    qtbot.waitUntil(lambda: panel.sched_table.rowCount() == 1, timeout=10_000)
    assert panel.steps_table.rowCount() == 3
    assert panel.steps_table.item(1, 2).text().startswith("50.00 %")
    qtbot.mouseClick(panel.start_button, _left())
    qtbot.waitUntil(lambda: panel.service.busy, timeout=10_000)

    def done():
        st = panel.service.status()[0]
        if "waiting for" in st["message"]:
            bitcoind.mine(1)
            qtbot.wait(1500)
        return st["status"] == "done"
    qtbot.waitUntil(done, timeout=400_000)
    panel.refresh()
    assert [panel.steps_table.item(r, 6).text() for r in range(3)] == ["done"] * 3
    assert panel.sched_table.item(0, 2).text() == "done"
    assert panel.steps_table.item(1, 2).text() == "50.00 % → 6000000 sat"
    rec = jm_qt.session_for(wallet).depths
    bal = rec.balances()
    assert bal[1] == 0 and bal[2] == 6_000_000

    shots = os.environ.get("EJM_SCREENSHOT_DIR")
    if shots:
        os.makedirs(shots, exist_ok=True)
        panel.refresh()
        qtbot.wait(800)
        assert window.grab().save(os.path.join(shots, "joinmarket-multiple-join.png"), "PNG")
        didx, dpanel = _inner(tab, "Depths")
        tab.inner_tabs.setCurrentIndex(didx)
        dpanel.depth_table.clearSelection()
        dpanel.refresh()
        qtbot.wait(800)
        assert window.grab().save(os.path.join(shots, "joinmarket-depths.png"), "PNG")
