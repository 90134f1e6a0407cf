"""``jmdaemon`` command line: the AMP server for clients, or (``--directory-node``) an onion
directory node. Clean shutdown on SIGINT/SIGTERM; a port in use or a bad config is reported in one
line (exit status 2), never as a traceback."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from jmcore.constants import IRC_CHANNEL_BASE, ONION_SERVING_PORT
from jmcore.netaddr import is_loopback

from . import __version__
from .config import NETWORKS, ConfigError, DaemonConfig, load_config_file, validate
from .memory import release_after_start

log = logging.getLogger("jmdaemon")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jmdaemon",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Keyless JoinMarket messaging daemon (AMP server for electrum-joinmarket).",
        epilog=AUTH_HELP)
    p.add_argument("--version", action="version", version="jmdaemon " + __version__)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; anything else "
                                  "exposes the daemon and is warned about)")
    p.add_argument("--port", type=int, help="AMP port (default 27183; 0 = any free port)")
    p.add_argument("--datadir", default=os.environ.get("JMDAEMON_DATADIR",
                                                      os.path.expanduser("~/.jmdaemon")),
                   help="data directory (config, commitment blacklist, logs, the .cookie file)")
    p.add_argument("--config", help="config file (default <datadir>/jmdaemon.cfg)")
    p.add_argument("--network", choices=NETWORKS,
                   help="bitcoin network of a --directory-node (clients name their own)")
    p.add_argument("--loglevel", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--logfile", help="also log to this file (relative to the data dir)")
    p.add_argument("--ssl-cert", help="serve AMP over TLS with this certificate (PEM)")
    p.add_argument("--ssl-key", help="private key (PEM) for --ssl-cert")
    p.add_argument("--allow-unauthenticated", action="store_true",
                   help="also serve clients that cannot prove they know the cookie (unmodified "
                        "reference JoinMarket clients); anyone who can connect can then use the "
                        "daemon. Config: [daemon] authentication = off. Off by default")
    g = p.add_argument_group("default channels (used when a client sends none)")
    g.add_argument("--irc", action="append", default=[], metavar="HOST:PORT",
                   help="an IRC server (repeatable)")
    g.add_argument("--irc-channel", default=IRC_CHANNEL_BASE)
    g.add_argument("--irc-tls", action="store_true", help="use TLS for --irc servers")
    g.add_argument("--onion-directory", action="append", default=[], metavar="HOST:PORT",
                   help="an onion directory node (repeatable)")
    g.add_argument("--onion-test-mode", action="store_true",
                   help="onion channel over plain TCP on 127.0.0.1 (tests, no Tor)")
    g.add_argument("--socks5", metavar="HOST:PORT", help="Tor SOCKS port (default localhost:9050)")
    g.add_argument("--tor-control", metavar="HOST:PORT",
                   help="Tor control port (default localhost:9051)")
    d = p.add_argument_group("directory node mode")
    d.add_argument("--directory-node", action="store_true",
                   help="run an onion directory node instead of the AMP server")
    d.add_argument("--directory-host", help="listen address (default 127.0.0.1)")
    d.add_argument("--directory-port", type=int, help="listen port (default 5222)")
    d.add_argument("--directory-nick", help="the directory's nick (default: random)")
    d.add_argument("--motd", help="message of the day sent in the handshake")
    d.add_argument("--hidden-service-dir", help="persistent onion service key dir (Tor mode)")
    return p


AUTH_HELP = """\
authentication:
  Each start writes a fresh random cookie to <datadir>/.cookie (mode 0600; removed at
  exit). A client must prove it can read that file before the daemon answers any JoinMarket
  command: it sends the AMP command EJMLinkAuthHello(version=1, client_nonce), the daemon
  answers with its own proof of the cookie (so the client knows it talks to this daemon),
  then the client sends EJMLinkAuthProof(client_proof). Proofs are HMAC-SHA256 of the cookie
  over both nonces and the daemon's address; the cookie itself never crosses the wire.
  electrum-joinmarket reads the cookie from the daemon's data dir and does this itself.
  A client that does not authenticate (e.g. an unmodified reference JoinMarket client,
  whose first command is JMInit) gets no answer and is disconnected, unless the daemon runs
  with --allow-unauthenticated ([daemon] authentication = off), logged as a warning.
  The daemon listens on 127.0.0.1 unless --host says otherwise. See docs/daemon-auth.md.
