"""A lean daemon (issue 13.4): pynacl is loaded only by a daemon that uses it — an idle one maps
none of its libraries — and pyOpenSSL, cryptography and txtorcon never: TLS is the standard
library's ``ssl`` (jmdaemon/tls.py) and the Tor control port our own client (jmdaemon/tor/control.py).
A daemon that uses TLS maps no cryptography either (test_irc_tls.py, test_cli.py::test_amp_over_tls,
which run ``python -m jmdaemon`` as here). The development venv may have pyOpenSSL installed
(Twisted's TCP module imports it when it can): :func:`jmdaemon.tls.import_twisted` keeps it out."""
import subprocess
import textwrap

import pytest

from devstack.daemons import PY, ROOT, TestClient, run, start_daemon, start_directory
from devstack.ircd import irc_config
from devstack.procmem import mapped_files, tree

# shared libraries of the lazily loaded parts (as installed, or unpacked by the frozen binary)
TLS_LIBS = ("cryptography/hazmat/bindings/_rust",)
NACL_LIBS = ("nacl/_sodium", "_cffi_backend")


def mapped(pid, needles):
    files = set().union(*(mapped_files(p) for p in tree(pid)))
    assert any("libc" in f for f in files), "could not read the daemon's memory maps"
    return sorted(f for f in files if any(n in f for n in needles))


@pytest.mark.stack
def test_idle_daemon_maps_no_tls_nacl_or_tor(tmp_path):
    p = start_daemon(tmp_path, "idle")

    async def round_trip():            # barrier: the daemon has served a client request
        c = await TestClient("probe").connect(p.port)
        assert (await c.call("JMRequestOffers")) == {"accepted": True}
        await c.wait_for("JMOffers")
        c.close()
    run(round_trip())
    assert mapped(p.proc.pid, TLS_LIBS + NACL_LIBS) == []
    assert p.stop() == 0


@pytest.mark.stack
def test_plain_irc_daemon_loads_nacl_but_no_tls(ircd, tmp_path):
    p = start_daemon(tmp_path, "irc")

    async def main():
        c = await TestClient("c").connect(p.port)
        try:
            await c.init(irc_config(ircd))            # JMInit, JMStartMC -> JMUp
            assert c.count("JMUp") == 1
            assert (await c.call("JMSetup", role="TAKER", initdata=None,
                                 use_fidelity_bond=False)) == {"accepted": True}   # NaCl keypair
            await c.wait_for("JMSetupDone")
        finally:
            c.close()
    run(main(), timeout=60)
    assert mapped(p.proc.pid, NACL_LIBS), "NaCl should be loaded once a session exists"
    assert mapped(p.proc.pid, TLS_LIBS) == []
    assert p.stop() == 0 and "Traceback" not in p.log()


