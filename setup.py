"""electrum-joinmarket: JoinMarket CoinJoin for Electrum users.

Three packages (see docs/architecture.md):
  jmcore               - stdlib-only shared code: AMP schema and codec, constants, offer arithmetic
  jmdaemon             - keyless messaging daemon (Twisted), installed with the ``daemon`` extra
  electrum_joinmarket  - the Electrum plugin (uses Electrum's own libraries, installed separately)
"""
from setuptools import find_packages, setup

setup(
    name="electrum-joinmarket",
    version="0.1.0",
    description="JoinMarket CoinJoin for Electrum: plugin, shared core and keyless messaging daemon",
    python_requires=">=3.10",
    packages=find_packages(include=["jmcore", "jmcore.*", "jmdaemon", "jmdaemon.*",
                                    "electrum_joinmarket", "electrum_joinmarket.*"]),
    package_data={"electrum_joinmarket": ["manifest.json", "*.png"]},
    install_requires=[],
    extras_require={
        # TLS is the standard library's ssl and the Tor control port our own client
        # (jmdaemon/tls.py, jmdaemon/tor/control.py): no pyOpenSSL, cryptography or txtorcon
        "daemon": ["twisted>=24.7", "pynacl>=1.5"],
        # the linters are pinned: a new release must not turn `make test` red by itself
        "test": ["pytest>=8,<9.2", "pytest-qt>=4.4", "pytest-twisted>=1.14", "pytest-timeout>=2.3",
                 "pytest-xdist>=3.6",
                 "hypothesis>=6.100", "ruff==0.17.6", "mypy==2.4.1", "mypy-zope==1.0.17"],
    },
    entry_points={"console_scripts": ["jmdaemon = jmdaemon.cli:main"]},
)