"""


def _hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("%s must be HOST:PORT, not %r" % (what, text))
    return host, int(port)


def build_config(args: argparse.Namespace) -> DaemonConfig:
    cfg = DaemonConfig(datadir=os.path.abspath(args.datadir))
    cfg_path = args.config or os.path.join(cfg.datadir, "jmdaemon.cfg")
    if args.config and not os.path.exists(args.config):
        raise ConfigError("config file %s does not exist" % args.config)
    load_config_file(cfg_path, cfg)
    if args.host is not None:
        cfg.host = args.host
    if args.port is not None:
        cfg.port = args.port
    if args.network:
        cfg.network = args.network
    if args.loglevel:
        cfg.loglevel = args.loglevel
    if args.logfile is not None:
        cfg.logfile = args.logfile
    if args.ssl_cert is not None:
        cfg.ssl_cert = args.ssl_cert
    if args.ssl_key is not None:
        cfg.ssl_key = args.ssl_key
    if args.allow_unauthenticated:
        cfg.authentication = False
    if bool(cfg.ssl_cert) != bool(cfg.ssl_key):
        raise ConfigError("TLS needs both a certificate and a key (--ssl-cert and --ssl-key)")
    for path in (cfg.ssl_cert, cfg.ssl_key):
        if path and not os.path.isfile(path):
            raise ConfigError("TLS file %s does not exist" % path)
    if args.socks5:
        cfg.tor["socks5_host"], cfg.tor["socks5_port"] = _hostport(args.socks5, "--socks5")
    if args.tor_control:
        h, pt = _hostport(args.tor_control, "--tor-control")
        cfg.tor["tor_control_host"], cfg.tor["tor_control_port"] = h, pt
    for server in args.irc:
        h, pt = _hostport(server, "--irc")
        cfg.channels.append({"type": "irc", "host": h, "port": pt, "channel": args.irc_channel,
                             "usessl": args.irc_tls, "socks5": bool(args.socks5)})
    if args.onion_directory:
        for loc in args.onion_directory:
            _hostport(loc, "--onion-directory")
        cfg.channels.append({"type": "onion", "directory_nodes": ",".join(args.onion_directory),
                             "test_mode": args.onion_test_mode})
    if args.directory_host:
        cfg.directory["host"] = args.directory_host
    if args.directory_port is not None:
        cfg.directory["port"] = args.directory_port
    if args.directory_nick:
        cfg.directory["nick"] = args.directory_nick
    if args.motd:
        cfg.directory["motd"] = args.motd
    if args.hidden_service_dir:
        cfg.directory["hidden_service_dir"] = args.hidden_service_dir
    if args.onion_test_mode:
        cfg.directory["_test_mode"] = True
    return validate(cfg)


def setup_logging(cfg: DaemonConfig) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.handlers[:] = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if cfg.logfile:
        path = cfg.logfile if os.path.isabs(cfg.logfile) else os.path.join(cfg.datadir, cfg.logfile)
        fh = logging.FileHandler(path)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    root.setLevel(getattr(logging, cfg.loglevel))
    from twisted.logger import STDLibLogObserver, globalLogBeginner
    globalLogBeginner.beginLoggingTo([STDLibLogObserver(name="twisted")],
                                     redirectStandardIO=False, discardBuffer=True)
    logging.getLogger("twisted").setLevel(max(logging.WARNING, root.level))




def _stop_on_signals(reactor: Any) -> None:
    """SIGINT and SIGTERM stop the reactor cleanly, always. Twisted leaves SIGINT alone when the
    process inherited it ignored (a background job of a non-interactive shell, as in CI), and
    the daemon would then only die by SIGKILL; its documented behaviour is a clean stop."""
    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        reactor.callFromThread(_stop_once, reactor)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _stop_once(reactor: Any) -> None:
    if reactor.running:
        reactor.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = build_config(args)
        os.makedirs(cfg.datadir, mode=0o700, exist_ok=True)
        setup_logging(cfg)
    except (ConfigError, OSError) as exc:
        print("jmdaemon: error: %s" % exc, file=sys.stderr)
        return 2

    from .tls import import_twisted
    import_twisted()                         # before any other Twisted import: never pyOpenSSL
    from twisted.internet import error as terror
    from twisted.internet import reactor

    if args.directory_node:
        return _run_directory(cfg, reactor, terror)
    from .server import JMDaemonServerFactory
    factory = JMDaemonServerFactory(datadir=cfg.datadir, channel_defaults=cfg.channel_defaults(),
                                    default_channels=cfg.channels,
                                    authentication=cfg.authentication)
    try:
        listening: Any = factory
        if cfg.ssl_cert:
            from .tls import server_factory
            try:
                listening = server_factory(factory, cfg.ssl_key, cfg.ssl_cert)
            except Exception as exc:
                print("jmdaemon: error: cannot load TLS certificate/key: %s" % exc, file=sys.stderr)
                return 2
        port: Any = reactor.listenTCP(cfg.port, listening, interface=cfg.host)
    except terror.CannotListenError as exc:
        print("jmdaemon: error: cannot listen on %s:%d (%s)"
              % (cfg.host, cfg.port, _reason(exc)), file=sys.stderr)
        return 2
    try:
        cookie_path = factory.write_cookie()
    except OSError as exc:
        port.stopListening()
        print("jmdaemon: error: cannot write the cookie file in %s: %s" % (cfg.datadir, exc),
              file=sys.stderr)
        return 2
    log.info("clients authenticate with the cookie in %s", cookie_path)
    if not cfg.authentication:
        log.warning("authentication is OFF (--allow-unauthenticated / [daemon] authentication = "
                    "off): any program that can connect to %s:%d can drive this daemon and read "
                    "your coinjoins", cfg.host, port.getHost().port)
    if not is_loopback(cfg.host):
        log.warning("listening on %s, which is not a loopback address: other hosts can reach "
                    "it%s", cfg.host, "" if cfg.authentication
                    else " and, with authentication off, use this daemon and see your coinjoins")
    def announce() -> None:
        # only once the reactor runs (its SIGINT/SIGTERM handlers are installed): whoever waits
        # for this line may signal us right away and must get a clean shutdown
        # the daemon serves clients of any network: each JMInit names its own (logged then)
        log.info("jmdaemon %s listening on %s:%d%s (data dir %s); clients that send no "
                 "channels get %s", __version__, cfg.host, port.getHost().port,
                 " (TLS)" if cfg.ssl_cert else "", cfg.datadir,
                 "the configured ones" if cfg.channels else
                 "their network's default directories")
        print("jmdaemon listening on %s:%d" % (cfg.host, port.getHost().port), flush=True)
    reactor.callWhenRunning(announce)
    release_after_start(reactor)
    reactor.addSystemEventTrigger("before", "shutdown", _shutdown, factory, port)
    _stop_on_signals(reactor)
    reactor.run()
    log.info("jmdaemon stopped")
    return 0


def _reason(exc: BaseException) -> str:
    socket_error = getattr(exc, "socketError", None)
    text = str(socket_error) if socket_error else str(exc)
    if "in use" in text.lower():
        return "address already in use"
    return text


def _shutdown(factory: Any, port: Any) -> Any:
    log.info("shutting down")
    factory.shutdown()
    return port.stopListening()


def _run_directory(cfg: DaemonConfig, reactor: Any, terror: Any) -> int:
    from .directory import DirectoryNode
    dcfg = cfg.directory
    try:
        port = int(dcfg.get("port", ONION_SERVING_PORT))
        test_mode = str(dcfg.get("test_mode", "")).lower() in ("1", "true", "yes") or \
            args_test_mode(cfg)
    except ValueError as exc:
        print("jmdaemon: error: bad directory setting: %s" % exc, file=sys.stderr)
        return 2
    node = DirectoryNode(network=cfg.network, host=dcfg.get("host", "127.0.0.1"), port=port,
                         nick=dcfg.get("nick"), motd=dcfg.get("motd", "JoinMarket directory node"),
                         test_mode=test_mode, hidden_service_dir=dcfg.get("hidden_service_dir"),
                         tor_control_host=cfg.tor.get("tor_control_host", "localhost"),
                         tor_control_port=int(cfg.tor.get("tor_control_port", 9051)),
                         tor_control_password=cfg.tor.get("tor_control_password"))
    if not is_loopback(node.host):
        log.warning("directory listening on non-loopback address %s", node.host)
    result: dict[str, int] = {}

    def started(location: str) -> None:
        log.info("directory node %s up at %s (network %s)", node.nick, location, node.network)
        print("jmdaemon directory %s at %s" % (node.nick, location), flush=True)
        release_after_start(reactor)

    def failed(failure: Any) -> None:
        if stopping:                     # a stop while publishing closes the control connection
            log.info("stopped before the directory was up: %s", failure.getErrorMessage())
            return
        if failure.check(terror.CannotListenError):
            msg = "cannot listen on %s:%d (%s)" % (node.host, port, _reason(failure.value))
        else:
            msg = "directory node failed to start: %s" % failure.getErrorMessage()
        print("jmdaemon: error: %s" % msg, file=sys.stderr)
        result["rc"] = 2
        if reactor.running:
            reactor.stop()

    def go() -> None:
        node.start().addCallbacks(started, failed)
    reactor.callWhenRunning(go)
    stopping: list[bool] = []

    def stop() -> Any:
        stopping.append(True)
        return node.stop()
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    _stop_on_signals(reactor)
    reactor.run()
    return result.get("rc", 0)


def args_test_mode(cfg: DaemonConfig) -> bool:
    return bool(cfg.directory.get("_test_mode"))
