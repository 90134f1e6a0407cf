"""End to end from the JoinMarket tab: the orderbook fills from a local regtest JoinMarket network
(three Electrum makers over IRC, each with its own jmdaemon), the form refuses bad input with a
clear message, and a coinjoin started from the form (encrypted wallet: Electrum's password
dialog) completes; the confirmation dialog's figures are what the transaction really pays
(maker fees from the makers' balance changes, miner fee from the mempool), and the history
shows it. With EJM_SCREENSHOT=path the finished tab is saved as a PNG (scripts/screenshot_tab.py)."""
from __future__ import annotations

import os
from decimal import Decimal

import pytest

from devstack.wallets import confirmed_balance, new_wallet

from .helpers import jm_tab, start_taker_daemon

pytestmark = [pytest.mark.qt, pytest.mark.stack, pytest.mark.e2e]

LEFT = None


def _left():
    from PyQt6.QtCore import Qt
    return Qt.MouseButton.LeftButton


@pytest.fixture
def taker_daemon(tmp_path, irc_net, ircd, configure):
    daemon = start_taker_daemon(tmp_path, ircd, configure, "qt-taker", counterparties=3)
    yield daemon
    daemon.stop()


def _load_orderbook(tab, qtbot, irc_net):
    qtbot.mouseClick(tab.orderbook.ob_refresh_button, _left())
    nicks = {p.maker.nick for p in irc_net.makers}
    qtbot.waitUntil(lambda: tab.orderbook.ob_table.rowCount() >= len(nicks), timeout=90_000)
    shown = {tab.orderbook.ob_table.item(r, 0).text() for r in range(tab.orderbook.ob_table.rowCount())}
    assert nicks <= shown
    return nicks


def test_orderbook_fills_and_form_refuses_bad_input(electrum_node, bitcoind, irc_net, taker_daemon,
                                                    jm_qt, open_window, modals, qtbot):
    wallet = new_wallet(electrum_node, bitcoind, [3_000_000], confirmations=6)
    window = open_window(wallet)
    tab = jm_tab(window)
    window.tabs.setCurrentWidget(tab)
    tab.form.amount_e.setAmount(1_000_000)
    nicks = _load_orderbook(tab, qtbot, irc_net)
    assert "running at" in tab.status.daemon_label.text() and "up" in tab.status.channels_label.text()
    # fee for the entered amount, in sats and %, from each maker's relative offer
    by_maker = {}
    table = tab.orderbook.ob_table
    for r in range(table.rowCount()):
        by_maker[table.item(r, 0).text()] = [table.item(r, c).text() for c in range(9)]
    for party in irc_net.makers:
        row = by_maker[party.maker.nick]
        fee = int(Decimal(party.maker.settings.cjfee_r) * 1_000_000)
        assert row[1] == "relative" and row[5] == f"{fee:,} sat".replace(",", " ")
        assert row[6] == f"{fee * 100 / 1_000_000:.4f} %" and row[7] == "0 sat"
    # sortable: by fee, descending
    from PyQt6.QtCore import Qt
    tab.orderbook.ob_table.sortItems(5, Qt.SortOrder.DescendingOrder)
    fees = [int(tab.orderbook.ob_table.item(r, 5).text().replace(" sat", "").replace(" ", ""))
            for r in range(table.rowCount()) if table.item(r, 0).text() in nicks]
    assert fees == sorted(fees, reverse=True)

    m = modals()

    def attempt(**form):
        tab.form.sweep_cb.setChecked(form.get("sweep", False))
        tab.form.amount_e.setAmount(form.get("amount", 1_000_000))
        tab.form.dest_e.setText(form.get("dest", wallet.get_unused_address()))
        tab.form.fee_abs_e.setAmount(int(form.get("fee_abs", 50_000)))   # Electrum's unit
        tab.form.fee_rel_e.setText(str(form.get("fee_rel", "0.01")))
        n = len(m.messages)
        qtbot.mouseClick(tab.form.start_button, _left())
        qtbot.waitUntil(lambda: len(m.messages) > n, timeout=5_000)
        assert tab._cj_future is None and jm_qt.session_for(wallet).role is None
        return m.messages[-1]

    assert "not a valid bitcoin address" in attempt(dest="bc1qnotanaddress")
    assert "not a valid bitcoin address" in attempt(dest="mvzLMowjjB9bCrqYX8uNnnGQyN6NvU7z3G"[:-3])
    msg = attempt(amount=5_000_000)
    assert "above the spendable confirmed balance" in msg and "3 000 000 sat" in msg
    msg = attempt(fee_abs=10, fee_rel="0.00001")
    assert "fee limits" in msg and "too low" in msg and "Raise a limit" in msg
    assert "Traceback" not in "".join(m.messages)


