"""Every question the plugin asks the Electrum server, behind one small interface.

:class:`ChainBackend` is what the taker/maker logic depends on; :class:`ElectrumChain` answers it
with Electrum's own :class:`electrum.network.Network` (ElectrumX, electrs, Fulcrum…).  Each
server request is counted in ``query_counts`` so tests can pin how many questions (and so how
much privacy leak towards the server) an operation costs.

Security invariants:

* **Transactions are checked, not trusted.** Electrum's interface already refuses a raw
  transaction whose hash is not the requested txid.  For a *confirmed* transaction we also check
  its SPV proof: the server's merkle branch must lead to the merkle root of the block header at
  the claimed height in Electrum's own POW-verified header chain, with Electrum's protections
  against CVE-2017-12842 / CVE-2012-2459 (``electrum.verifier``); the proof's block height must be
  the height the server claimed.  Any failure raises :class:`ChainProofError` — the caller must
  treat the coin as unverified (never as confirmed).
* **Values and scripts come from the verified transaction**, not from the server's listunspent
  answer; a listunspent value that disagrees with the transaction is a :class:`ChainProofError`.
* **What SPV cannot prove.** That an output is *unspent* comes only from the server's
  ``listunspent`` (the Electrum protocol has no proof of non-spending).  A lying server can claim
  a spent coin is unspent; the coinjoin then fails at broadcast, it does not lose money.
* **Confirmations** are computed from Electrum's local header height, never from a server count;
  an unconfirmed output has 0.  If the header for a claimed height is not (yet) known locally we
  wait up to ``header_wait`` seconds, then raise :class:`ChainProofError`.
* **Event loop.** All methods are coroutines meant for Electrum's asyncio loop (where the plugin
  runs); they only ``await`` Electrum's network coroutines and never call a blocking helper
  (no ``run_from_another_thread``), so they cannot deadlock the loop.
* **Bad input** (malformed txid/outpoint) raises :class:`BadOutpoint` / :class:`ChainError`,
  network failure :class:`ChainUnavailable`; nothing else escapes.
* **Never the same question twice.** Concurrent callers asking the same thing share one request
  (single flight per transaction, scripthash and proof).  A fetched transaction is remembered by
  txid (its content is fixed by its hash).  A merkle proof is remembered per (txid, height)
  together with the merkle root of the local header it was checked against; it is reused only
  while Electrum's header at that height still has that root, so a reorg re-proves.  Unspent
  status (listunspent) is never remembered: it is asked afresh for every question.
* **Concurrency.** Requests that do not depend on each other are issued together and leave as
  one JSON-RPC batch (one message each way), so they share one of the Electrum protocol's padding
  windows: ``PaddedRSTransport`` (Electrum and e-x) sends a small message at once only if nothing
  was sent in the last second, else holds it until then — separate messages issued together
  would go out (and be answered) one window after another.  With a ``script_hint`` (the script
  the caller expects the output to pay) ``get_utxo`` asks for the transaction and the hint's
  unspent list in one batch, then only the merkle proof.
"""
from __future__ import annotations

import asyncio
import functools
import re
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import (
    Any,
    Awaitable,
    Callable,
    Hashable,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    runtime_checkable,
)

from electrum.bitcoin import script_to_scripthash
from electrum.transaction import Transaction, get_address_from_output_script
from electrum.verifier import MerkleVerificationFailure, verify_tx_is_in_block

from electrum_joinmarket.chain.utxo import UtxoInfo
from electrum_joinmarket.errors import Failure, JoinMarketError
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.protocol.podle import PoDLEParseError, parse_utxo_str
from jmcore.aio import wait_for

__all__ = [
    "ChainError", "BadOutpoint", "TxNotFound", "ChainProofError", "ChainUnavailable",
    "VerifiedTx", "ChainBackend", "ElectrumChain", "parse_outpoint", "canonical_outpoint",
    "verify_merkle_proof",
]

_log = get_logger(__name__)
_TXID_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
MAX_MERKLE_BRANCH = 30  # Electrum's own bound (verify_tx_is_in_block)


class ChainError(JoinMarketError):
    """Base class: the chain question could not be answered with a checked answer."""

    failure = Failure.CHAIN


class BadOutpoint(ChainError, ValueError):
    """A txid or ``txid:n`` string is malformed."""


class TxNotFound(ChainError):
    """The server does not return this transaction (unknown txid, or it refuses)."""


class ChainProofError(ChainError):
    """The server's answer failed a check (SPV proof, height, value consistency)."""


class ChainUnavailable(ChainError):
    """No answer from the server in time (disconnected, timed out)."""


