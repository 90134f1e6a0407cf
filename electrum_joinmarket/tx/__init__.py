"""The coinjoin transaction: the taker's plan/build/check/sign (``taker_tx``) and the maker's
check/sign of a taker's ``!tx`` (``maker_tx``)."""
