"""The JoinMarket message layer over all message channels of one client session.

* public messages go out on every available channel; private ones on the channel pinned for that
  counterparty (the one its offers / orderbook request / verified privmsg arrived on);
* ``auth, ioauth, tx, sig`` are NaCl-encrypted by command name (crypto.py), before signing;
* signing and verification are asked of the client (``JMRequestMsgSig`` /
  ``JMRequestMsgSigVerify``) with the hostid of the channel; only verified messages are decrypted
  and dispatched, and only messages the daemon itself asked to be signed are sent;
* every parser drops bad input with a log line and never raises (money-safety invariant 4);
* floods (issue 12 H4, D9/D10): a private message is dropped *before* it is queued for the client
  unless its pubkey derives its nick and the session wants that command from that nick now
  (``session.wants_privmsg``); what is queued is never dropped to make room — the connection it
  came from is paused instead (:class:`~jmdaemon.limits.Backpressure`); a signed reply with our
  offers (no bond) is signed by the client once per (offers, channel) and re-sent from a cache:
  the signature covers body + hostid, not the recipient, and is deterministic (RFC 6979);
* the per-channel record of nicks is bounded (first seen kept).
"""
import base64
import binascii
import logging
import time
from collections import OrderedDict

from jmcore import constants as C

from . import limits, wire
from .crypto import NaclError, decode_decrypt, encrypt_encode
from .limits import Backpressure, FairQueue

log = logging.getLogger(__name__)

VERIFY_PER_SOURCE = 2000     # messages of one connection waiting for a signature check: above,
VERIFY_TOTAL = 5000          # reading from it pauses (and from any, above the total)
VERIFY_IN_FLIGHT = 100       # signature checks asked of the client at once
VERIFY_PER_CLASS = 32        # messages of one nick and command waiting (the newest kept)
OFFER_CACHE = 16             # signed offer replies kept (per offers text and channel)
OFFER_WAITERS = 1000         # takers waiting for one offer reply's signature
OFFER_SIGN_RETRY = 30.0      # s before asking again for a signature the client never gave


def _schedule(fn):
    from twisted.internet import reactor
    reactor.callLater(0, fn)


