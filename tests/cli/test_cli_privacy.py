"""Issue 14.12 on the command line: a destination whose script type differs from the coinjoin's
is refused with the reason and the override; with --allow_script_mismatch the coinjoin runs and
its result carries the warning; every result gives the anonymity set and the fee rate, which the
chain confirms; Electrum's own history (onchain_history) labels the coinjoin."""
from __future__ import annotations

from decimal import Decimal

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_legacy_destination_refused_then_allowed_with_anonymity_set_and_label(user, wallet, bitcoind):
    legacy = bitcoind.rpc("getnewaddress", "", "legacy", wallet="miner")
    r = user.run("joinmarket_coinjoin", legacy, "0.03", "-w", wallet, "--wait")
    assert r.returncode == 1 and r.err_lines == [
        "the destination is a legacy (p2pkh, 1…) address but every other coinjoin output is "
        "native segwit (p2wpkh, bc1q…): yours would be the only one of its type, so anyone can "
        "tell which output is yours; use a native segwit (p2wpkh, bc1q…) address, or add "
        "--allow_script_mismatch to go ahead anyway"], r
    assert user.ok("joinmarket_history", "-w", wallet).json() == []
    r = user.ok("joinmarket_coinjoin", legacy, "0.03", "-w", wallet, "--wait",
                "--allow_script_mismatch")
    res = r.json()
    out = res["outcome"]
    assert res["request"]["script_type_warning"].startswith("the destination is a legacy")
    assert out["script_type_warning"] == res["request"]["script_type_warning"]
    tx = bitcoind.rpc("getrawtransaction", out["txid"], True)
    equal = [o for o in tx["vout"] if round(Decimal(str(o["value"])) * 100_000_000) == 3_000_000]
    assert out["anonymity_set"] == len(equal) == 4
    assert sorted(o["scriptPubKey"]["type"] for o in equal) == [
        "pubkeyhash", "witness_v0_keyhash", "witness_v0_keyhash", "witness_v0_keyhash"]
    entry = bitcoind.rpc("getmempoolentry", out["txid"])
    fee = round(Decimal(str(entry["fees"]["base"])) * 100_000_000)
    assert out["miner_fee"] == fee and abs(out["fee_rate"] - fee / entry["vsize"]) < 0.1
    hist = user.ok("onchain_history", "-w", wallet).json()
    rows = hist["transactions"] if isinstance(hist, dict) else hist
    (row,) = [t for t in rows if t["txid"] == out["txid"]]
    assert row["label"] == "JoinMarket coinjoin, 4 equal outputs"
    (h,) = user.ok("joinmarket_history", "-w", wallet).json()
    assert (h["txid"], h["anonymity_set"], h["fee_rate"]) == (out["txid"], 4, out["fee_rate"])
