"""The AMP server: one ``JMDaemonProtocol`` per client connection, each with its own nick,
message channels, orderbook and coinjoin sessions (the daemon side of JoinMarket's
``daemon_protocol.py``; sequences in docs/protocol.md §10.3).

Every connection must first authenticate with the cookie (jmcore.linkauth, docs/daemon-auth.md):
until it has, the daemon answers no JoinMarket command - the first one closes the connection - and
calls nothing on it, unless the factory was built with ``authentication=False``
(``--allow-unauthenticated``, for reference clients), which is logged as a warning.

The daemon holds no bitcoin keys: every outgoing private message is signed by the client
(``JMRequestMsgSig``) and every incoming one verified by it (``JMRequestMsgSigVerify``). It holds
the NaCl keys of the four encrypted commands.
"""
import json
import logging
import os
import random
import time
from collections import OrderedDict

from twisted.internet import defer, reactor
from twisted.internet import error as twisted_error
from twisted.internet.protocol import ServerFactory
from twisted.protocols import amp

from jmcore import constants as C
from jmcore import linkauth
from jmcore.channels import ChannelConfigError, no_directories_message

from . import wire
from .blacklist import CommitmentBlacklist, canonical_commitment, confined_path
from .channels.status import channel_report, describe_chan_configs, network_default_configs
from .commands import COMMAND_CLASSES as K
from .commands import ERROR_CLASSES
from .commands import LINK_COMMAND_CLASSES as LK
from .crypto import NaclError, as_init_encryption, hex_pk, init_keypair, init_pubkey
from .limits import PerSource, TokenBucket
from .messaging import MessageChannelCollection
from .orderbook import Orderbook
from .tcp import send_at_once

log = logging.getLogger(__name__)

ORDERBOOK_REPLY_INTERVAL = 10.0   # maker: at most one offer reply per taker per 10 s (NG)

# Maker sessions (H3, D8). A session is PENDING from !fill until its !auth, AUTHED from then until
# the client answers with JMIOAuth, then IOAUTH. Only PENDING sessions are limited by what
# arrives from the network; nothing ever evicts a session: past a cap, new !fill are refused
# (backpressure), and each state expires on its own clock.
PENDING, AUTHED, IOAUTH = "pending", "authed", "ioauth"
PENDING_PER_SOURCE = 20     # sessions waiting for !auth opened through one connection
PENDING_TOTAL = 100         # ... through all connections
PENDING_TTL = 60.0          # s a session may wait for its !auth
PAST_AUTH_TOTAL = 100       # sessions past !auth (each !auth costs the client a PoDLE check)
AUTHED_TTL = 300.0          # s the client may take to answer an !auth
IOAUTH_TTL = 3600.0         # s an !ioauth'd session waits for the taker's !tx
# Rates per connection (a directory, a direct link, an IRC server) and in all (H4, D10)
FILL_RATE = (5.0, 20)               # new sessions: per second, burst
ERROR_RATE = (1.0, 5)               # !error replies
ORDERBOOK_RATE = (20.0, 100)        # offer replies to !orderbook, per connection ...
ORDERBOOK_RATE_TOTAL = (50.0, 200)  # ... and in all (each costs nothing of the client: cached)
DEFERRED_REPLIES = 200              # requests over the rates kept to answer later, newest first
BOND_PROOF_RATE = (2.0, 10)         # fidelity-bond proofs asked of the client, in all
PUBLIC_ANNOUNCE_INTERVAL = 10.0     # s: requests over the rates get one public announcement
HP2_RELAY_RATE = (1.0, 10)          # !hp2 relayed on request, in all
AUTH_TIMEOUT = 30.0         # a connection that has not authenticated by then is closed
OFFERS_PUSH_INTERVAL = 0.1  # taker following the book: at most one JMOffers push per 0.1 s ...
OFFERS_PUSH_INTERVAL_BIG = 1.0   # ... or per second once the book is big (a flood: each push is
OFFERS_PUSH_BIG = 500            # up to MAX_OFFERS_TO_CLIENT offers for the plugin to parse)
_AUTH_COMMANDS = frozenset(name.encode("ascii") for name in LK)


def build_channels(chan_configs, network, defaults=None):
    """Message channel objects for a JMInit ``chan_configs`` list (ChannelConfigError if bad)."""
    from .channels.irc import IRCMessageChannel
    from .channels.onion import OnionMessageChannel
    if isinstance(chan_configs, list) and not chan_configs:
        try:
            hint = no_directories_message(network)
        except ValueError:      # unknown network name
            raise ChannelConfigError("chan_configs must be a non-empty list of channel configs"
                                     ) from None
        raise ChannelConfigError("the client sent no channels and the daemon has none for it: "
                                 + hint)
    if not isinstance(chan_configs, list) or len(chan_configs) > 16:
        raise ChannelConfigError("chan_configs must be a non-empty list of channel configs")
    defaults = defaults or {}
    channels = []
    n_onion = 0
    for cfg in chan_configs:
        if not isinstance(cfg, dict):
            raise ChannelConfigError("each channel config must be an object")
        ctype = str(cfg.get("type", "irc")).lower()
        try:
            if ctype == "onion":
                n_onion += 1
                if n_onion > 1:
                    raise ChannelConfigError("at most one onion channel")
                merged = dict(defaults.get("onion", {}))
                merged.update(cfg)
                channels.append(OnionMessageChannel(merged, network=network))
            elif ctype == "irc":
                merged = dict(defaults.get("irc", {}))
                merged.update(cfg)
                channels.append(IRCMessageChannel(merged, network=network))
            else:
                raise ChannelConfigError("unknown channel type %r" % ctype)
        except ChannelConfigError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ChannelConfigError("bad %s channel config: %s" % (ctype, exc)) from exc
    hostids = [mc.hostid for mc in channels]
    if len(set(hostids)) != len(hostids):
        raise ChannelConfigError("two channels with the same hostid")
    return channels


