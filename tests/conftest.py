"""Session fixtures for the real regtest stack (see devstack/). Services start on first use,
bind 127.0.0.1 on free ports, keep their data under pytest's temp dir, and stop at session end."""
from __future__ import annotations

import json
import logging
import os
import subprocess

import pytest

from tests.figures import TOR_FIGURES

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTEST_QT_API", "pyqt6")


def pytest_report_header(config):
    """Print the versions of the real parts found (the sid route changes under us)."""
    lines = []
    try:
        from electrum.version import ELECTRUM_VERSION
        lines.append(f"electrum: {ELECTRUM_VERSION}")
    except Exception as exc:  # pragma: no cover - reported, not fatal for unit tests
        lines.append(f"electrum: not importable ({exc!r})")
    try:
        from devstack.procs import installed_env
        env = installed_env()
        out = subprocess.run([env["EJM_BITCOIND"], "-version"], capture_output=True, text=True,
                             timeout=20).stdout.splitlines()
        lines.append(f"bitcoind: {out[0] if out else '?'}")
        ex_py = os.path.join(os.path.dirname(env["EJM_ELECTRUMX"]), "python")
        ver = subprocess.run([ex_py, "-c", "import importlib.metadata as m; print(m.version('e-x'))"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        lines.append(f"electrumx (e-x): {ver}")
    except Exception as exc:
        lines.append(f"regtest binaries: not found ({exc})")
    return lines


# Fixtures that start a service of the regtest stack: a test that uses one (directly or through
# another fixture) is marked ``stack`` here, so ``-m "not stack"`` never starts a service. Tests that
# start daemon processes themselves carry the marker in their module (devstack refuses to start a
# service under EJM_NO_SERVICES=1, which ``make test-fast`` sets, so a missing marker fails loudly).
SERVICE_FIXTURES = frozenset({"stack_dir", "bitcoind", "electrumx", "electrum_node", "ircd",
                              "tls_ircd", "tornet"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)
    select_phase(config, items)
    if parallel_workers(config):
        group_for_workers(items)


def select_phase(config, items) -> None:
    """``EJM_TEST_PHASE=parallel``: every test but the ``serial`` ones; ``serial``: only those
    (scripts/run_tests.sh runs the two one after the other when it runs parallel workers)."""
    phase = os.environ.get("EJM_TEST_PHASE", "")
    if phase not in ("parallel", "serial"):
        return
    keep: list = []
    drop: list = []
    for item in items:
        (keep if (item.get_closest_marker("serial") is not None) == (phase == "serial")
         else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    record = os.environ.get("EJM_SERIAL_IDS")
    if phase == "parallel" and record and os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0":
        # the serial phase runs these ids alone instead of collecting the whole suite again
        tmp = record + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(item.nodeid + "\n" for item in drop)
        os.replace(tmp, record)


# --- parallel workers (``make test``: pytest-xdist, ``--dist loadgroup``) ---------------------
# A worker runs whole groups. A test module is a group (its module fixtures, e.g. a maker network,
# start once); everything over the private Tor network is one group (one Tor network, and Tor
# Browser's fixed ports 9150/9151); the packaging tests are one (they write dist/). Every worker
# starts its own regtest stack on its own ports (devstack.procs.free_port). Groups are handed out
# longest first so that the last one to finish is a short one.
GROUP_WEIGHT = {"tor": 0, "e2e": 1, "cli": 2, "qt": 3, "packaging": 4, "plugin": 5, "stack_smoke": 6,
                "daemon": 7}


def parallel_workers(config) -> bool:
    """True in the controller of ``--dist loadgroup`` and in each of its workers. The groups must
    be marked in the workers: they collect, and their node ids (``...@group``) are what the
    controller schedules by. pytest-xdist sets ``option.loadgroup`` there and resets ``dist`` to
    "no" and ``numprocesses`` to None (xdist/remote.py ``setup_config``)."""
    return (getattr(config.option, "dist", "no") == "loadgroup"
            or bool(getattr(config.option, "loadgroup", False)))


def _group(item) -> str:
    path = item.nodeid.split("::", 1)[0]
    if item.get_closest_marker("tor") or "tornet" in getattr(item, "fixturenames", ()):
        return "tor"
    if path.startswith("tests/packaging/"):
        return "packaging"
    return path


def pytest_configure(config):
    """The controller hands out the groups in our order (GROUP_WEIGHT: longest kinds first):
    pytest-xdist would sort them by their number of tests instead (``--loadscope-reorder``, its
    default), which started the one-group Tor tests after 100 s of unit modules and the long e2e
    modules last. scripts/run_tests.sh passes ``--no-loadscope-reorder`` too; this also covers a
    hand-written ``pytest -n N --dist loadgroup``."""
    if getattr(config.option, "dist", "no") == "loadgroup":
        config.option.loadscopereorder = False


def pytest_xdist_node_collection_finished(node, ids):
    """The controller's check that the workers applied the groups: every id a worker collected
    ends in ``@<group>``. Without the groups pytest-xdist hands out single tests, and a module's
    fixtures (a maker network, the private Tor network) start on every worker that gets one of its
    tests — the suite still passes, only much slower, so this stops the run instead. (pytest 9.2
    keeps node ids where pytest-xdist 3.8 cannot add the suffix; setup.py pins pytest below it.)"""
    if getattr(node.config.option, "dist", "no") != "loadgroup":
        return
    ungrouped = [i for i in ids if "@" not in i]
    if ungrouped:
        pytest.exit(f"pytest-xdist did not group the tests ({len(ungrouped)} of {len(ids)} without "
                    f"a group, e.g. {ungrouped[0]}): this pytest ({pytest.__version__}) and "
                    f"pytest-xdist do not work together; see setup.py's test requirements",
                    returncode=3)


def group_for_workers(items) -> None:
    order = {}
    for item in items:
        group = _group(item)                      # "tor", "packaging" or tests/<kind>/<file>
        kind = group.split("/")[1] if "/" in group else group
        item.add_marker(pytest.mark.xdist_group(group))
        order[item.nodeid] = (GROUP_WEIGHT.get(kind, len(GROUP_WEIGHT)), group)
    items.sort(key=lambda item: order[item.nodeid])   # stable: a group's tests keep their order


def pytest_sessionfinish(session, exitstatus):
    """A parallel worker hands the figures its tests measured to the controller (which prints
    them); see pytest_testnodedown."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        from tests.daemon.counting import BULK, EXAMPLES
        figures = {"tor": dict(TOR_FIGURES), "examples": dict(EXAMPLES), "bulk": dict(BULK)}
        # plain types only (execnet refuses str subclasses such as OutcomeStatus)
        workeroutput["ejm_figures"] = json.loads(json.dumps(figures, default=str))
    from devstack.electrum_env import stop_electrum_loop
    stop_electrum_loop()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    from tests.daemon.counting import BULK, EXAMPLES
    got = getattr(node, "workeroutput", {}).get("ejm_figures") or {}
    TOR_FIGURES.update(got.get("tor", {}))
    for mine, theirs in ((EXAMPLES, got.get("examples", {})), (BULK, got.get("bulk", {}))):
        for name, n in theirs.items():
            mine[name] = mine.get(name, 0) + n


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def bitcoind(stack_dir):
    from devstack.bitcoind import start_bitcoind
    node = start_bitcoind(stack_dir / "bitcoind")
    yield node
    node.stop()


@pytest.fixture(scope="session")
def electrumx(stack_dir, bitcoind):
    from devstack.electrumx import start_electrumx
    ex = start_electrumx(stack_dir / "electrumx", bitcoind)
    yield ex
    ex.stop()


@pytest.fixture(scope="session")
def electrum_node(stack_dir, electrumx):
    from devstack.electrum_env import ElectrumNode
    node = ElectrumNode(stack_dir / "electrum", electrumx.server_string)
    yield node
    node.stop()


@pytest.fixture(autouse=True)
def _close_wallets_the_test_loaded(request):
    """Close, at a test's end, the wallets it (or its function-scoped fixtures) loaded into the
    worker's in-process Electrum. Each loaded wallet keeps Electrum's per-wallet jobs polling:
    60 idle wallets cost a third of a core (measured); with every test's wallets kept loaded
    the suite took 1064 s of CPU, with them closed 789 s. Wallets of session and module
    fixtures (maker networks) were loaded before this runs (higher scopes are set up first) and
    stay. Tests that start no Electrum are untouched."""
    if "electrum_node" not in request.fixturenames:
        yield
        return
    node = request.getfixturevalue("electrum_node")
    before = set(node.daemon._wallets)
    yield
    for key, wallet in list(node.daemon._wallets.items()):
        if key not in before:
            try:
                node.close_wallet(wallet)
            except Exception as exc:            # a test's own teardown may have stopped it
                logging.getLogger(__name__).warning("closing %s after the test: %r", key, exc)


@pytest.fixture(scope="session")
def ircd(stack_dir):
    from devstack.ircd import start_ircd
    server = start_ircd(stack_dir / "ircd")
    yield server
    server.stop()


@pytest.fixture
def tls_ircd(tmp_path):
    """An ngircd of its own with a TLS port and a self-signed certificate (skips without the
    openssl CLI)."""
    from devstack.ircd import start_ircd
    d = tmp_path / "ircd"
    d.mkdir()
    d.chmod(0o755)
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=irc.tls.local", "-days", "1", "-keyout", str(d / "key.pem"),
                        "-out", str(d / "cert.pem")], capture_output=True)
    if r.returncode != 0:
        pytest.skip("openssl CLI not available")
    for f in ("key.pem", "cert.pem"):
        (d / f).chmod(0o644)
    try:
        ircd = start_ircd(d, tls_cert=d / "cert.pem", tls_key=d / "key.pem")
    except Exception as exc:
        pytest.skip("ngircd TLS did not start: %s" % exc)

    class S:
        host = "127.0.0.1"
        port = ircd.tls_port
    yield S
    ircd.stop()


@pytest.fixture(scope="session")
def tornet(stack_dir):
    """The private Tor network (devstack.tor): 3 authorities + 2 relays on 127.0.0.1, started
    once per session; clients are added by the tests that need them."""
    from devstack.tor import TorNet
    net = TorNet(stack_dir / "tor").start()
    TOR_FIGURES["tor_network_bootstrap_s"] = round(net.timings["network_ready"], 1)
    TOR_FIGURES["tor_consensus_s"] = round(net.timings["consensus"], 1)
    yield net
    net.stop()


def pytest_terminal_summary(terminalreporter):
    from tests.daemon.counting import BULK, EXAMPLES
    if EXAMPLES:
        terminalreporter.section("hypothesis examples run (jmdaemon parsers)")
        for name, n in sorted(EXAMPLES.items()):
            terminalreporter.write_line("%-48s %6d" % (name, n))
        terminalreporter.write_line("%-48s %6d" % ("TOTAL", sum(EXAMPLES.values())))
    if BULK:
        terminalreporter.section("bulk hostile inputs (non-hypothesis loops)")
        for name, n in sorted(BULK.items()):
            terminalreporter.write_line("%-48s %8d" % (name, n))
    if TOR_FIGURES:
        terminalreporter.write_sep("=", "figures over the private Tor network")
        terminalreporter.write_line(" ".join(f"{k}={v}" for k, v in TOR_FIGURES.items()))


@pytest.fixture
def make_wallet(electrum_node, bitcoind, electrumx):
    """``make_wallet(fund=[sats, ...], password=None, confirmations=1, seed=None)``: a fresh
    Electrum wallet from :func:`devstack.wallets.new_wallet`, closed at test end."""
    from devstack.wallets import new_wallet
    made = []

    def factory(fund=(), password=None, seed_type="segwit", confirmations=1, seed=None, name=None):
        wallet = new_wallet(electrum_node, bitcoind, fund, name=name, password=password, seed=seed,
                            seed_type=seed_type, confirmations=confirmations)
        made.append(wallet)
        return wallet

    yield factory
    for wallet in made:
        electrum_node.close_wallet(wallet)


MAKER_COINS = [40_000_000, 25_000_000, 15_000_000, 12_000_000, 10_000_000]


@pytest.fixture(scope="module")
def irc_net(ircd, electrum_node, bitcoind, electrumx, tmp_path_factory):
    """A local JoinMarket network over ngircd: three Electrum makers (fees 0.02 %, 0.03 %,
    0.025 %), each with its own jmdaemon, coins old enough for PoDLE (6 confirmations). Several
    coins each: a session abandoned by a taker keeps its coins reserved for a while."""
    from devstack.ircd import irc_config
    from devstack.jmnet import JMNet
    from devstack.wallets import fund_wallets, new_wallet
    net = JMNet(electrum_node, bitcoind, tmp_path_factory.mktemp("jmnet-irc"), irc_config(ircd))
    wallets = [new_wallet(electrum_node) for _ in range(3)]
    fund_wallets(electrum_node, bitcoind, [(w, MAKER_COINS) for w in wallets], confirmations=6)
    for w, fee in zip(wallets, ["0.0002", "0.0003", "0.00025"], strict=True):
        net.add_maker(w, cjfee_r=fee, password=None)
    yield net
    net.stop()


# --- the plugin loaded into Electrum (as Electrum itself loads it) -------------------------------

@pytest.fixture(scope="session")
def loop():
    """Electrum's asyncio loop (Plugins threads need it to stop); no services started."""
    from devstack.electrum_env import electrum_loop
    return electrum_loop()


@pytest.fixture
def plugins_factory(loop):
    """``make(config, gui)`` -> electrum.plugin.Plugins; closes the plugin objects (their hooks
    are process-global) and stops the Plugins threads afterwards."""
    made = []

    def make(config, gui="cmdline"):
        from electrum.plugin import Plugins

        from electrum_joinmarket.loader import register_runtime
        register_runtime()
        p = Plugins(config, gui)
        made.append(p)
        return p

    yield make
    for p in made:
        for plugin in list(p.plugins.values()):
            plugin.close()
        p.stop()


@pytest.fixture
def jm_plugin(electrum_node, plugins_factory):
    """The plugin loaded with the stack daemon's config and attached to its daemon (as
    ``Daemon.run_daemon`` does), so hooks and commands see the daemon's wallets."""
    config = electrum_node.config
    config.set_key("plugins.joinmarket.enabled", True)
    plugins = plugins_factory(config, "cmdline")
    old = electrum_node.daemon._plugins
    electrum_node.daemon._plugins = plugins
    yield plugins.get("joinmarket")
    electrum_node.daemon._plugins = old
    config.set_key("plugins.joinmarket.enabled", False)    # key kept: wallet data is not pruned