def test_coinjoin_from_the_form(electrum_node, bitcoind, irc_net, taker_daemon, jm_qt, open_window,
                                modals, qtbot):
    wallet = new_wallet(electrum_node, bitcoind, [20_000_000, 6_000_000], password="pw", confirmations=6)
    window = open_window(wallet)
    tab = jm_tab(window)
    window.tabs.setCurrentWidget(tab)
    tab.form.amount_e.setAmount(5_000_000)
    _load_orderbook(tab, qtbot, irc_net)
    tab.form.n_spin.setValue(3)
    qtbot.mouseClick(tab.form.next_unused_button, _left())
    dest = tab.form.dest_e.text()
    assert wallet.is_mine(dest)

    makers = {p.maker.nick: p.wallet for p in irc_net.makers}
    before = {nick: confirmed_balance(w) for nick, w in makers.items()}
    taker_before = confirmed_balance(wallet)
    shown: dict = {}

    def password(d):
        d.pw.setText("pw")
        d.accept()

    def confirm(d):
        shown.update(d.figures())
        shown["raw"] = dict(d.breakdown)
        d.accept()
    m = modals(PasswordDialog=password, ConfirmDialog=confirm)
    qtbot.mouseClick(tab.form.start_button, _left())
    assert tab.progress.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: tab.last_outcome is not None, timeout=300_000)
    assert m.seen[:2] == ["PasswordDialog", "ConfirmDialog"], (m.seen, m.messages)
    outcome = tab.last_outcome
    assert outcome["status"] == "success", outcome
    txid = outcome["txid"]
    assert txid in tab.progress.outcome_label.text() and tab.progress.show_tx_button.isEnabled()
    assert "Traceback" not in tab.progress.log_view.toPlainText()

    # the dialog showed the plan's exact figures...
    raw = shown["raw"]
    assert shown["cj_amount"] == raw["cj_amount"] == 5_000_000
    assert shown["maker_fees"] == raw["maker_fees"] and shown["total_cost"] == raw["total_cost"]
    # ...and they are what the transaction pays: miner fee from the mempool,
    entry = bitcoind.rpc("getmempoolentry", txid)
    assert shown["miner_fee"] == round(Decimal(str(entry["fees"]["base"])) * 100_000_000)
    bitcoind.mine(1)
    electrum_node.wait_tx(wallet, txid, confirmations=1)
    for w in makers.values():
        electrum_node.wait_tx(w, txid, confirmations=1)
    # each maker's fee from its balance change (txfee 0 offers), ours from our balance
    paid = {nick: confirmed_balance(w) - before[nick] for nick, w in makers.items()}
    assert {n: v for n, v in paid.items() if v} == shown["maker_fees"]
    assert len(shown["maker_fees"]) >= 2
    assert taker_before - confirmed_balance(wallet) == shown["total_cost"]   # dest is ours
    assert shown["total_cost"] == sum(shown["maker_fees"].values()) + shown["taker_miner_fee"]
    assert wallet.get_label_for_txid(txid) is not None

    # history (plugin storage) shows it
    assert tab.history.txids()[0] == txid
    assert jm_qt.runner.history(wallet)[-1]["txid"] == txid
    assert tab.history.hist_table.item(0, 1).text() == "success"

    # the link into Electrum: the tx dialog opens on this transaction
    from PyQt6.QtWidgets import QApplication
    tab.show_tx(txid)
    dialogs = [w for w in QApplication.topLevelWidgets() if type(w).__name__ == "TxDialog" and w.isVisible()]
    assert dialogs and dialogs[-1].tx.txid() == txid
    for d in dialogs:
        d.close()

    path = os.environ.get("EJM_SCREENSHOT")
    if path:
        tab.status.refresh()
        tab.inner_tabs.setCurrentIndex(0)
        tab.orderbook.render()
        window.tabs.setCurrentWidget(tab)
        qtbot.wait(1500)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        assert window.grab().save(path, "PNG")


