"""One offer validator (issue 10.3): the daemon keeps exactly the offer rows the plugin's parser
(``jmcore.offers``) accepts, with the same values. No service."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jmcore import constants as C
from jmcore.errors import OfferError
from jmcore.offers import Offer
from jmdaemon.orderbook import Orderbook, validate_offer

FIELDS = ("ordertype", "oid", "minsize", "maxsize", "txfee", "cjfee")


def _plugin_view(row):
    """What the plugin makes of a row (jmcore.offers, as gui/model.py and the taker parse
    JMOffers), or None if it refuses it."""
    try:
        return Offer.from_dict(row).to_dict()
    except OfferError:
        return None


def _daemon_view(row):
    try:
        out = validate_offer(*(row[k] for k in FIELDS))
    except ValueError:
        return None
    return {"counterparty": None, **out}


CASES = [
    ("sw0reloffer", "0", "27300", "100000000", "0", "0.00002"),     # a plain offer
    ("sw0absoffer", "7", "1000", "50000", "10", "250"),              # minsize lifted to dust
    ("sw0reloffer", "1", "27300", "100000", "0", "-0.0001"),         # makers may pay
    ("sw0absoffer", "1", "27300", "100000", "0", "-10"),
    ("sw0reloffer", "1", "27300", "100000", "0", "1e-5"),            # canonical 0.00001
    ("sw0reloffer", "1", "27300", "100000", "0", "2.5"),             # above 100 %: refused
    ("sw0reloffer", "1", "27300", "100000", "0", "NaN"),
    ("sw0reloffer", "1", "27300", "100000", "-1", "0.1"),
    ("sw0reloffer", str(2 ** 63), "27300", "100000", "0", "0.1"),    # oid above sys.maxsize
    ("sw0reloffer", "1", "27300", str(C.MAX_SATOSHIS + 1), "0", "0.1"),
    ("sw0reloffer", "1", "200000", "100000", "0", "0.1"),            # minsize above maxsize
    ("sw0absoffer", "1", "27300", "100000", "0", "1.5"),
    ("bogusoffer", "1", "27300", "100000", "0", "0.1"),
]


@pytest.mark.parametrize("case", CASES, ids=[",".join(c) for c in CASES])
def test_daemon_keeps_what_the_plugin_accepts(case):
    row = dict(zip(FIELDS, case, strict=True))
    assert _daemon_view(row) == _plugin_view(row)


def test_the_kept_row_is_what_the_plugin_reads():
    book = Orderbook()
    assert book.add_offer("J5maker", "sw0reloffer", "3", "1000", "90000", "0", "1e-5")
    assert not book.add_offer("J5maker", "sw0reloffer", "4", "27300", "90000", "0", "3")
    [row] = book.offers()
    assert Offer.from_dict(row).to_dict() == row == {
        "counterparty": "J5maker", "oid": 3, "ordertype": "sw0reloffer", "minsize": 27300,
        "maxsize": 90000, "txfee": 0, "cjfee": "0.00001"}


tokens = st.one_of(st.sampled_from(["0", "1", "27300", "-1", "1e-5", "0.5", "2", "-0.5", "",
                                    "00", "1.", ".5", str(C.MAX_SATOSHIS), str(2 ** 63)]),
                   st.integers(-10, 10 ** 16).map(str), st.text(max_size=8))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(C.OFFER_TYPES) + ["bogus"]), tokens, tokens, tokens, tokens, tokens)
def test_daemon_and_plugin_agree_on_any_row(ordertype, oid, minsize, maxsize, txfee, cjfee):
    row = dict(zip(FIELDS, (ordertype, oid, minsize, maxsize, txfee, cjfee), strict=True))
    assert _daemon_view(row) == _plugin_view(row)