class JMDaemonProtocol(amp.AMP):
    def __init__(self, factory=None):
        super().__init__()
        self.factory = factory
        self.jm_state = 0
        self.role = "TAKER"
        self.chan_configs = None
        self.network = "mainnet"
        self.mcc = None
        self.restart_mc_required = False
        self.nick = None
        self.kp = None
        self.crypto_boxes = {}
        self.active_orders = OrderedDict()
        self.ioauth_data = {}
        self.offerlist = []
        self.use_fidelity_bond = False
        self.minmakers = 1
        self.maker_timeout_sec = 60
        self.dust_threshold = C.DUST_THRESHOLD
        self.orderbook = Orderbook()
        self.blacklist = None
        self.stage1_timer = None
        self.revelation = None
        self.commitment = None
        self.cjamount = None
        self.orderbook_replies = OrderedDict()
        self.follow_offers = False      # EJMFollowOffers: push JMOffers on every book change
        self._offers_push = None        # the pending push (IDelayedCall), coalescing changes
        self._offers_pushed_at = 0.0
        self.refused = {}               # makers that answered our !fill with !error: their reason
        self.errors_heard = set()       # taker: makers of this round whose verified !error we had
        self.error_nick_buckets = {}    # taker: unverified !error per maker of this round
        self.bond_requests = OrderedDict()
        self.relayed_hp2 = OrderedDict()
        self.connected = False
        self.jminit_error = None
        self.session_meta = {}          # maker: nick -> [state, since, source]
        self.fill_buckets = PerSource(lambda: TokenBucket(*FILL_RATE))
        self.error_buckets = PerSource(lambda: TokenBucket(*ERROR_RATE))
        self.error_in_buckets = PerSource(lambda: TokenBucket(*ERROR_RATE))
        self.orderbook_buckets = PerSource(lambda: TokenBucket(*ORDERBOOK_RATE))
        self.orderbook_bucket = TokenBucket(*ORDERBOOK_RATE_TOTAL)
        self.bond_proof_bucket = TokenBucket(*BOND_PROOF_RATE)
        self.hp2_bucket = TokenBucket(*HP2_RELAY_RATE)
        self._public_announce_call = None
        self._offers_digest = None
        self.deferred_orderbook = OrderedDict()   # nick -> (mc, source), newest last
        self._deferred_call = None
        self._last_public_announce = 0.0
        self.flood_stats = {"fill_refused": 0, "auth_refused": 0, "orderbook_refused": 0,
                            "error_suppressed": 0, "expired": 0}
        self.authenticated = False
        self._auth_exchange = None      # (client_nonce, daemon_nonce, server) after the hello
        self._auth_timer = None
        self._unauthenticated_warned = False

    # ------------------------------------------------------------------ connection
    def connectionMade(self):
        super().connectionMade()
        send_at_once(self.transport)
        self.connected = True
        peer = self.transport.getPeer()
        log.info("client connected from %s:%s", getattr(peer, "host", "?"), getattr(peer, "port", "?"))
        if self.factory is not None:
            self.factory.clients.add(self)
        if self.auth_required():
            self._auth_timer = reactor.callLater(AUTH_TIMEOUT, self._auth_timeout)

    def connectionLost(self, reason):
        self.connected = False
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        log.info("client disconnected")
        if self.factory is not None:
            self.factory.clients.discard(self)
        self._cancel_stage1()
        self._stop_following()
        for call in (self._public_announce_call, self._deferred_call):
            if call is not None and call.active():
                call.cancel()
        self.mc_shutdown()
        super().connectionLost(reason)

    # ------------------------------------------------------------------ robustness
    def dataReceived(self, data):
        """A client that sends unparseable AMP framing is disconnected with one log line (no
        traceback, no effect on other clients)."""
        try:
            super().dataReceived(data)
        except Exception as exc:
            log.warning("malformed AMP data from client (%s); closing its connection",
                        type(exc).__name__)
            if self.transport is not None:
                self.transport.loseConnection()

    # ------------------------------------------------------------------ authentication (H5)
    def auth_required(self):
        return self.factory is not None and self.factory.authentication

    def may_serve(self):
        """Whether JoinMarket commands from this connection are served (and it is called)."""
        return self.authenticated or not self.auth_required()

    def _peer_text(self):
        peer = self.transport.getPeer() if self.transport is not None else None
        return "%s:%s" % (getattr(peer, "host", "?"), getattr(peer, "port", "?"))

    def _auth_timeout(self):
        self._auth_timer = None
        if not self.authenticated and self.transport is not None:
            log.warning("client %s did not authenticate within %.0f s; closing",
                        self._peer_text(), AUTH_TIMEOUT)
            self.transport.loseConnection()

    def _close_soon(self):
        if self.transport is not None:
            reactor.callLater(0, self.transport.loseConnection)

    @LK[linkauth.HELLO].responder
    def on_link_auth_hello(self, version, client_nonce):
        """Step 1: prove to the client that we know the cookie (answered to anyone: the proof
        is bound to the client's nonce, ours and this connection, so it is useless elsewhere)."""
        refused = {"accepted": False, "version": linkauth.AUTH_VERSION, "daemon_nonce": "",
                   "daemon_proof": ""}
        cookie = self.factory.cookie if self.factory is not None else None
        if (cookie is None or self.authenticated or self._auth_exchange is not None
                or version != linkauth.AUTH_VERSION or not linkauth._valid_nonce(client_nonce)):
            log.info("link authentication hello from %s refused", self._peer_text())
            return refused
        host = self.transport.getHost()
        server = linkauth.server_address(host.host, host.port)
        daemon_nonce = linkauth.new_nonce()
        self._auth_exchange = (client_nonce, daemon_nonce, server)
        return {"accepted": True, "version": linkauth.AUTH_VERSION, "daemon_nonce": daemon_nonce,
                "daemon_proof": linkauth.proof(cookie, "daemon", client_nonce, daemon_nonce,
                                               server)}

    @LK[linkauth.PROOF].responder
    def on_link_auth_proof(self, client_proof):
        """Step 2: the client proves it knows the cookie; a wrong proof closes the connection."""
        exchange, self._auth_exchange = self._auth_exchange, None
        cookie = self.factory.cookie if self.factory is not None else None
        if exchange is None or cookie is None or self.authenticated or not linkauth.check_proof(
                cookie, "client", exchange[0], exchange[1], exchange[2], client_proof):
            log.warning("client %s failed to prove it knows the cookie; closing",
                        self._peer_text())
            self._close_soon()
            return {"accepted": False}
        self.authenticated = True
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        log.info("client %s authenticated", self._peer_text())
        return {"accepted": True}

    def _unauthenticated_command(self, name):
        """A JoinMarket command before authentication: served only with authentication off."""
        if not self.auth_required():
            if not self._unauthenticated_warned and self.factory is not None:
                self._unauthenticated_warned = True
                log.warning("serving unauthenticated client %s (authentication is off)",
                            self._peer_text())
            return False
        log.warning("client %s sent %s before authenticating: not answered, connection closed "
                    "(a reference client? see --allow-unauthenticated in jmdaemon --help)",
                    self._peer_text(), wire.printable(name.decode("ascii", "replace"), 60))
        if self.transport is not None:
            self.transport.loseConnection()
        return True

    def locateResponder(self, name):
        """Responders whose failures become a clean, non-fatal AMP error: twisted would answer
        an undecodable argument (or any unexpected exception) with a QuitBox and drop the client.
        Before authentication only the two authentication commands are answered (L2)."""
        if name not in _AUTH_COMMANDS and not self.authenticated:
            if self._unauthenticated_command(name):
                return lambda box: defer.Deferred()       # never fires: no answer at all
        responder = super().locateResponder(name)
        if responder is None:
            return None

        def safe_responder(box):
            d = defer.maybeDeferred(responder, box)

            def failed(failure):
                if failure.check(amp.RemoteAmpError):
                    return failure
                log.warning("AMP command %s failed: %s", wire.printable(name, 60),
                            wire.printable(failure.getErrorMessage(), 200))
                raise amp.RemoteAmpError(amp.UNKNOWN_ERROR_CODE,
                                         "command %s failed: %s" % (
                                             name[:60].decode("ascii", "replace"),
                                             type(failure.value).__name__))
            return d.addErrback(failed)
        return safe_responder

    # ------------------------------------------------------------------ calls to the client
    def call_client(self, name, **kwargs):
        if not self.connected or not self.may_serve():
            return None
        d = self.callRemote(K[name], **kwargs)
        d.addCallbacks(self._check_accepted, self._call_failed, callbackArgs=(name,),
                       errbackArgs=(name,))
        return d

    @staticmethod
    def _check_accepted(response, name):
        if not response.get("accepted"):
            log.warning("client did not accept %s", name)
        return response

    @staticmethod
    def _call_failed(failure, name):
        if failure.check(twisted_error.ConnectionDone, twisted_error.ConnectionLost,
                         twisted_error.ConnectionClosed, twisted_error.ConnectionAborted):
            return None
        log.warning("client call %s failed: %s", name, wire.printable(failure.getErrorMessage()))
        return None

    def request_signed_message(self, nick, cmd, msg, msg_to_be_signed, hostid):
        self.call_client("JMRequestMsgSig", nick=str(nick), cmd=str(cmd), msg=str(msg),
                         msg_to_be_signed=str(msg_to_be_signed), hostid=str(hostid))

    def request_signature_verify(self, msg, fullmsg, sig, pubkey, nick, hashlen, max_encoded,
                                 hostid):
        self.call_client("JMRequestMsgSigVerify", msg=msg, fullmsg=fullmsg, sig=sig,
                         pubkey=pubkey, nick=nick, hashlen=hashlen, max_encoded=max_encoded,
                         hostid=hostid)

    # ------------------------------------------------------------------ common responders
    @K["JMInit"].responder
    def on_JM_INIT(self, bcsource, network, chan_configs, minmakers, maker_timeout_sec,
                   dust_threshold, blacklist_location):
        if self.factory is not None and self.factory.shutting_down:
            raise ERROR_CLASSES["DaemonNotReady"]()
        try:
            self.maker_timeout_sec = max(1, min(int(maker_timeout_sec), 3600))
            self.minmakers = max(1, int(minmakers))
            self.dust_threshold = max(0, int(dust_threshold))
        except (TypeError, ValueError):
            return {"accepted": False}
        self.orderbook.dust = self.dust_threshold
        self.network = str(network)
        if not chan_configs and self.factory is not None:
            chan_configs = self.factory.default_chan_configs(self.network)
        log.info("JMInit from a %s client (%s): %s", self.network, str(bcsource)[:40],
                 describe_chan_configs(chan_configs))
        self.blacklist = self._open_blacklist(blacklist_location)
        if chan_configs == self.chan_configs and self.mcc is not None:
            self.restart_mc_required = False
            log.info("JMInit: same channel configuration, channels kept")
        else:
            try:
                channels = build_channels(chan_configs, self.network,
                                          self.factory.channel_defaults if self.factory else None)
            except ChannelConfigError as exc:
                log.error("JMInit refused: %s", exc)
                self.jminit_error = str(exc)
                return {"accepted": False}
            self.jminit_error = None
            self.mc_shutdown()
            self.chan_configs = chan_configs
            self.mcc = MessageChannelCollection(channels, self)
            self.restart_mc_required = True
        self.call_client("JMInitProto", nick_hash_length=C.NICK_HASH_LENGTH,
                         nick_max_encoded=C.NICK_MAX_ENCODED,
                         joinmarket_nick_header=C.JOINMARKET_NICK_HEADER,
                         joinmarket_version=C.JM_VERSION)
        return {"accepted": True}

    def _open_blacklist(self, location):
        """The commitment blacklist at the client's ``blacklist_location``, confined to the data
        dir (D12): a path outside it is refused (logged) and the default file used instead, so a
        client can never make the daemon append to a file of its choosing."""
        base = self.factory.datadir if self.factory is not None else os.getcwd()
        path, refused = confined_path(base, location)
        if refused:
            log.warning("JMInit: blacklist location %s is outside the data dir; using %s",
                        wire.printable(location, 200), path)
        if self.factory is not None:
            return self.factory.get_blacklist(path)
        return CommitmentBlacklist(path)

    @K["EJMChannelStatus"].responder
    def on_EJM_CHANNEL_STATUS(self):
        """Our extension (a reference daemon answers it with an AMP error): the state of this
        client's message channels and of every directory, for the user."""
        return {"accepted": True, "status": channel_report(self)}

    @K["JMStartMC"].responder
    def on_JM_START_MC(self, nick):
        if self.mcc is None or not wire.valid_nick(nick) or len(nick) > 64:
            return {"accepted": False}
        self.jm_state = 0
        self._cancel_stage1()
        self._stop_following()
        if self.nick is not None and nick != self.nick and not self.restart_mc_required:
            # a new nick on running channels: reconnect them under the new nick
            channels = build_channels(self.chan_configs, self.network,
                                      self.factory.channel_defaults if self.factory else None)
            self.mc_shutdown()
            self.mcc = MessageChannelCollection(channels, self)
            self.restart_mc_required = True
            self.orderbook.clear()
        self.nick = nick
        self.mcc.set_nick(nick)
        if self.restart_mc_required:
            self.restart_mc_required = False
            self.mcc.run()
        elif self.mcc.welcomed:
            self.on_welcome()
        return {"accepted": True}

    @K["JMSetup"].responder
    def on_JM_SETUP(self, role, initdata, use_fidelity_bond):
        if self.jm_state != 0 or self.mcc is None or role not in ("MAKER", "TAKER"):
            log.info("JMSetup refused (state %d, role %r)", self.jm_state, role)
            return {"accepted": False}
        if role == "MAKER" and not self._valid_offerlist(initdata):
            log.info("JMSetup refused: bad maker offer list")
            return {"accepted": False}
        self.role = role
        self.crypto_boxes = {}
        self.active_orders = OrderedDict()
        self.session_meta = {}
        self.kp = init_keypair()
        self.call_client("JMSetupDone")
        if role == "TAKER":
            self.mcc.request_orderbook()
        else:
            self.offerlist = list(initdata)
            self.use_fidelity_bond = bool(use_fidelity_bond)
            self.mcc.announce_orders(self.offerlist)
        self.jm_state = 1
        return {"accepted": True}

    @staticmethod
    def _valid_offerlist(offers):
        if not isinstance(offers, list) or len(offers) > 100:
            return False
        for o in offers:
            if not isinstance(o, dict) or o.get("ordertype") not in C.OFFER_TYPES:
                return False
            for k in ("oid", "minsize", "maxsize", "txfee", "cjfee"):
                if k not in o or " " in str(o[k]) or "!" in str(o[k]):
                    return False
        return True

    @K["JMMsgSignature"].responder
    def on_JM_MSGSIGNATURE(self, nick, cmd, msg_to_return, hostid):
        if self.mcc is not None:
            self.mcc.send_signed_privmsg(nick, cmd, msg_to_return, hostid)
        return {"accepted": True}

    @K["JMMsgSignatureVerify"].responder
    def on_JM_MSGSIGNATURE_VERIFY(self, verif_result, nick, fullmsg, hostid):
        if self.mcc is not None:
            self.mcc.on_verified_privmsg(nick, fullmsg, hostid, bool(verif_result))
        return {"accepted": True}

    @K["JMShutdown"].responder
    def on_JM_SHUTDOWN(self):
        self._cancel_stage1()
        self.mc_shutdown()
        self.chan_configs = None
        self.restart_mc_required = False
        self.jm_state = 0
        return {"accepted": True}

    # ------------------------------------------------------------------ taker responders
    @K["JMRequestOffers"].responder
    def on_JM_REQUEST_OFFERS(self):
        self._send_offers(only_if_changed=False)
        return {"accepted": True}

    def _send_offers(self, only_if_changed):
        """JMOffers with the ranked, bounded book (H2). A push (EJMFollowOffers) is skipped when
        what the client would get is what it got last: a flood the book refuses, or that only
        changes offers past the client's cut, costs the plugin nothing."""
        offers = self.orderbook.offers()
        bonds = self.orderbook.fidelity_bonds({o["counterparty"] for o in offers})
        book, bond_text = json.dumps(offers), json.dumps(bonds)
        digest = hash((book, bond_text))
        if only_if_changed and digest == self._offers_digest:
            return
        self._offers_digest = digest
        log.info("sending orderbook of %d offers, %d fidelity bonds (book: %d offers of %d nicks; "
                 "%d offers refused)", len(offers), len(bonds), len(self.orderbook),
                 len(self.orderbook.by_nick), self.orderbook.rejected)
        self.call_client("JMOffers", orderbook=book, fidelitybonds=bond_text)

    @K["EJMFollowOffers"].responder
    def on_EJM_FOLLOW_OFFERS(self):
        """Our extension: the book now, then again after every change (at most one push per
        OFFERS_PUSH_INTERVAL, or OFFERS_PUSH_INTERVAL_BIG once the book is big), until JMFill or
        JMStartMC. Only our client asks for it."""
        if self.role != "TAKER" or self.jm_state != 1:
            return {"accepted": False}
        self.follow_offers = True
        self._offers_digest = None      # "the book now", even if a JMRequestOffers just sent it
        self._offers_changed()
        return {"accepted": True}

    def _offers_changed(self):
        if not self.follow_offers or self._offers_push is not None:
            return
        interval = (OFFERS_PUSH_INTERVAL_BIG if len(self.orderbook) > OFFERS_PUSH_BIG
                    else OFFERS_PUSH_INTERVAL)
        delay = max(0.0, self._offers_pushed_at + interval - time.monotonic())
        self._offers_push = reactor.callLater(delay, self._push_offers)

    def _push_offers(self):
        self._offers_push = None
        if self.follow_offers and self.connected:
            self._offers_pushed_at = time.monotonic()
            self._send_offers(only_if_changed=True)

    def _stop_following(self):
        self.follow_offers = False
        if self._offers_push is not None and self._offers_push.active():
            self._offers_push.cancel()
        self._offers_push = None

    @K["JMFill"].responder
    def on_JM_FILL(self, amount, commitment, revelation, filled_offers):
        if (self.jm_state != 1 or self.role != "TAKER" or amount < 0
                or not isinstance(filled_offers, dict) or not filled_offers
                or len(filled_offers) > 100):
            log.info("JMFill refused (state %d, role %s)", self.jm_state, self.role)
            return {"accepted": False}
        if (not commitment or " " in commitment or "!" in commitment or not revelation
                or " " in revelation or "!" in revelation):
            return {"accepted": False}
        for nick, offer in filled_offers.items():
            if not wire.valid_nick(nick) or not isinstance(offer, dict) or "oid" not in offer:
                return {"accepted": False}
        self._stop_following()
        self.cjamount = amount
        self.commitment = commitment
        self.revelation = revelation
        self.ioauth_data = {}
        self.refused = {}
        self.errors_heard = set()
        self.error_nick_buckets = {}
        self.crypto_boxes = {}
        self.active_orders = OrderedDict(filled_offers)
        for nick, offer in filled_offers.items():
            msg = " ".join([str(offer["oid"]), str(amount), hex_pk(self.kp), commitment])
            self.mcc.prepare_privmsg(nick, "fill", msg)
        self._cancel_stage1()
        self.stage1_timer = reactor.callLater(self.maker_timeout_sec, self.complete_stage1)
        self.jm_state = 2
        return {"accepted": True}

    @K["JMMakeTx"].responder
    def on_JM_MAKE_TX(self, nick_list, tx):
        if self.jm_state != 4 or self.role != "TAKER":
            log.info("JMMakeTx refused in state %d", self.jm_state)
            return {"accepted": False}
        nicks = [n for n in nick_list if n in self.active_orders]
        if len(nicks) != len(nick_list):
            log.info("JMMakeTx: ignoring nicks outside the current fill set")
        if not self.mcc.send_tx(nicks, tx):
            return {"accepted": False}
        return {"accepted": True}

    @K["JMPushTx"].responder
    def on_JM_PushTx(self, nick, tx):
        if self.mcc is None:
            return {"accepted": False}
        self.mcc.push_tx(nick, tx)
        return {"accepted": True}

    # ------------------------------------------------------------------ maker responders
    @K["JMAnnounceOffers"].responder
    def on_JM_ANNOUNCE_OFFERS(self, to_announce, to_cancel, offerlist):
        if self.role != "MAKER" or self.mcc is None:
            return {"accepted": False}
        if not (self._valid_offerlist(offerlist) and self._valid_offerlist(to_announce)
                and isinstance(to_cancel, list)):
            return {"accepted": False}
        self.offerlist = list(offerlist)
        oids = [o for o in to_cancel if isinstance(o, int) and not isinstance(o, bool)]
        if oids:
            self.mcc.cancel_orders(oids)
        if to_announce:
            self.mcc.announce_orders(to_announce)
        return {"accepted": True}

    @K["JMFidelityBondProof"].responder
    def on_JM_FIDELITY_BOND_PROOF(self, nick, proof):
        if self.role != "MAKER" or self.mcc is None or " " in proof or "!" in proof:
            return {"accepted": False}
        mc = self.bond_requests.pop(nick, None)
        self.mcc.announce_orders(self.offerlist, nick, proof, mc=mc)
        return {"accepted": True}

    @K["EJMFillRefusals"].responder
    def on_EJM_FILL_REFUSALS(self):
        """Our extension: which makers of the last JMFill refused it with ``!error``, and what
        they said (printable, at most 120 characters each), so the taker can say why instead of
        calling them silent. Only makers of that fill are ever in it (bounded by JMFill's 100)."""
        if self.role != "TAKER":
            return {"accepted": False, "refusals": {}}
        return {"accepted": True, "refusals": dict(self.refused)}

    @K["EJMRefuse"].responder
    def on_EJM_REFUSE(self, nick, reason):
        """Our extension: our client refuses this taker's !auth/!tx. The taker gets
        ``!error <reason>`` (as for the refusals the daemon makes itself) and the session ends."""
        if self.role != "MAKER" or nick not in self.active_orders:
            return {"accepted": False}
        del self.active_orders[nick]
        text = wire.printable(reason, 120).replace("!", "")
        self.mcc.send_error(nick, text or "refused")
        return {"accepted": True}

    @K["JMIOAuth"].responder
    def on_JM_IOAUTH(self, nick, utxolist, pubkey, cjaddr, changeaddr, pubkeysig):
        if self.role != "MAKER" or nick not in self.active_orders:
            return {"accepted": False}
        fields = [pubkey, cjaddr, changeaddr, pubkeysig]
        utxos = list(utxolist) if isinstance(utxolist, (dict, list)) else []
        if not utxos or any((not isinstance(f, str)) or " " in f or "!" in f or not f
                            for f in fields + utxos):
            return {"accepted": False}
        ao = self.active_orders[nick]
        ao["cjaddr"], ao["changeaddr"], ao["utxos"] = cjaddr, changeaddr, utxolist
        meta = self.session_meta.get(nick)
        if meta is not None:
            meta[0], meta[1] = IOAUTH, time.monotonic()
        msg = ",".join(utxos) + " " + " ".join(fields)
        self.mcc.prepare_privmsg(nick, "ioauth", msg)
        # commitment now used: spread it (via another maker) and persist it
        self.transfer_commitment(ao["commit"])
        if self.blacklist is not None:
            self.blacklist.add(ao["commit"])
        return {"accepted": True}

    @K["JMTXSigs"].responder
    def on_JM_TX_SIGS(self, nick, sigs):
        if self.role != "MAKER" or nick not in self.active_orders:
            return {"accepted": False}
        for sig in sigs:
            if sig and " " not in sig and "!" not in sig:
                self.mcc.prepare_privmsg(nick, "sig", sig)
        return {"accepted": True}

    # ------------------------------------------------------------------ channel callbacks
    def on_welcome(self):
        self.call_client("JMUp")

    def on_channel_reconnected(self, mc):
        """A channel came back (IRC server or directory restarted): ask for offers again (taker)
        or re-announce ours (maker), so counterparties become reachable on it again (F1)."""
        if self.jm_state < 1 or self.mcc is None:
            return
        if self.role == "TAKER":
            mc.pubmsg(C.COMMAND_PREFIX + "orderbook")
        elif self.offerlist:
            # takers on this channel will ask again: do not rate-limit their first request
            for key in [k for k in self.orderbook_replies if k[1] == mc.hostid]:
                del self.orderbook_replies[key]
            mc.announce_orders(self.mcc.offer_lines(self.offerlist))

    def on_nick_leave(self, nick):
        self.orderbook.remove_nick(nick)
        self._offers_changed()

    def on_order_seen(self, nick, mc, ordertype, oid, minsize, maxsize, txfee, cjfee,
                      private=False, bond=None):
        if nick == self.nick:
            return
        if self.orderbook.add_offer(nick, ordertype, oid, minsize, maxsize, txfee, cjfee,
                                    private=private, bond=bond):
            self._offers_changed()

    def on_order_cancel(self, nick, oid):
        self.orderbook.cancel(nick, oid)
        self._offers_changed()

    def on_fidelity_bond_seen(self, nick, proof):
        self.orderbook.add_bond(nick, self.nick, proof)
        self._offers_changed()

    def on_error(self, nick, msg):
        log.info("error message from %s: %s", nick, wire.printable(msg, 200))
        if self.role == "TAKER" and nick in self.active_orders:
            self.errors_heard.add(nick)
        # a maker of our !fill that refuses (signed by its nick key, like every private
        # message) is done: once every maker answered or refused, stage 1 ends now instead of
        # at the timeout. A refusal can only shorten the wait for makers already settled.
        if (self.role == "TAKER" and self.jm_state == 2 and nick in self.active_orders
                and nick not in self.ioauth_data):
            self.refused[nick] = wire.printable(msg, 120)
            if set(self.ioauth_data) | set(self.refused) >= set(self.active_orders):
                self.respond_to_ioauths(len(self.ioauth_data) >= self.minmakers)

    def wants_privmsg(self, nick, cmd, source=None):
        """Whether a private !cmd from nick is of any use now (asked before the client is asked
        to verify it: what the role and the state cannot use never costs the client anything,
        H4). Invariant: never False for a message the protocol expects at this point."""
        if self.jm_state < 1 or nick == self.nick:
            return False
        if self.role == "TAKER":
            if cmd in C.OFFER_TYPES:
                return True
            if cmd == "pubkey":         # one per !fill: until we have that maker's key
                return (self.jm_state == 2 and nick in self.active_orders
                        and nick not in self.crypto_boxes)
            if cmd == "ioauth":
                return (self.jm_state == 2 and nick in self.active_orders
                        and nick not in self.ioauth_data)
            if cmd == "sig":
                return self.jm_state == 4 and nick in self.active_orders
            if cmd == "error":
                # One verified !error per maker of our round is all a taker can use; the makers
                # are of our choosing (bounded), so the budget is kept per maker, not per
                # connection: one directory carries every maker, and a round's honest refusals
                # must not use up each other's (or a forger's) budget.
                if nick not in self.active_orders or nick in self.errors_heard:
                    return False
                bucket = self.error_nick_buckets.get(nick)
                if bucket is None:
                    bucket = self.error_nick_buckets[nick] = TokenBucket(*ERROR_RATE)
                return bool(bucket.allow())
            return False
        if cmd == "fill":
            return nick in self.active_orders or self._may_open_session(source)
        if cmd in ("auth", "tx", "push"):
            return nick in self.active_orders
        if cmd == "error":
            return nick in self.active_orders and self.error_in_buckets.get(source).allow()
        if cmd == C.CMD_HP2:
            return self.hp2_bucket.allow()
        return False

    # maker
    def _expire_sessions(self):
        now = time.monotonic()
        ttl = {PENDING: PENDING_TTL, AUTHED: AUTHED_TTL, IOAUTH: IOAUTH_TTL}
        for nick, (state, since, _) in list(self.session_meta.items()):
            if now - since > ttl[state]:
                log.info("coinjoin session with %s expired (%s for %.0f s)", nick, state,
                         now - since)
                self.flood_stats["expired"] += 1
                self._end_session(nick)

    def _end_session(self, nick):
        self.session_meta.pop(nick, None)
        self.active_orders.pop(nick, None)

    def _count_sessions(self, states, source=False):
        return sum(1 for st, _, src in self.session_meta.values()
                   if st in states and (source is False or src is source))

    def _may_open_session(self, source, rate=True):
        """Room for one more session through ``source`` (backpressure: nothing is evicted).
        ``rate``: also take a token of the connection's !fill rate (done once per !fill, when
        it arrives, before the client is asked to verify it)."""
        self._expire_sessions()
        if (self._count_sessions((PENDING,)) >= PENDING_TOTAL
                or self._count_sessions((PENDING,), source) >= PENDING_PER_SOURCE
                or (rate and not self.fill_buckets.get(source).allow())):
            self.flood_stats["fill_refused"] += 1
            if self.flood_stats["fill_refused"] in (1, 10, 100, 1000, 10000, 100000):
                log.warning("!fill refused: too many new coinjoin sessions (%d refused so far; "
                            "sessions past !auth are kept)", self.flood_stats["fill_refused"])
            return False
        return True

    def _send_error_limited(self, nick, text, source):
        if self.error_buckets.get(source).allow():
            self.mcc.send_error(nick, text)
        else:
            self.flood_stats["error_suppressed"] += 1

    def _bounded_put(self, table, key, value, limit=1000):
        table[key] = value
        table.move_to_end(key)
        while len(table) > limit:
            table.popitem(last=False)

    def on_orderbook_requested(self, nick, mc, source=None):
        """A public !orderbook: answered at most once per taker per interval, and within rates
        per connection and in all, which cycling nicks cannot escape (D10); the client signs
        offers without a bond once (messaging's cache), a bond proof per taker within a rate."""
        if self.role != "MAKER" or self.jm_state < 1 or not self.offerlist or nick == self.nick:
            return
        now = time.monotonic()
        key = (nick, mc.hostid)       # one reply per taker per channel per interval
        last = self.orderbook_replies.get(key)
        if last is not None and now - last < ORDERBOOK_REPLY_INTERVAL:
            log.debug("orderbook request from %s rate-limited", nick)
            return
        if not self._reply_tokens(source):
            self._bounded_put(self.deferred_orderbook, nick, (mc, source),
                              limit=DEFERRED_REPLIES)
            self._serve_deferred_soon()
            self.flood_stats["orderbook_refused"] += 1
            if self.flood_stats["orderbook_refused"] in (1, 100, 10000, 1000000):
                log.warning("!orderbook requests over the rate limit: answered by a public "
                            "announcement at most every %.0f s (%d so far)",
                            PUBLIC_ANNOUNCE_INTERVAL, self.flood_stats["orderbook_refused"])
            self._announce_publicly_soon()
            return
        self._reply_offers(nick, mc)

    def _reply_tokens(self, source):
        return (self.orderbook_buckets.get(source).allow() and self.orderbook_bucket.allow()
                and (not self.use_fidelity_bond or self.bond_proof_bucket.allow()))

    def _serve_deferred_soon(self):
        if self._deferred_call is None or not self._deferred_call.active():
            self._deferred_call = reactor.callLater(1.0, self._serve_deferred)

    def _serve_deferred(self):
        """Answer requests the rates turned away, newest first, as tokens come back: when a
        flood of requests stops (or pauses) the most recent askers are answered at once."""
        self._deferred_call = None
        if self.role != "MAKER" or self.mcc is None or not self.connected:
            self.deferred_orderbook.clear()
            return
        while self.deferred_orderbook:
            nick, (mc, source) = next(reversed(self.deferred_orderbook.items()))
            if not self._reply_tokens(source):
                break
            del self.deferred_orderbook[nick]
            self._reply_offers(nick, mc)
        if self.deferred_orderbook:
            self._serve_deferred_soon()

    def _reply_offers(self, nick, mc):
        self._bounded_put(self.orderbook_replies, (nick, mc.hostid), time.monotonic())
        if self.use_fidelity_bond:
            self._bounded_put(self.bond_requests, nick, mc)
            self.call_client("JMFidelityBondProofRequest", takernick=nick, makernick=self.nick)
        else:
            self.mcc.announce_orders(self.offerlist, nick, None, mc=mc)

    def _announce_publicly_soon(self):
        """One public announcement of our offers serves every taker whose request the rates
        turned away (at most one per PUBLIC_ANNOUNCE_INTERVAL, however many asked)."""
        if self._public_announce_call is not None and self._public_announce_call.active():
            return
        delay = max(0.0, self._last_public_announce + PUBLIC_ANNOUNCE_INTERVAL - time.monotonic())
        self._public_announce_call = reactor.callLater(delay, self._public_announce)

    def _public_announce(self):
        self._public_announce_call = None
        if self.role == "MAKER" and self.mcc is not None and self.offerlist and self.connected:
            self._last_public_announce = time.monotonic()
            self.mcc.announce_orders(self.offerlist)

    def on_order_fill(self, nick, oid, amount, taker_pk, commit, mc=None, source=None):
        """A verified !fill. A nick's own !fill restarts its session (Ref); a new session needs
        room (``_may_open_session``) — a flood is refused, it never evicts a session (H3)."""
        if self.role != "MAKER" or self.jm_state < 1:
            return
        if nick in self.active_orders:
            log.info("restarting coinjoin session with %s", nick)
        elif not self._may_open_session(source, rate=False):
            return
        if not commit or commit[0] != C.COMMITMENT_TYPE_PODLE:
            self._send_error_limited(nick, "Unsupported commitment type: " + (commit[:1] or "?"),
                                     source)
            return
        scommit = canonical_commitment(commit[1:])
        if scommit is None:
            log.info("!fill from %s with a non-hex commitment ignored", nick)
            return
        if self.blacklist is not None and self.blacklist.contains(scommit):
            log.info("commitment from %s is blacklisted; rejecting", nick)
            self._send_error_limited(nick, "Commitment is blacklisted: " + scommit, source)
            self.transfer_commitment(scommit)
            return
        offers = [o for o in self.offerlist if str(o.get("oid")) == str(oid)]
        if not offers:
            self._send_error_limited(nick, "oid not found", source)
            return
        offer = offers[0]
        try:
            if amount < int(offer["minsize"]) or amount > int(offer["maxsize"]):
                self._send_error_limited(nick, "amount out of range", source)
                return
        except (TypeError, ValueError):
            return
        kp = init_keypair()
        try:
            box = as_init_encryption(kp, init_pubkey(taker_pk))
        except NaclError:
            self._send_error_limited(nick, "Invalid nacl pubkey: " + taker_pk[:80], source)
            return
        self._end_session(nick)
        self.active_orders[nick] = {"crypto_box": box, "kp": kp, "offer": offer,
                                    "amount": amount, "commit": scommit}
        self.session_meta[nick] = [PENDING, time.monotonic(), source]
        self.mcc.prepare_privmsg(nick, "pubkey", hex_pk(kp))

    def on_seen_auth(self, nick, revelation):
        if self.role != "MAKER" or nick not in self.active_orders:
            log.debug("!auth from %s without a session dropped", nick)
            return
        meta = self.session_meta.get(nick)
        if meta is not None and meta[0] == PENDING:
            self._expire_sessions()
            if nick not in self.active_orders:
                return
            if self._count_sessions((AUTHED, IOAUTH)) >= PAST_AUTH_TOTAL:
                self.flood_stats["auth_refused"] += 1
                log.warning("!auth from %s refused: %d sessions are past !auth already", nick,
                            PAST_AUTH_TOTAL)
                return
            meta[0], meta[1] = AUTHED, time.monotonic()
        ao = self.active_orders[nick]
        self.call_client("JMAuthReceived", nick=nick, offer=ao["offer"], commitment=ao["commit"],
                         revelation=revelation, amount=ao["amount"], kphex=hex_pk(ao["kp"]))

    def on_seen_tx(self, nick, tx):
        if self.role != "MAKER" or nick not in self.active_orders:
            log.debug("!tx from %s without a session dropped", nick)
            return
        ao = {k: v for k, v in self.active_orders[nick].items() if k not in ("crypto_box", "kp")}
        self.call_client("JMTXReceived", nick=nick, tx=tx, offer=ao)

    def on_push_tx(self, nick, tx):
        if self.role != "MAKER" or nick not in self.active_orders:
            log.debug("!push from %s without a session dropped", nick)
            return
        self.call_client("JMTXBroadcast", tx=tx)

    def on_commitment_seen(self, nick, commitment):
        if self.role != "MAKER" or self.blacklist is None:
            return
        c = canonical_commitment(commitment)
        if c is not None and self.blacklist.add(c):
            log.info("commitment broadcast by another maker added to the blacklist")

    def on_commitment_transferred(self, nick, commitment):
        if self.role != "MAKER" or self.mcc is None:
            return
        c = canonical_commitment(commitment)
        if c is None or c in self.relayed_hp2:
            return
        self._bounded_put(self.relayed_hp2, c, True, limit=10000)
        self.mcc.pubmsg(C.COMMAND_PREFIX + C.CMD_HP2 + " " + c)

    def transfer_commitment(self, commitment):
        candidates = [n for n in self.orderbook.nicks() if n != self.nick]
        if not candidates:
            return
        # the OS's randomness: which maker relays our commitment is not predictable from the
        # process's seeded PRNG (and a test's global random state is left alone)
        self.mcc.prepare_privmsg(random.SystemRandom().choice(candidates), C.CMD_HP2, commitment)

    # taker
    def on_pubkey(self, nick, maker_pk):
        if self.role != "TAKER" or self.jm_state != 2 or nick not in self.active_orders:
            log.debug("!pubkey from %s outside the fill set dropped", nick)
            return
        try:
            self.crypto_boxes[nick] = (maker_pk, as_init_encryption(self.kp, init_pubkey(maker_pk)))
        except NaclError:
            self.mcc.send_error(nick, "invalid nacl pubkey: " + maker_pk[:80])
            return
        self.mcc.prepare_privmsg(nick, "auth", str(self.revelation))

    def on_ioauth(self, nick, utxo_list, auth_pub, cj_addr, change_addr, btc_sig):
        if (self.role != "TAKER" or self.jm_state != 2 or nick not in self.active_orders
                or nick not in self.crypto_boxes):
            log.debug("unexpected !ioauth from %s dropped", nick)
            return
        self.refused.pop(nick, None)
        self.ioauth_data[nick] = [utxo_list, auth_pub, cj_addr, change_addr, btc_sig,
                                  self.crypto_boxes[nick][0]]
        if set(self.ioauth_data) == set(self.active_orders):
            self.respond_to_ioauths(True)
        elif set(self.ioauth_data) | set(self.refused) >= set(self.active_orders):
            self.respond_to_ioauths(len(self.ioauth_data) >= self.minmakers)   # as the timer

    def on_sig(self, nick, sig):
        if self.role != "TAKER" or self.jm_state != 4 or nick not in self.active_orders:
            log.debug("unexpected !sig from %s dropped", nick)
            return
        self.call_client("JMSigReceived", nick=nick, sig=sig)

    def get_crypto_box(self, nick):
        if nick in self.crypto_boxes:
            return self.crypto_boxes[nick][1]
        ao = self.active_orders.get(nick)
        if isinstance(ao, dict) and "crypto_box" in ao:
            return ao["crypto_box"]
        return None

    # ------------------------------------------------------------------ stage 1
    def complete_stage1(self):
        self.stage1_timer = None
        self.respond_to_ioauths(len(self.ioauth_data) >= self.minmakers)

    def _cancel_stage1(self):
        if self.stage1_timer is not None and self.stage1_timer.active():
            self.stage1_timer.cancel()
        self.stage1_timer = None

    def respond_to_ioauths(self, accepted):
        if self.jm_state != 2:
            return
        self._cancel_stage1()
        self.jm_state = 3
        if accepted:
            data = self.ioauth_data
            # only the makers that answered remain in the session
            self.active_orders = OrderedDict((n, o) for n, o in self.active_orders.items()
                                             if n in self.ioauth_data)
        else:
            data = [n for n in self.active_orders if n not in self.ioauth_data]
        d = self.call_client("JMFillResponse", success=accepted, ioauth_data=data)
        if d is not None and accepted:
            d.addCallback(self._utxos_accepted)

    def _utxos_accepted(self, response):
        if response is None:
            log.debug("no answer to JMFillResponse (client gone?)")
        elif response.get("accepted"):
            self.jm_state = 4
        else:
            log.info("client rejected the makers' utxos")
        return response

    def mc_shutdown(self):
        if self.mcc is not None:
            self.mcc.shutdown()
            self.mcc = None