def parse_outpoint(outpoint: str) -> tuple[str, int]:
    """Strictly parse ``txid:n`` → (lower-case txid, n); raises :class:`BadOutpoint`."""
    try:
        return parse_utxo_str(outpoint)
    except PoDLEParseError as exc:
        raise BadOutpoint(str(exc)) from None


def canonical_outpoint(outpoint: str) -> str:
    """``txid:n`` with a lower-case txid and a canonical index (for duplicate detection)."""
    txid, n = parse_outpoint(outpoint)
    return f"{txid}:{n}"


def _check_txid(txid: str) -> str:
    if not isinstance(txid, str) or not _TXID_RE.match(txid):
        raise BadOutpoint("txid must be 64 hex characters")
    return txid.lower()


def verify_merkle_proof(txid: str, proof: Mapping[str, Any], header: Optional[dict],
                        expected_height: int) -> None:
    """Check a ``blockchain.transaction.get_merkle`` answer against a header we trust.

    ``proof`` is the server's ``{"block_height", "merkle", "pos"}``; ``header`` the header at
    ``expected_height`` from Electrum's verified chain (None if we do not have it).  Raises
    :class:`ChainProofError` unless the proof is well formed, names ``expected_height`` and hashes
    up to the header's merkle root.
    """
    if not isinstance(proof, Mapping):
        raise ChainProofError("merkle proof is not an object")
    height, branch, pos = proof.get("block_height"), proof.get("merkle"), proof.get("pos")
    if isinstance(height, bool) or not isinstance(height, int) or height != expected_height:
        raise ChainProofError(f"merkle proof for {txid} is for height {height!r}, "
                              f"server said {expected_height}")
    if (not isinstance(branch, (list, tuple)) or len(branch) > MAX_MERKLE_BRANCH
            or not all(isinstance(b, str) and _TXID_RE.match(b) for b in branch)):
        raise ChainProofError(f"malformed merkle branch for {txid}")
    if isinstance(pos, bool) or not isinstance(pos, int) or pos < 0:
        raise ChainProofError(f"malformed merkle position for {txid}")
    try:
        verify_tx_is_in_block(txid, list(branch), pos, header, expected_height)
    except MerkleVerificationFailure as exc:
        raise ChainProofError(f"SPV check failed for {txid} at height {expected_height}: "
                              f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # defensive: malformed data must not escape as anything else
        raise ChainProofError(f"SPV check failed for {txid}: {exc!r}") from None


@dataclass(frozen=True)
class VerifiedTx:
    """A transaction with its confirmation height (SPV-verified when ``height > 0``)."""
    tx: Transaction
    height: int          # > 0 confirmed (proof checked); 0 or -1 unconfirmed
    confirmations: int   # from Electrum's local header height; 0 when unconfirmed


@runtime_checkable
class ChainBackend(Protocol):
    """What the plugin needs to know about the chain.  ``query_counts`` counts server requests
    by kind (``get_transaction``, ``get_merkle``, ``listunspent``, ``get_history``)."""

    query_counts: Counter

    def local_height(self) -> int: ...

    def header_at(self, height: int) -> Optional[dict]: ...

    async def get_transaction(self, txid: str, *, height: Optional[int] = None) -> Transaction: ...

    async def get_verified_transaction(self, txid: str, *,
                                       height: Optional[int] = None) -> VerifiedTx: ...

    async def get_utxo(self, outpoint: str, *,
                       script_hint: Optional[bytes] = None) -> Optional[UtxoInfo]: ...

    async def get_utxos(self, outpoints: Sequence[str], *,
                        script_hint: Optional[bytes] = None) -> list[Optional[UtxoInfo]]: ...


_METHODS = {
    "get_transaction": "blockchain.transaction.get",
    "get_merkle": "blockchain.transaction.get_merkle",
    "listunspent": "blockchain.scripthash.listunspent",
    "get_history": "blockchain.scripthash.get_history",
}
_GATHER_TICKS = 4     # loop iterations a batch waits for requests issued in the same moment


class ElectrumChain:
    """:class:`ChainBackend` over Electrum's ``Network`` (one per process; shared by sessions).

    ``request_timeout`` bounds every server request (Electrum's own retry loop included);
    ``header_wait`` bounds the wait for a header the server is ahead of us on.  ``cache_size``
    bounds the remembered transactions and proofs (each, least recently used dropped first).
    ``cache_hits`` counts answers given from memory, by kind; ``batch_log`` holds the kinds of the
    last 100 messages sent (one tuple per batch).
    """

    def __init__(self, network: Any, *, request_timeout: float = 30.0, header_wait: float = 10.0,
                 cache_size: int = 2000):
        if network is None:
            raise ChainUnavailable("Electrum is offline (no network)")
        self.network = network
        self.request_timeout = request_timeout
        self.header_wait = header_wait
        self.cache_size = cache_size
        self.query_counts: Counter = Counter()
        self.cache_hits: Counter = Counter()
        self._txs: OrderedDict[str, Transaction] = OrderedDict()
        self._proofs: OrderedDict[tuple[str, int], str] = OrderedDict()   # -> header merkle root
        self._inflight: dict[Hashable, asyncio.Future] = {}
        self._queue: list[tuple[str, list, asyncio.Future]] = []
        self._gathering = False
        self._senders: set[asyncio.Future] = set()
        self.batch_log: deque[tuple[str, ...]] = deque(maxlen=100)

    # -- plumbing ---------------------------------------------------------------------------
    async def _ask(self, kind: str, *params: Any) -> Any:
        """Count and send one server request (in the batch of this moment); map transport
        failures to ChainUnavailable."""
        self.query_counts[kind] += 1
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((kind, list(params), fut))
        if not self._gathering:
            self._gathering = True
            sender = asyncio.ensure_future(self._send_batch())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        try:
            return await wait_for(fut, self.request_timeout)
        except asyncio.TimeoutError:
            raise ChainUnavailable(f"{kind}: no answer from the Electrum server in "
                                   f"{self.request_timeout:.0f}s") from None
        except ChainError:
            raise
        except Exception as exc:
            if _is_server_error(exc):
                raise
            raise ChainUnavailable(f"{kind}: {type(exc).__name__}: {exc}") from None

    async def _send_batch(self) -> None:
        """Send the requests queued in this moment as one message (a JSON-RPC batch when there
        are several) to Electrum's current server; hand each caller its answer."""
        try:
            for _ in range(_GATHER_TICKS):
                await asyncio.sleep(0)
        finally:
            self._gathering = False
        items = [(k, p, f) for k, p, f in self._queue if not f.done()]
        self._queue = []
        if not items:
            return
        self.batch_log.append(tuple(k for k, _, _ in items))
        try:
            iface = await self._interface()
            if len(items) == 1:
                kind, params, _ = items[0]
                results: list = [await iface.session.send_request(_METHODS[kind], params)]
            else:
                async with iface.session.send_batch(raise_errors=False) as batch:
                    for kind, params, _ in items:
                        batch.add_request(_METHODS[kind], params)
                results = list(batch.results)
            if len(results) != len(items):
                raise ChainUnavailable(f"the server answered {len(results)} of {len(items)} "
                                       f"requests of a batch")
        except BaseException as exc:
            for _, _, f in items:
                if not f.done():
                    f.set_exception(exc if isinstance(exc, Exception) else
                                    ChainUnavailable("request cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, f), result in zip(items, results, strict=True):
            if f.done():
                continue
            if isinstance(result, BaseException):
                f.set_exception(result)
            else:
                f.set_result(result)

    async def _interface(self) -> Any:
        """Electrum's current server connection, waiting (up to 10 s, as Electrum's own
        requests do) while it is switching servers."""
        for _ in range(10):
            iface = self.network.interface
            if iface is not None and iface.ready.done() and iface.session is not None:
                return iface
            event = getattr(self.network, "default_server_changed_event", None)
            try:
                await wait_for(event.wait() if event is not None else asyncio.sleep(1), 1)
            except asyncio.TimeoutError:
                pass
        raise ChainUnavailable("no connection to an Electrum server")

    async def _once(self, key: Hashable, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``make()`` once for all concurrent callers with the same ``key``.  A caller that
        is cancelled does not cancel the shared request (the others still wait for it)."""
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(make())
            self._inflight[key] = fut
            fut.add_done_callback(functools.partial(self._forget_inflight, key))
        return await asyncio.shield(fut)

    def _forget_inflight(self, key: Hashable, fut: asyncio.Future) -> None:
        if self._inflight.get(key) is fut:
            del self._inflight[key]
        if not fut.cancelled():
            fut.exception()          # retrieved: no "exception never retrieved" if nobody waits

    def _remember(self, cache: OrderedDict, key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def local_height(self) -> int:
        """Height of Electrum's POW-verified header chain."""
        return int(self.network.get_local_height())

    def header_at(self, height: int) -> Optional[dict]:
        """Header at ``height`` from Electrum's verified chain (no server request), or None."""
        chain = self.network.blockchain()
        return chain.read_header(height) if chain is not None else None

    async def _verified_header(self, height: int) -> Optional[dict]:
        """The header at ``height`` once Electrum has it (woken by its ``blockchain_updated``
        event), or None after ``header_wait`` seconds."""
        from electrum import util
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.header_wait
        updated = asyncio.Event()

        def on_update(*_: Any) -> None:
            updated.set()
        util.register_callback(on_update, ["blockchain_updated", "network_updated"])
        try:
            while True:
                updated.clear()
                async with self.network.bhi_lock:   # header sync / reorg handling holds this
                    header = self.header_at(height)
                left = deadline - loop.time()
                if header is not None or left <= 0:
                    return header
                try:
                    await wait_for(updated.wait(), left)
                except asyncio.TimeoutError:
                    pass
        finally:
            util.unregister_callback(on_update)

    def _confirmations(self, height: int) -> int:
        return max(0, self.local_height() - height + 1) if height > 0 else 0

    async def _fetch_raw(self, txid: str) -> Transaction:
        """The transaction ``txid`` (hash-checked), from memory or asked once."""
        tx = self._txs.get(txid)
        if tx is not None:
            self._txs.move_to_end(txid)
            self.cache_hits["get_transaction"] += 1
            return tx
        return await self._once(("tx", txid), lambda: self._fetch_raw_now(txid))

    async def _fetch_raw_now(self, txid: str) -> Transaction:
        try:
            raw = await self._ask("get_transaction", txid)
        except ChainUnavailable:
            raise
        except Exception as exc:
            if _is_server_error(exc):
                raise TxNotFound(f"server does not return transaction {txid}") from None
            raise ChainUnavailable(f"get_transaction: {exc!r}") from None
        try:
            tx = Transaction(raw)
            tx.deserialize()
        except Exception:
            raise ChainProofError(f"server returned an unparsable transaction for {txid}") from None
        if tx.txid() != txid:   # Electrum checks this too; keep the invariant local
            raise ChainProofError(f"server returned a different transaction for {txid}")
        self._remember(self._txs, txid, tx)
        return tx

    async def _prove(self, txid: str, height: int) -> None:
        """SPV-check that ``txid`` is in the block at ``height`` (> 0).  A proof checked before
        counts while the local header at ``height`` keeps the merkle root it was checked against
        (after a reorg that header, and so its root, differs: the proof is asked again)."""
        key = (txid, height)
        root = self._proofs.get(key)
        if root is not None:
            async with self.network.bhi_lock:
                header = self.header_at(height)
            if header is not None and header.get("merkle_root") == root:
                self._proofs.move_to_end(key)
                self.cache_hits["get_merkle"] += 1
                return
            del self._proofs[key]
        await self._once(("merkle",) + key, lambda: self._prove_now(txid, height))

    async def _prove_now(self, txid: str, height: int) -> None:
        try:
            proof = await self._ask("get_merkle", txid, height)
        except ChainUnavailable:
            raise
        except Exception as exc:
            if _is_server_error(exc):
                raise ChainProofError(f"server has no merkle proof for {txid} at height {height}") from None
            raise ChainUnavailable(f"get_merkle: {exc!r}") from None
        header = await self._verified_header(height)
        if header is None:
            raise ChainProofError(f"no verified header at height {height} "
                                  f"(local height {self.local_height()})")
        verify_merkle_proof(txid, proof, header, height)
        self._remember(self._proofs, (txid, height), header["merkle_root"])

    async def _listunspent(self, sh: str) -> Any:
        return await self._once(("listunspent", sh),
                                lambda: self._ask_server("listunspent", sh))

    async def _history_lookup(self, sh: str, txid: str) -> Optional[int]:
        """The server's height for ``txid`` in the history of scripthash ``sh`` (None: absent)."""
        hist = await self._ask_server("get_history", sh)
        for item in hist if isinstance(hist, list) else ():
            if isinstance(item, dict) and item.get("tx_hash") == txid:
                h = item.get("height")
                if isinstance(h, int) and not isinstance(h, bool):
                    return h
        return None

    async def _history_height(self, tx: Transaction, txid: str) -> Optional[int]:
        """The server's height for ``txid``, from the history of one of its output scripts."""
        for out in tx.outputs()[:3]:
            if not out.scriptpubkey or out.scriptpubkey[:1] == b"\x6a":  # OP_RETURN: not indexed
                continue
            h = await self._history_lookup(script_to_scripthash(out.scriptpubkey), txid)
            if h is not None:
                return h
        return None

    async def _ask_server(self, kind: str, *params: Any) -> Any:
        try:
            return await self._ask(kind, *params)
        except ChainUnavailable:
            raise
        except Exception:
            raise ChainProofError(f"{kind}: the server answered with an error") from None

    # -- ChainBackend ---------------------------------------------------------------------------
    async def get_verified_transaction(self, txid: str, *,
                                       height: Optional[int] = None) -> VerifiedTx:
        """Fetch ``txid``; if confirmed, check its SPV proof.  ``height`` (if the caller already
        knows the server's claim, e.g. from listunspent) saves the history lookup."""
        txid = _check_txid(txid)
        tx = await self._fetch_raw(txid)
        if height is None:
            height = await self._history_height(tx, txid)
            if height is None:
                raise ChainProofError(f"cannot locate {txid} in its outputs' history")
        if height > 0:
            await self._prove(txid, height)
        return VerifiedTx(tx, height, self._confirmations(height))

    async def get_transaction(self, txid: str, *, height: Optional[int] = None) -> Transaction:
        """The transaction ``txid``; SPV-verified if confirmed (see module invariants)."""
        return (await self.get_verified_transaction(txid, height=height)).tx

    async def get_utxo(self, outpoint: str, *,
                       script_hint: Optional[bytes] = None) -> Optional[UtxoInfo]:
        """What the chain says about ``txid:n``; None if the tx or the output does not exist.

        Unspent outputs: value/script from the transaction, ``height`` from the server checked by
        SPV when > 0, confirmations from the local header height.  Spent outputs come back with
        ``unspent=False`` (their height is taken from the script's history, unverified, or 0).
        Costs: confirmed unspent = get_transaction + listunspent + get_merkle; mempool unspent =
        get_transaction + listunspent; spent = get_transaction + listunspent + get_history
        (a transaction or proof already in memory is not asked again).

        ``script_hint``: the scriptPubKey the caller expects ``txid:n`` to pay (e.g. derived from
        a key the peer revealed).  Its unspent list is asked together with the transaction, which
        saves one round trip; it is used only if the transaction's output really pays that
        script, otherwise the real script's list is asked as without a hint.
        """
        txid, n = parse_outpoint(outpoint)
        hinted: Optional[asyncio.Future] = None
        hint_sh = None
        if script_hint and txid not in self._txs:
            hint_sh = script_to_scripthash(bytes(script_hint))
            hinted = asyncio.ensure_future(self._listunspent(hint_sh))
        try:
            try:
                tx = await self._fetch_raw(txid)
            except TxNotFound:
                return None
            outputs = tx.outputs()
            if n >= len(outputs):
                return None
            out = outputs[n]
            script = bytes(out.scriptpubkey)
            value = int(out.value)
            address = get_address_from_output_script(script)
            sh = script_to_scripthash(script)
            if hinted is not None and sh == hint_sh:
                unspent = await hinted
            else:
                unspent = await self._listunspent(sh)
        finally:
            if hinted is not None and not hinted.done():
                hinted.cancel()          # the shared request itself is shielded (see _once)
        match = None
        for item in unspent if isinstance(unspent, list) else ():
            if isinstance(item, dict) and item.get("tx_hash") == txid and item.get("tx_pos") == n:
                match = item
                break
        canon = f"{txid}:{n}"
        if match is None:
            height = await self._history_lookup(sh, txid) or 0
            return UtxoInfo(canon, value, script, address, height, self._confirmations(height),
                            unspent=False)
        if match.get("value") != value:
            raise ChainProofError(f"server's value for {canon} ({match.get('value')!r}) differs "
                                  f"from the transaction ({value})")
        claimed = match.get("height")
        if isinstance(claimed, bool) or not isinstance(claimed, int):
            raise ChainProofError(f"server's height for {canon} is not an integer")
        height = claimed
        if height > 0:
            await self._prove(txid, height)
        return UtxoInfo(canon, value, script, address, height, self._confirmations(height),
                        unspent=True)

    async def get_utxos(self, outpoints: Sequence[str], *,
                        script_hint: Optional[bytes] = None) -> list[Optional[UtxoInfo]]:
        """:meth:`get_utxo` for each outpoint, concurrently, results in input order.  The first
        failure cancels the other lookups and is raised."""
        for o in outpoints:
            parse_outpoint(o)                 # refuse bad input before asking anything
        tasks = [asyncio.ensure_future(self.get_utxo(o, script_hint=script_hint))
                 for o in outpoints]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def _is_server_error(exc: BaseException) -> bool:
    """True for an error *answer* from the server (as opposed to a transport failure)."""
    try:
        from electrum.network import UntrustedServerReturnedError
    except ImportError:  # pragma: no cover
        return False
    import aiorpcx
    return isinstance(exc, (UntrustedServerReturnedError, aiorpcx.jsonrpc.RPCError,
                            aiorpcx.jsonrpc.CodeMessageError))