def test_maker_start_stop_from_the_tab(electrum_node, bitcoind, irc_net, taker_daemon, jm_qt,
                                       open_window, modals, qtbot, electrum_gui):
    """The maker panel (issue 14.11): start with an offer, earn a real coinjoin's fee (shown in
    the earnings table, equal to what the maker's balance gained), stop — the earnings and the
    offer settings stay with the wallet — and with auto-start on, opening the wallet again
    starts the maker by itself with the same offer. EJM_SCREENSHOT_MAKER=path saves the panel."""
    from devstack.jmnet import quick_config
    from electrum_joinmarket.protocol.commitments import CommitmentStore

    from .helpers import close_window
    wallet = new_wallet(electrum_node, bitcoind, [4_000_000, 3_000_000], confirmations=5)
    window = open_window(wallet)
    tab = jm_tab(window)
    window.tabs.setCurrentWidget(tab)
    tab.inner_tabs.setCurrentIndex(2)
    assert "Not running" in tab.maker.m_status.text() and tab.maker.m_start.isEnabled()
    assert tab.maker.m_type.currentData() == "reloffer" and tab.maker.m_cjfee_a.get_amount() == 500
    m = modals()
    tab.maker.m_type.setCurrentIndex(1)                    # absolute fee
    tab.maker.m_cjfee_a.setAmount(700)                     # in Electrum's unit, like every amount
    qtbot.mouseClick(tab.maker.m_start, _left())
    qtbot.waitUntil(lambda: "Running as" in tab.maker.m_status.text(), timeout=120_000)
    assert not m.messages, m.messages
    session = jm_qt.session_for(wallet)
    assert session.role == "maker" and session.maker.nick in tab.maker.m_status.text()
    assert "absoffer" in tab.maker.m_status.text() and "Earned" in tab.maker.m_status.text()
    assert tab.maker.m_stop.isEnabled() and not tab.maker.m_start.isEnabled()
    assert session.maker.nick in tab.status.nick_label.text()
    # the wallet is busy: a coinjoin from the form is refused with a clear message
    tab.form.amount_e.setAmount(500_000)
    tab.form.fill_next_unused()
    qtbot.mouseClick(tab.form.start_button, _left())
    qtbot.waitUntil(lambda: len(m.messages) >= 1, timeout=15_000)
    assert "busy" in m.messages[0] and "its maker is running" in m.messages[0]

    # a taker elsewhere on the network coinjoins with all four makers: ours earns 700 sat
    nick = session.maker.nick
    before = confirmed_balance(wallet)
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000], confirmations=5)
    dest = new_wallet(electrum_node, bitcoind)
    run = irc_net.taker(taker_w, CommitmentStore({}), quick_config(2_000_000,
                                                                   dest.get_receiving_address(), n=4))
    outcome = irc_net.run_taker(run)
    assert outcome.status == "success" and nick in outcome.makers, outcome
    assert outcome.maker_fees[nick] == 700
    bitcoind.mine(1)
    electrum_node.wait_tx(wallet, outcome.txid, confirmations=1)
    assert confirmed_balance(wallet) - before == 700            # what the maker really gained
    tab.maker.refresh()
    qtbot.waitUntil(lambda: tab.maker.m_earnings.rowCount() == 1 and
                    tab.maker.m_earnings.item(0, 4).text() == "yes", timeout=60_000)
    fmt = window.format_amount_and_units
    assert tab.maker.m_earnings.item(0, 3).text() == fmt(700)
    assert tab.maker.m_earnings.item(0, 2).text() == fmt(2_000_000)
    assert tab.maker.m_earnings.item(0, 1).data(256) == outcome.txid
    assert f"Earned: {fmt(700)}" in tab.maker.m_status.text()
    path = os.environ.get("EJM_SCREENSHOT_MAKER")
    if path:
        qtbot.wait(800)
        assert window.grab().save(path, "PNG")

    qtbot.mouseClick(tab.maker.m_stop, _left())
    qtbot.waitUntil(lambda: "Not running" in tab.maker.m_status.text(), timeout=15_000)
    assert session.role is None and tab.maker.m_start.isEnabled()
    assert f"Earned so far: {fmt(700)}" in tab.maker.m_status.text()      # kept after the stop
    assert tab.maker.m_earnings.rowCount() == 1
    hist = jm_qt.runner.history(wallet)
    assert [(h["role"], h["txid"], h["earned"]) for h in hist] == [("maker", outcome.txid, 700)]

    # auto-start: the next time the wallet is opened, the maker comes back with its offer
    tab.maker.m_autostart.setChecked(True)
    close_window(electrum_gui, window)
    window = open_window(wallet)
    tab = jm_tab(window)
    # running, not just starting (role is set while it starts)
    qtbot.waitUntil(lambda: jm_qt.session_for(wallet).maker is not None, timeout=120_000)
    tab.maker.refresh()
    assert tab.maker.m_type.currentData() == "absoffer" and tab.maker.m_cjfee_a.get_amount() == 700
    assert tab.maker.m_autostart.isChecked()
    offers = jm_qt.session_for(wallet).maker.status()["offers"]
    assert offers and offers[0]["ordertype"].endswith("absoffer") and int(offers[0]["cjfee"]) == 700
    tab.maker.m_autostart.setChecked(False)
    qtbot.mouseClick(tab.maker.m_stop, _left())
    qtbot.waitUntil(lambda: jm_qt.session_for(wallet).role is None, timeout=15_000)
    assert jm_qt.runner.maker_autostart(wallet) is False