class JMDaemonServerFactory(ServerFactory):
    protocol = JMDaemonProtocol

    def __init__(self, datadir=".", channel_defaults=None, default_channels=None,
                 authentication=True):
        """``authentication``: False serves clients that do not authenticate (reference
        clients; ``--allow-unauthenticated``). The cookie is written by ``write_cookie`` either
        way, so that our plugin always authenticates."""
        self.datadir = datadir
        self.authentication = bool(authentication)
        self.cookie = None
        self.cookie_path = None
        self.channel_defaults = channel_defaults or {}
        self._default_channels = default_channels or []
        self.clients = set()
        self.blacklists = {}
        self.shutting_down = False

    def buildProtocol(self, addr):
        p = self.protocol(self)
        return p

    def default_chan_configs(self, network="mainnet"):
        """Channels for a client that sends none: the configured ones, else the default
        directories of the client's network (jmcore.channels) over the configured Tor."""
        if self._default_channels:
            return list(self._default_channels)
        return network_default_configs(network, self.channel_defaults.get("onion", {}))

    def get_blacklist(self, path):
        path = os.path.abspath(path)
        if path not in self.blacklists:
            self.blacklists[path] = CommitmentBlacklist(path)
        return self.blacklists[path]

    def write_cookie(self):
        """Write a fresh cookie to ``<datadir>/.cookie`` (0600); returns its path. Call once
        listening, so that a daemon failing to start never replaces a running one's cookie."""
        self.cookie_path, self.cookie = linkauth.write_cookie(self.datadir)
        return self.cookie_path

    def shutdown(self):
        self.shutting_down = True
        if self.cookie is not None:
            linkauth.remove_cookie(self.cookie_path, self.cookie)
        for client in list(self.clients):
            client.mc_shutdown()
            if client.transport is not None:
                client.transport.loseConnection()
