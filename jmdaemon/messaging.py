"""The JoinMarket message layer over all message channels of one client session.

* public messages go out on every available channel; private ones on the channel pinned for that
  counterparty (the one its offers / orderbook request / verified privmsg arrived on);
* ``auth, ioauth, tx, sig`` are NaCl-encrypted by command name (crypto.py), before signing;
* signing and verification are asked of the client (``JMRequestMsgSig`` /
  ``JMRequestMsgSigVerify``) with the hostid of the channel; only verified messages are decrypted
  and dispatched, and only messages the daemon itself asked to be signed are sent;
* every parser drops bad input with a log line and never raises (money-safety invariant 4).
"""
import base64
import binascii
import logging
from collections import OrderedDict

from . import constants as C
from . import wire
from .crypto import NaclError, decode_decrypt, encrypt_encode

log = logging.getLogger(__name__)


class MessageChannelCollection:
    def __init__(self, channels, session, max_pending=2000):
        self.channels = list(channels)
        self.session = session
        self.nick = None
        self.status = {mc: 0 for mc in self.channels}      # 0 not up, 1 up, 2 down
        self.nicks_seen = {mc: set() for mc in self.channels}
        self.active_channels = {}                            # nick -> pinned channel
        self.welcomed = False
        self._welcome_timer = None
        self.max_pending = max_pending
        self.pending_verify = OrderedDict()                  # (nick, fullmsg, hostid) -> count
        self.pending_sign = OrderedDict()                    # (nick, cmd, hostid, msg) -> count
        self.dropped = 0
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
        self.nicks_seen[mc].add(nick)

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
            msg += C.COMMAND_PREFIX + C.FIDELITY_BOND_CMD + " " + bond_proof
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
        if size > C.MAX_OUR_LINE:
            log.error("!%s to %s would be %d bytes on the wire, over the %d-byte limit of "
                      "reference peers; not sent", cmd, nick, size, C.MAX_OUR_LINE)
            return False
        hostid = mc.hostid
        key = (nick, cmd, hostid, message)
        self._remember(self.pending_sign, key)
        self.session.request_signed_message(nick, cmd, message, message + hostid, hostid)
        return True

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
        if wire.privmsg_size(self.nick or "", nick, cmd, msg_to_return) > C.MAX_OUR_LINE:
            log.warning("signed !%s to %s is over the %d-byte limit; not sent", cmd, nick,
                        C.MAX_OUR_LINE)
            return False
        mc = self.channel_for_hostid(hostid)
        if mc is None:
            log.warning("channel %s is not available any more; %s to %s not sent", hostid, cmd, nick)
            return False
        mc.privmsg(nick, cmd, msg_to_return)
        return True

    def send_error(self, nick, errormsg, mc=None):
        log.info("sending error to %s: %s", nick, wire.printable(errormsg))
        self.prepare_privmsg(nick, "error", errormsg, mc=mc)

    def push_tx(self, nick, tx):
        self.prepare_privmsg(nick, "push", base64.b64encode(tx).decode("ascii"))

    def fits(self, nick, cmd, plaintext):
        """Whether ``!cmd plaintext`` to nick (encrypted first if cmd is) stays within
        ``MAX_OUR_LINE`` once signed."""
        size = len(plaintext)
        if cmd in C.ENCRYPTED_COMMANDS:
            size = 4 * -(-(24 + 16 + size) // 3)       # b64(nonce || tag || ciphertext)
        line = wire.privmsg_size(self.nick or "", nick, cmd, "x" * size)
        return line + C.SIGNATURE_OVERHEAD <= C.MAX_OUR_LINE

    def send_tx(self, nick_list, tx):
        """False (nothing sent) if the !tx would be over the line limit for any maker."""
        txb64 = base64.b64encode(tx).decode("ascii")
        if not all(self.fits(nick, "tx", txb64) for nick in nick_list):
            log.error("the transaction (%d bytes) is too large for a !tx line of at most %d "
                      "bytes; not sent", len(tx), C.MAX_OUR_LINE)
            return False
        for nick in nick_list:
            self.prepare_privmsg(nick, "tx", txb64)
        return True

    # ------------------------------------------------------------------ pending bookkeeping
    def _remember(self, table, key):
        table[key] = table.get(key, 0) + 1
        table.move_to_end(key)
        while len(table) > self.max_pending:
            table.popitem(last=False)
            self.dropped += 1

    @staticmethod
    def _forget(table, key):
        n = table.get(key, 0)
        if n <= 1:
            table.pop(key, None)
        else:
            table[key] = n - 1

    # ------------------------------------------------------------------ public, incoming
    def on_pubmsg(self, mc, nick, message):
        """An unsigned public message (never encrypted)."""
        if not wire.valid_nick(nick):
            log.debug("pubmsg from an invalid nick dropped")
            return
        self.nicks_seen[mc].add(nick)
        if not isinstance(message, str) or not message.startswith(C.COMMAND_PREFIX):
            return
        if len(message) > C.MAX_MESSAGE_LEN:
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
                    self.active_channels[nick] = mc
                    self.session.on_order_seen(nick, mc, cmd, *chunks[1:6])
                elif cmd == C.COMMITMENT_BROADCAST_CMD:
                    if len(chunks) >= 2:
                        self.session.on_commitment_seen(nick, chunks[1])
                elif cmd == "cancel":
                    if len(chunks) >= 2 and chunks[1].isdigit() and len(chunks[1]) < 20:
                        self.session.on_order_cancel(nick, int(chunks[1]))
                elif cmd == "orderbook":
                    self.session.on_orderbook_requested(nick, mc)
            except Exception:
                log.exception("error handling public %s from %s", cmd[:20], nick)

    # ------------------------------------------------------------------ private, incoming
    def on_privmsg(self, mc, nick, message):
        """A complete private message from a channel: check the layout, ask for verification."""
        if not wire.valid_nick(nick):
            log.debug("privmsg from an invalid nick dropped")
            return
        if not isinstance(message, str) or len(message) > C.MAX_MESSAGE_LEN:
            log.debug("oversized privmsg from %s dropped", nick)
            return
        parts = wire.split_signed_privmsg(message)
        if parts is None:
            log.debug("malformed privmsg from %s dropped", nick)
            return
        cmd, body, pub, sig = parts
        hostid = mc.hostid
        self._remember(self.pending_verify, (nick, message, hostid))
        self.session.request_signature_verify(body + hostid, message, sig, pub, nick,
                                              C.NICK_HASH_LENGTH, C.NICK_MAX_ENCODED, hostid)

    def on_verified_privmsg(self, nick, fullmsg, hostid, verified):
        """Called on the client's JMMsgSignatureVerify."""
        key = (nick, fullmsg, hostid)
        if key not in self.pending_verify:
            log.warning("verification result for a message we did not ask about (from %s); "
                        "ignored", nick)
            return
        self._forget(self.pending_verify, key)
        if not verified:
            log.info("signature verification failed for a message from %s; dropped", nick)
            return
        mc = None
        for ch in self.channels:
            if ch.hostid == hostid:
                mc = ch
                break
        if mc is None:
            return
        # only now is the nick known to be reachable on this channel
        self.nicks_seen[mc].add(nick)
        if self.active_channels.get(nick) is None or self.status.get(self.active_channels[nick]) != 1:
            self.active_channels[nick] = mc
        try:
            self._dispatch(nick, mc, wire.strip_signature(fullmsg))
        except Exception:
            log.exception("error handling private message from %s", nick)

    def _dispatch(self, nick, mc, message):
        commands = message.split(C.COMMAND_PREFIX)
        first = commands[0].split(" ")[0]
        if first == C.FIDELITY_BOND_CMD:
            log.debug("privmsg starting with !tbond from %s dropped", nick)
            return
        if first in C.ENCRYPTED_COMMANDS and len(commands) > 1:
            log.debug("encrypted command with trailing commands from %s dropped", nick)
            return
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
                    self.active_channels[nick] = mc
                    self.session.on_order_seen(nick, mc, cmd, *chunks[1:6])
            elif cmd == C.FIDELITY_BOND_CMD:
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
            elif cmd == C.COMMITMENT_BROADCAST_CMD:
                if len(chunks) >= 2:
                    self.session.on_commitment_transferred(nick, chunks[1])
            elif cmd == "fill":
                if len(chunks) < 5 or not chunks[1].isdigit() or not chunks[2].isdigit():
                    log.debug("malformed !fill from %s dropped", nick)
                    continue
                if len(chunks[1]) > 19 or len(chunks[2]) > 19:
                    continue
                self.session.on_order_fill(nick, int(chunks[1]), int(chunks[2]), chunks[3],
                                           chunks[4], mc)
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