def test_legacy_destination_is_warned_then_anonymity_set_fee_rate_and_labels(
        electrum_node, bitcoind, irc_net, taker_daemon, jm_qt, open_window, modals, qtbot):
    """Issue 14.12: a destination of another script type than the coinjoin's (a legacy p2pkh
    address among native-segwit outputs) is warned about before anything starts — declining
    starts nothing; going ahead shows the warning again in the confirmation together with the
    anonymity set and the fee rate, which the chain confirms; Electrum's own history labels the
    coinjoin and its change."""
    from PyQt6.QtWidgets import QMessageBox
    wallet = new_wallet(electrum_node, bitcoind, [20_000_000], confirmations=5)
    window = open_window(wallet)
    tab = jm_tab(window)
    window.tabs.setCurrentWidget(tab)
    tab.form.amount_e.setAmount(4_000_000)
    _load_orderbook(tab, qtbot, irc_net)
    tab.form.n_spin.setValue(3)
    legacy = bitcoind.rpc("getnewaddress", "", "legacy", wallet="miner")
    tab.form.dest_e.setText(legacy)

    answers = []

    def answer(box):
        button = (QMessageBox.StandardButton.Yes if answers.pop(0)
                  else QMessageBox.StandardButton.No)
        box.button(button).click()
    shown: dict = {}

    def confirm(d):
        shown.update(d.figures())
        path = os.environ.get("EJM_SCREENSHOT_CONFIRM")
        if path:
            qtbot.wait(300)
            assert d.grab().save(path, "PNG")
        d.accept()
    m = modals(QMessageBox=answer, ConfirmDialog=confirm)
    answers.append(False)                                   # "Go ahead anyway?" -> No
    qtbot.mouseClick(tab.form.start_button, _left())
    qtbot.waitUntil(lambda: m.seen == ["QMessageBox"], timeout=10_000)
    assert m.messages[0].startswith(
        "Warning: the destination is a legacy (p2pkh, 1…) address but every other coinjoin "
        "output is native segwit (p2wpkh, bc1q…): yours would be the only one of its type, so "
        "anyone can tell which output is yours.")
    qtbot.wait(500)
    assert tab._cj_future is None and jm_qt.session_for(wallet).role is None
    assert jm_qt.runner.jobs.of_wallet(wallet.storage.path) is None       # nothing started

    answers.append(True)                                    # -> Yes: go ahead knowingly
    qtbot.mouseClick(tab.form.start_button, _left())
    qtbot.waitUntil(lambda: tab.last_outcome is not None, timeout=300_000)
    assert m.seen == ["QMessageBox", "QMessageBox", "ConfirmDialog"], (m.seen, m.messages)
    outcome = tab.last_outcome
    assert outcome["status"] == "success", outcome
    txid = outcome["txid"]
    assert shown["script_type_warning"].startswith("Warning: the destination is a legacy (p2pkh")
    # the anonymity set and the fee rate are what the chain shows
    tx = bitcoind.rpc("getrawtransaction", txid, True)
    values = [round(Decimal(str(o["value"])) * 100_000_000) for o in tx["vout"]]
    assert shown["anonymity_set"] == values.count(4_000_000) == 4
    entry = bitcoind.rpc("getmempoolentry", txid)
    fee = round(Decimal(str(entry["fees"]["base"])) * 100_000_000)
    assert abs(shown["fee_rate"] - fee / entry["vsize"]) < 0.1, (shown, fee, entry["vsize"])
    # ...and the legacy output is the only one of its type among the equal outputs
    kinds = [o["scriptPubKey"]["type"] for o in tx["vout"]
             if round(Decimal(str(o["value"])) * 100_000_000) == 4_000_000]
    assert sorted(kinds) == ["pubkeyhash", "witness_v0_keyhash", "witness_v0_keyhash",
                             "witness_v0_keyhash"]
    assert outcome["anonymity_set"] == 4 and abs(outcome["fee_rate"] - shown["fee_rate"]) < 0.1
    # Electrum's own history labels the coinjoin and the change
    electrum_node.wait_tx(wallet, txid)
    assert wallet.get_label_for_txid(txid) == "JoinMarket coinjoin, 4 equal outputs"
    change = [o["scriptPubKey"]["address"] for o in tx["vout"]
              if wallet.is_mine(o["scriptPubKey"].get("address", ""))]
    assert len(change) == 1 and wallet.is_change(change[0])
    assert wallet.get_label_for_address(change[0]) == f"JoinMarket change of {txid[:16]}…"
    bitcoind.mine(1)