class MessageChannelCollection:
    def __init__(self, channels, session, max_pending=5000):
        self.channels = list(channels)
        self.session = session
        self.nick = None
        self.status = {mc: 0 for mc in self.channels}      # 0 not up, 1 up, 2 down
        self.nicks_seen = {mc: set() for mc in self.channels}
        self.active_channels = {}                            # nick -> pinned channel
        self.welcomed = False
        self._welcome_timer = None
        self.max_pending = max_pending
        self.pending_verify = OrderedDict()                  # (nick, fullmsg, hostid) -> source
        self.pending_sign = OrderedDict()                    # (nick, cmd, hostid, msg) -> count
        self.backpressure = Backpressure(VERIFY_PER_SOURCE, VERIFY_TOTAL, _schedule)
        self.verify_queue = FairQueue(self._ask_verify, VERIFY_PER_CLASS, VERIFY_IN_FLIGHT,
                                      on_drop=self._verify_dropped)
        self.queued_verify = set()                           # keys waiting in verify_queue
        self.signed_offers = OrderedDict()                   # (cmd, hostid, msg) -> signed msg
        self.offer_waiters = {}                              # (cmd, hostid, msg) -> (t, [nicks])
        self.dropped = 0
        self.unwanted = 0
        self.failed_verifications = 0
        self.offer_replies_from_cache = 0
        self.closing = False
        for mc in self.channels:
            mc.collection = self

    # ------------------------------------------------------------------ lifecycle
    def set_nick(self, nick):
        self.nick = nick
        for mc in self.channels:
            mc.set_nick(nick)

    def run(self):
        for mc in self.channels:
            mc.run()

    def shutdown(self):
        self.closing = True
        if self._welcome_timer is not None and self._welcome_timer.active():
            self._welcome_timer.cancel()
        for mc in self.channels:
            try:
                mc.shutdown()
            except Exception:
                log.exception("error shutting down channel %s", mc.hostid)

    def available_channels(self):
        return [mc for mc in self.channels if self.status[mc] == 1]

    def channel_for_hostid(self, hostid):
        matches = [mc for mc in self.available_channels() if mc.hostid == hostid]
        return matches[0] if matches else None

    # ------------------------------------------------------------------ channel events
    def on_welcome(self, mc):
        previous = self.status.get(mc)
        self.status[mc] = 1
        if self.welcomed:
            if previous == 2:
                log.info("message channel %s is back", mc.hostid)
                self.session.on_channel_reconnected(mc)
            return
        if any(s == 0 for s in self.status.values()):
            if self._welcome_timer is None:
                from twisted.internet import reactor
                log.info("not all message channels are up yet; waiting up to 60 s")
                self._welcome_timer = reactor.callLater(60, self._welcome_done)
            return
        self._welcome_done()

    def _welcome_done(self):
        if self.welcomed:
            return
        if self._welcome_timer is not None and self._welcome_timer.active():
            self._welcome_timer.cancel()
        self.welcomed = True
        log.info("message channels up: %s", ", ".join(mc.hostid for mc in self.available_channels()))
        self.session.on_welcome()

    def on_disconnect(self, mc):
        self.status[mc] = 2
        gone = self.nicks_seen[mc]
        self.nicks_seen[mc] = set()
        for nick in [n for n, c in self.active_channels.items() if c is mc]:
            del self.active_channels[nick]
            for other in self.available_channels():
                if nick in self.nicks_seen[other]:
                    self.active_channels[nick] = other
                    break
        for nick in gone:
            if not any(nick in self.nicks_seen[o] for o in self.available_channels()):
                self.session.on_nick_leave(nick)
        if not self.available_channels() and not self.closing:
            log.warning("all message channels are down")

    def on_nick_seen(self, mc, nick):
        self._track(mc, nick)

    def _track(self, mc, nick):
        """Note nick as reachable on mc (bounded: past MAX_TRACKED_NICKS per channel, new nicks
        are not noted; those seen first stay reachable)."""
        seen = self.nicks_seen[mc]
        if nick in seen or len(seen) < limits.MAX_TRACKED_NICKS:
            seen.add(nick)
            return True
        return False

    def _pin(self, nick, mc):
        if nick in self.active_channels or len(self.active_channels) < limits.MAX_TRACKED_NICKS:
            self.active_channels[nick] = mc

    def on_nick_leave(self, mc, nick):
        self.nicks_seen[mc].discard(nick)
        pinned = self.active_channels.get(nick)
        if pinned is mc:
            del self.active_channels[nick]
            for other in self.available_channels():
                if other is not mc and nick in self.nicks_seen[other]:
                    self.active_channels[nick] = other
                    return
        if not any(nick in self.nicks_seen[o] for o in self.channels):
            self.session.on_nick_leave(nick)

    # ------------------------------------------------------------------ public, outgoing
    def pubmsg(self, msg):
        for mc in self.available_channels():
            mc.pubmsg(msg)

    def cancel_orders(self, oids):
        msg = "".join("%scancel %d" % (C.COMMAND_PREFIX, int(o)) for o in oids)
        if msg:
            self.pubmsg(msg)

    def request_orderbook(self):
        self.pubmsg(C.COMMAND_PREFIX + "orderbook")

    @staticmethod
    def offer_lines(offerlist):
        keys = ("oid", "minsize", "maxsize", "txfee", "cjfee")
        return [C.COMMAND_PREFIX + o["ordertype"] + " " + " ".join(str(o[k]) for k in keys)
                for o in offerlist]

    def announce_orders(self, offerlist, nick=None, bond_proof=None, mc=None):
        """Publicly on all channels (nick None), or privately to nick (on mc if given)."""
        if not offerlist:
            return
        lines = self.offer_lines(offerlist)
        if nick is None:
            for ch in self.available_channels():
                ch.announce_orders(lines)
            return
        cmd = offerlist[0]["ordertype"]
        msg = lines[0].split(" ", 1)[1] + "".join(lines[1:])
        if bond_proof:
            msg += C.COMMAND_PREFIX + C.CMD_TBOND + " " + bond_proof
        if mc is not None:
            self.prepare_privmsg(nick, cmd, msg, mc=mc)
        else:
            for ch in self.available_channels():
                if nick in self.nicks_seen[ch]:
                    self.prepare_privmsg(nick, cmd, msg, mc=ch)

    # ------------------------------------------------------------------ private, outgoing
    def channel_for_nick(self, nick):
        mc = self.active_channels.get(nick)
        if mc is not None and self.status.get(mc) == 1:
            return mc
        for other in self.available_channels():
            if nick in self.nicks_seen[other]:
                self.active_channels[nick] = other
                return other
        return None

    def prepare_privmsg(self, nick, cmd, message, mc=None):
        """Encrypt if needed, then ask the client to sign for the channel's hostid."""
        if mc is None:
            mc = self.channel_for_nick(nick)
            if mc is None:
                log.info("no message channel to reach %s; %s not sent", nick, cmd)
                return False
        if cmd in C.ENCRYPTED_COMMANDS:
            box = self.session.get_crypto_box(nick)
            if box is None:
                log.info("no encryption box for %s; %s not sent", nick, cmd)
                return False
            message = encrypt_encode(message.encode("ascii"), box)
        size = wire.privmsg_size(self.nick or "", nick, cmd, message) + C.SIGNATURE_OVERHEAD
        if size > C.ONION_MAX_LINE_LENGTH:
            log.error("!%s to %s would be %d bytes on the wire, over the %d-byte limit of "
                      "reference peers; not sent", cmd, nick, size, C.ONION_MAX_LINE_LENGTH)
            return False
        hostid = mc.hostid
        okey = self._offer_key(cmd, hostid, message)
        if okey is not None:
            signed = self.signed_offers.get(okey)
            if signed is not None:          # the same offers, already signed for this channel
                self.offer_replies_from_cache += 1
                mc.privmsg(nick, cmd, signed)
                return True
            waiting = self.offer_waiters.get(okey)
            if waiting is not None and time.monotonic() - waiting[0] < OFFER_SIGN_RETRY:
                if nick not in waiting[1] and len(waiting[1]) < OFFER_WAITERS:
                    waiting[1].append(nick)
                return True
            self.offer_waiters[okey] = (time.monotonic(), [])
        key = (nick, cmd, hostid, message)
        if key not in self.pending_sign and len(self.pending_sign) >= self.max_pending:
            self.dropped += 1
            log.warning("%d messages await the client's signature; !%s to %s not sent",
                        len(self.pending_sign), cmd, nick)
            return False
        self.pending_sign[key] = self.pending_sign.get(key, 0) + 1
        self.session.request_signed_message(nick, cmd, message, message + hostid, hostid)
        return True

    @staticmethod
    def _offer_key(cmd, hostid, message):
        """Cache key of a signed offer reply: only offers without a bond proof (that one is
        made for one taker) can be sent to any taker with the same signature."""
        if cmd not in C.OFFER_TYPES or C.COMMAND_PREFIX + C.CMD_TBOND in message:
            return None
        return (cmd, hostid, message)

    def send_signed_privmsg(self, nick, cmd, msg_to_return, hostid):
        """Called on the client's JMMsgSignature: send only what we asked to have signed."""
        found = None
        for (pnick, pcmd, phost, pmsg) in self.pending_sign:
            if (pnick == nick and pcmd == cmd and phost == hostid
                    and msg_to_return.startswith(pmsg + " ")
                    and len(msg_to_return[len(pmsg) + 1:].split(" ")) == 2):
                found = (pnick, pcmd, phost, pmsg)
                break
        if found is None:
            log.warning("client returned a signature for a message we did not ask to sign "
                        "(to %s, %s); not sent", nick, cmd)
            return False
        self._forget(self.pending_sign, found)
        if wire.privmsg_size(self.nick or "", nick, cmd, msg_to_return) > C.ONION_MAX_LINE_LENGTH:
            log.warning("signed !%s to %s is over the %d-byte limit; not sent", cmd, nick,
                        C.ONION_MAX_LINE_LENGTH)
            return False
        okey = self._offer_key(cmd, hostid, found[3])
        waiters = []
        if okey is not None:
            waiters = self.offer_waiters.pop(okey, (0, []))[1]
            self.signed_offers[okey] = msg_to_return
            self.signed_offers.move_to_end(okey)
            while len(self.signed_offers) > OFFER_CACHE:
                self.signed_offers.popitem(last=False)
        mc = self.channel_for_hostid(hostid)
        if mc is None:
            log.warning("channel %s is not available any more; %s to %s not sent", hostid, cmd, nick)
            return False
        mc.privmsg(nick, cmd, msg_to_return)
        for other in waiters:
            if other != nick:
                self.offer_replies_from_cache += 1
                mc.privmsg(other, cmd, msg_to_return)
        return True

    def send_error(self, nick, errormsg, mc=None):
        log.info("sending error to %s: %s", nick, wire.printable(errormsg))
        self.prepare_privmsg(nick, "error", errormsg, mc=mc)

    def push_tx(self, nick, tx):
        self.prepare_privmsg(nick, "push", base64.b64encode(tx).decode("ascii"))

    def fits(self, nick, cmd, plaintext):
        """Whether ``!cmd plaintext`` to nick (encrypted first if cmd is) stays within
        ``ONION_MAX_LINE_LENGTH`` once signed."""
        size = len(plaintext)
        if cmd in C.ENCRYPTED_COMMANDS:
            size = 4 * -(-(24 + 16 + size) // 3)       # b64(nonce || tag || ciphertext)
        line = wire.privmsg_size(self.nick or "", nick, cmd, "x" * size)
        return line + C.SIGNATURE_OVERHEAD <= C.ONION_MAX_LINE_LENGTH

    def send_tx(self, nick_list, tx):
        """False (nothing sent) if the !tx would be over the line limit for any maker."""
        txb64 = base64.b64encode(tx).decode("ascii")
        if not all(self.fits(nick, "tx", txb64) for nick in nick_list):
            log.error("the transaction (%d bytes) is too large for a !tx line of at most %d "
                      "bytes; not sent", len(tx), C.ONION_MAX_LINE_LENGTH)
            return False
        for nick in nick_list:
            self.prepare_privmsg(nick, "tx", txb64)
        return True

    # ------------------------------------------------------------------ pending bookkeeping
    @staticmethod
    def _forget(table, key):
        n = table.get(key, 0)
        if n <= 1:
            table.pop(key, None)
        else:
            table[key] = n - 1

    # ------------------------------------------------------------------ public, incoming
    def on_pubmsg(self, mc, nick, message, source=None):
        """An unsigned public message (never encrypted); ``source``: the connection it came on."""
        if not wire.valid_nick(nick):
            log.debug("pubmsg from an invalid nick dropped")
            return
        self._track(mc, nick)
        if not isinstance(message, str) or not message.startswith(C.COMMAND_PREFIX):
            return
        if len(message) > limits.MAX_MESSAGE_LEN:
            log.debug("oversized pubmsg from %s dropped", nick)
            return
        commands = message[1:].split(C.COMMAND_PREFIX)
        if commands.count("orderbook") > 1:   # DoS defence (§13)
            log.debug("pubmsg with repeated !orderbook from %s dropped", nick)
            return
        for command in commands[:200]:
            chunks = command.split(" ")
            cmd = chunks[0]
            try:
                if cmd in C.OFFER_TYPES:
                    if len(chunks) < 6:
                        continue
                    self._pin(nick, mc)
                    self.session.on_order_seen(nick, mc, cmd, *chunks[1:6])
                elif cmd == C.CMD_HP2:
                    if len(chunks) >= 2:
                        self.session.on_commitment_seen(nick, chunks[1])
                elif cmd == "cancel":
                    if len(chunks) >= 2 and chunks[1].isdigit() and len(chunks[1]) < 20:
                        self.session.on_order_cancel(nick, int(chunks[1]))
                elif cmd == "orderbook":
                    self.session.on_orderbook_requested(nick, mc, source)
            except Exception:
                log.exception("error handling public %s from %s", cmd[:20], nick)

    # ------------------------------------------------------------------ private, incoming
    def on_privmsg(self, mc, nick, message, source=None):
        """A complete private message from a channel (``source``: the connection it came on):
        check the layout, that its key derives the nick and that the session wants it, then ask
        the client to verify it, pausing ``source`` while too much of it awaits the client."""
        if not wire.valid_nick(nick):
            log.debug("privmsg from an invalid nick dropped")
            return
        if not isinstance(message, str) or len(message) > limits.MAX_MESSAGE_LEN:
            log.debug("oversized privmsg from %s dropped", nick)
            return
        parts = wire.split_signed_privmsg(message)
        if parts is None:
            log.debug("malformed privmsg from %s dropped", nick)
            return
        cmd, body, pub, sig = parts
        if not wire.nick_matches_pubkey(nick, pub):
            self.unwanted += 1
            log.debug("privmsg from %s with a key that is not its nick's dropped", nick)
            return
        wants = getattr(self.session, "wants_privmsg", None)
        if wants is not None and not wants(nick, cmd, source):
            self.unwanted += 1
            log.debug("unexpected !%s from %s dropped before verification", cmd, nick)
            return
        if cmd in C.ENCRYPTED_COMMANDS and not self._decrypts(nick, body):
            self.unwanted += 1
            log.debug("!%s from %s that our box cannot open dropped before verification", cmd,
                      nick)
            return
        hostid = mc.hostid
        key = (nick, message, hostid)
        if key in self.pending_verify or key in self.queued_verify:
            log.debug("repeated privmsg from %s dropped while the first awaits verification", nick)
            return
        self.queued_verify.add(key)
        self.backpressure.add(source)
        self.verify_queue.add((nick, cmd, hostid), (key, source, body, sig, pub))

    def _ask_verify(self, item):
        """FairQueue's way out: one signature check asked of the client."""
        key, source, body, sig, pub = item
        self.queued_verify.discard(key)
        nick, message, hostid = key
        self.pending_verify[key] = source
        self.session.request_signature_verify(body + hostid, message, sig, pub, nick,
                                              C.NICK_HASH_LENGTH, C.NICK_MAX_ENCODED, hostid)

    def _verify_dropped(self, item):
        key, source = item[0], item[1]
        self.queued_verify.discard(key)
        self.backpressure.done(source)

    def _decrypts(self, nick, body):
        """Whether an encrypted body opens with our box for nick. Only this authenticated
        decryption is done before the signature check, nothing acts on the plaintext: a message
        that cannot be opened would be dropped after verification anyway, and whoever does not
        hold the session's key cannot make one that opens."""
        box = self.session.get_crypto_box(nick)
        if box is None:
            return False
        try:
            decode_decrypt(body.replace(" ", ""), box)
        except NaclError:
            return False
        return True

    def on_verified_privmsg(self, nick, fullmsg, hostid, verified):
        """Called on the client's JMMsgSignatureVerify."""
        key = (nick, fullmsg, hostid)
        if key not in self.pending_verify:
            log.warning("verification result for a message we did not ask about (from %s); "
                        "ignored", nick)
            return
        source = self.pending_verify.pop(key)
        self.backpressure.done(source)
        self.verify_queue.done()
        if not verified:
            self.failed_verifications += 1
            if self.failed_verifications in (1, 10, 100, 1000, 10000, 100000, 1000000):
                log.info("signature verification failed for a message from %s; dropped (%d so "
                         "far)", nick, self.failed_verifications)
            else:
                log.debug("signature verification failed for a message from %s; dropped", nick)
            return
        mc = None
        for ch in self.channels:
            if ch.hostid == hostid:
                mc = ch
                break
        if mc is None:
            return
        # only now is the nick known to be reachable on this channel (and, M4, on a direct link)
        self._track(mc, nick)
        if self.active_channels.get(nick) is None or self.status.get(self.active_channels[nick]) != 1:
            self._pin(nick, mc)
        proven = getattr(mc, "nick_proven", None)
        if proven is not None and source is not None:
            proven(nick, source)
        try:
            self._dispatch(nick, mc, wire.strip_signature(fullmsg), source)
        except Exception:
            log.exception("error handling private message from %s", nick)

    def _dispatch(self, nick, mc, message, source=None):
        commands = message.split(C.COMMAND_PREFIX)
        first = commands[0].split(" ")[0]
        if first == C.CMD_TBOND:
            log.debug("privmsg starting with !tbond from %s dropped", nick)
            return
        if first in C.ENCRYPTED_COMMANDS and len(commands) > 1:
            log.debug("encrypted command with trailing commands from %s dropped", nick)
            return
        bond = None            # a !tbond after the offers lends them its standing (orderbook)
        offers_seen = False
        for command in commands[:200]:
            word = command.split(" ", 2)
            if word[0] in C.OFFER_TYPES:
                offers_seen = True
            elif word[0] == C.CMD_TBOND and offers_seen and len(word) >= 2:
                bond = word[1]
                break
        offers_seen = False
        for command in commands[:200]:
            chunks = command.split(" ")
            cmd = chunks[0]
            if cmd in C.ENCRYPTED_COMMANDS:
                box = self.session.get_crypto_box(nick)
                if box is None:
                    log.debug("no encryption box for %s; %s dropped", nick, cmd)
                    return
                try:
                    plain = decode_decrypt("".join(chunks[1:]), box).decode("ascii")
                except (NaclError, UnicodeDecodeError):
                    log.info("could not decrypt %s from %s; dropped", cmd, nick)
                    return
                chunks = [cmd] + plain.split(" ")
            if cmd in C.OFFER_TYPES:
                if len(chunks) >= 6:
                    offers_seen = True
                    self._pin(nick, mc)
                    self.session.on_order_seen(nick, mc, cmd, *chunks[1:6], private=True,
                                               bond=bond)
            elif cmd == C.CMD_TBOND:
                if offers_seen and len(chunks) >= 2:
                    self.session.on_fidelity_bond_seen(nick, chunks[1])
            elif cmd == "error":
                self.session.on_error(nick, " ".join(chunks[1:]))
            elif cmd == "pubkey":
                if len(chunks) >= 2:
                    self.session.on_pubkey(nick, chunks[1])
            elif cmd == "ioauth":
                if len(chunks) >= 6:
                    self.session.on_ioauth(nick, chunks[1].split(","), chunks[2], chunks[3],
                                           chunks[4], chunks[5])
            elif cmd == "sig":
                if len(chunks) >= 2:
                    self.session.on_sig(nick, chunks[1])
            elif cmd == C.CMD_HP2:
                if len(chunks) >= 2:
                    self.session.on_commitment_transferred(nick, chunks[1])
            elif cmd == "fill":
                if len(chunks) < 5 or not chunks[1].isdigit() or not chunks[2].isdigit():
                    log.debug("malformed !fill from %s dropped", nick)
                    continue
                if len(chunks[1]) > 19 or len(chunks[2]) > 19:
                    continue
                self.session.on_order_fill(nick, int(chunks[1]), int(chunks[2]), chunks[3],
                                           chunks[4], mc, source)
            elif cmd == "auth":
                if len(chunks) >= 2:
                    self.session.on_seen_auth(nick, chunks[1])
            elif cmd in ("tx", "push"):
                if len(chunks) < 2:
                    continue
                try:
                    tx = base64.b64decode(chunks[1], validate=True)
                except (binascii.Error, ValueError):
                    log.info("bad base64 in !%s from %s; dropped", cmd, nick)
                    continue
                if cmd == "tx":
                    self.session.on_seen_tx(nick, tx)
                else:
                    self.session.on_push_tx(nick, tx)