def python(code):
    r = subprocess.run([PY, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       timeout=60, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_import_twisted_hides_openssl_only_while_importing():
    out = python("""
        import sys
        from jmdaemon.tls import import_twisted
        assert import_twisted() is True
        assert "OpenSSL" not in sys.modules and "cryptography" not in sys.modules
        from twisted.internet import reactor
        from twisted.internet.interfaces import IReactorSSL
        print("reactor_ssl", IReactorSSL.providedBy(reactor))   # Twisted's shortcut is off ...
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from jmdaemon.tls import client_endpoint
        ep = client_endpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", 1))
        print("openssl_after_use", "OpenSSL" in sys.modules or "cryptography" in sys.modules)
        print("again", import_twisted())
    """)
    assert out.split() == ["reactor_ssl", "False", "openssl_after_use", "False", "again", "False"]


def test_import_twisted_hides_nothing_after_openssl_was_loaded():
    """(A process that loaded pyOpenSSL itself, where it is installed: not the daemon's.)"""
    if python("import importlib.util; print(importlib.util.find_spec('OpenSSL') is not None)"
              ).strip() != "True":
        pytest.skip("pyOpenSSL is not installed (the daemon does not need it)")
    out = python("""
        import sys
        import OpenSSL
        from jmdaemon.tls import import_twisted
        print(import_twisted())
        from twisted.internet import reactor
        from twisted.internet.interfaces import IReactorSSL
        print(IReactorSSL.providedBy(reactor))
        # (only a process that imported pyOpenSSL itself: the daemon never does)
    """)
    assert out.split() == ["False", "True"]


TWISTED_TLS_SHORTCUTS = ("connectSSL", "listenSSL", "SSL4ClientEndpoint", "SSL4ServerEndpoint",
                         "wrapClientTLS", "wrapServerTLS", "startTLS")


def test_tls_only_through_jmdaemon_tls():
    """In the daemon's process Twisted's own TLS shortcuts are off (jmdaemon/tls.py says why):
    they fail at run time, only when TLS is used. jmdaemon.tls has what they do."""
    offenders = []
    for path in sorted((ROOT / "jmdaemon").rglob("*.py")):
        if path.name == "tls.py" and path.parent.name == "jmdaemon":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            offenders += ["%s:%d: %s" % (path.relative_to(ROOT), n, line.strip())
                          for name in TWISTED_TLS_SHORTCUTS if name in code]
    assert offenders == [], "use jmdaemon.tls (client_endpoint, server_factory) instead:\n" + \
        "\n".join(offenders)


# what the daemon never imports: pyOpenSSL and cryptography (TLS is the standard library's ssl),
# txtorcon (jmdaemon/tor/control.py is our own control-port client), and Twisted's pyOpenSSL layer
NEVER_IMPORTED = ("OpenSSL", "cryptography", "txtorcon", "service_identity", "twisted.internet.ssl",
                  "twisted.internet._sslverify", "twisted.internet._newtls", "twisted.protocols.tls")


def test_daemon_imports_no_pyopenssl_cryptography_or_txtorcon():
    import ast
    offenders = []
    for pkg in ("jmdaemon", "jmcore"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module] + ["%s.%s" % (node.module, a.name) for a in node.names]
                offenders += ["%s:%d %s" % (path.relative_to(ROOT), node.lineno, n) for n in names
                              if any(n == m or n.startswith(m + ".") for m in NEVER_IMPORTED)]
    assert offenders == [], "\n".join(offenders)


def test_no_assert_statements_in_daemon_code():
    """The binary runs with -OO (packaging/jmdaemon.spec), which drops ``assert`` statements: in
    jmdaemon and jmcore a check must be an ``if ...: raise``, never an assert."""
    import ast
    offenders = []
    for pkg in ("jmdaemon", "jmcore"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Assert):
                    offenders.append("%s:%d" % (path.relative_to(ROOT), node.lineno))
    assert offenders == [], "asserts vanish under -OO; raise instead:\n" + "\n".join(offenders)


def test_release_freed_memory_returns_freed_heap_to_the_os():
    """39 MiB of malloc'd blocks freed between live ones stay in the process (glibc shrinks its
    heap only from the top); release_freed_memory() hands them back, and live objects are
    untouched."""
    out = python("""
        import sys
        from jmdaemon.memory import release_freed_memory

        def rss_kib():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

        blocks = [bytes([i % 251]) * 2000 for i in range(20000)]   # > 512 bytes: malloc, not pymalloc
        kept = blocks[::50]            # every 100 KiB a live block: the heap cannot shrink from the top
        blocks = None
        before = rss_kib()
        released = release_freed_memory()
        after = rss_kib()
        intact = all(b == bytes([i * 50 % 251]) * 2000 for i, b in enumerate(kept))
        print(released, before - after, intact, release_freed_memory())
    """)
    released, freed_kib, intact, again = out.split()
    assert (released, intact, again) == ("True", "True", "True")
    assert int(freed_kib) > 20 * 1024, out


def test_release_freed_memory_without_malloc_trim_does_nothing(monkeypatch, caplog):
    """Where there is no glibc malloc_trim (musl, macOS) it skips with a DEBUG line; never raises."""
    import logging

    from jmdaemon import memory
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    with caplog.at_level(logging.DEBUG, logger="jmdaemon.memory"):
        assert memory.release_freed_memory() is False
    assert "no glibc malloc_trim" in caplog.text


@pytest.mark.stack
def test_daemon_releases_freed_memory_once_after_start(tmp_path):
    p = start_daemon(tmp_path, "trim")
    lines = p.wait_log_sync("released freed memory to the OS", timeout=20)
    assert len(lines) == 1 and "RSS" in lines[0]
    assert p.stop() == 0 and p.log().count("released freed memory") == 1


@pytest.mark.stack
def test_directory_node_releases_freed_memory_once_it_is_up(tmp_path):
    p = start_directory(tmp_path, "trim-directory")
    p.wait_log_sync("released freed memory to the OS", timeout=20)
    assert p.stop() == 0 and p.log().count("released freed memory") == 1
