#!/usr/bin/env python3
"""The package rule of electrum-joinmarket, checked on the source (docs/architecture.md).

    jmcore               imports the standard library only (and itself);
    jmdaemon             imports the standard library, jmcore, itself and its messaging stack
                         (Twisted, PyNaCl) -- so never Electrum, electrum_ecc, the plugin, any key /
                         bitcoin library (the daemon stays keyless), pyOpenSSL or txtorcon;
    electrum_joinmarket  never imports Twisted, NaCl, txtorcon or jmdaemon (official Electrum
                         binaries do not ship them), except, lazily inside a function, the optional
                         in-process launcher; and no bitcoin library but Electrum's own.

Two hygiene rules ride along: nothing outside ``tests/`` imports ``tests`` (the dev stack, the demo
and the benchmarks share ``devstack``, not the test suite), and nothing imports a ``conftest``
module (fixtures reach tests through pytest; shared helpers live in ordinary modules).

Every ``import``/``from … import`` is found with :mod:`ast` -- at any depth, including
``if TYPE_CHECKING:`` blocks and ``try:`` guards -- relative imports are resolved against the
file's package, and ``importlib.import_module("…")`` / ``__import__("…")`` /
``importlib.util.find_spec("…")`` with a literal name count as imports too.

Usage: ``python3 scripts/check_layers.py [ROOT]`` -- prints each violation as
``path:line: message`` and exits 1 if there is any. Standard library only (Python >= 3.10).
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}

# Key and bitcoin libraries: never in the daemon; in the plugin only Electrum's own.
KEY_LIBS = frozenset({
    "electrum_ecc", "coincurve", "secp256k1", "secp256k1proto", "bitcointx", "bitcoin", "embit",
    "ecdsa", "pycoin", "bitcoinlib", "bip32", "bip32utils", "bip_utils", "hdwallet", "mnemonic",
    "btclib", "bitcoinutils", "Crypto", "Cryptodome", "cryptography",
})
DAEMON_STACK = frozenset({"twisted", "zope", "nacl"})
PLUGIN_LAUNCHER = "electrum_joinmarket/link/daemon.py"


@dataclass(frozen=True)
class Rule:
    """What one top-level package may import (by top-level module name)."""
    package: str
    allowed: frozenset[str] | None          # None: anything not in ``forbidden``
    forbidden: frozenset[str] = frozenset()
    lazy_ok: dict[str, frozenset[str]] = field(default_factory=dict)  # file -> names allowed in functions
    why: str = ""

    def verdict(self, name: str, rel: str, in_function: bool) -> str | None:
        if in_function and name in self.lazy_ok.get(rel, frozenset()):
            return None
        if name in self.forbidden:
            return f"{self.package} must not import {name} ({self.why})"
        if self.allowed is not None and name not in self.allowed and name != self.package:
            return f"{self.package} must not import {name} ({self.why})"
        return None


RULES = (
    Rule("jmcore", allowed=STDLIB,
         why="jmcore is standard library only"),
    Rule("jmdaemon", allowed=STDLIB | {"jmcore"} | DAEMON_STACK,
         forbidden=KEY_LIBS | {"electrum", "electrum_joinmarket", "PyQt5", "PyQt6", "tests", "devstack"},
         why="the daemon holds no key or wallet code: stdlib, jmcore, twisted, zope, nacl"),
    Rule("electrum_joinmarket", allowed=None,
         forbidden=(DAEMON_STACK | {"libnacl", "txtorcon", "jmdaemon", "tests", "devstack"}
                    | (KEY_LIBS - {"electrum_ecc"})),
         lazy_ok={PLUGIN_LAUNCHER: frozenset({"twisted", "nacl", "jmdaemon"})},
         why=("Electrum's binaries ship no Twisted/NaCl; only the in-process launcher "
              f"({PLUGIN_LAUNCHER}) may import them, inside a function; no bitcoin library but Electrum's")),
)
PACKAGES = tuple(r.package for r in RULES)
# Directories outside tests/ that must not import the test suite.
NOT_TESTS = ("jmcore", "jmdaemon", "electrum_joinmarket", "devstack", "scripts", "benchmarks", "packaging")
SKIP_DIRS = {"__pycache__", ".venv", "build", "dist", ".git"}


@dataclass(frozen=True)
class Import:
    module: str        # absolute dotted name (relative imports resolved)
    line: int
    in_function: bool


def module_name(root: Path, path: Path) -> list[str]:
    """The dotted package path of ``path`` relative to ``root`` (``a/b/c.py`` -> [a, b, c])."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return parts


def _literal_import(call: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("x")``, ``__import__("x")`` or
    ``importlib.util.find_spec("x")`` (which imports the parents of a dotted name)."""
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name not in {"import_module", "__import__", "find_spec"}:
        return None
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def find_imports(tree: ast.AST, package: list[str], is_package: bool) -> Iterator[Import | str]:
    """Every import in ``tree``; a ``str`` is an error (relative import above the top package).

    ``package`` is the file's dotted path; for ``__init__.py`` it is the package itself."""
    base = package if is_package else package[:-1]

    def visit(node: ast.AST, in_function: bool) -> Iterator[Import | str]:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(alias.name, child.lineno, in_function)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    up = child.level - 1
                    if up > len(base) - 1 or not base:
                        yield f"{child.lineno}: relative import goes above the top-level package"
                        continue
                    anchor = base[:len(base) - up]
                    mod = ".".join(anchor + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                yield Import(mod, child.lineno, in_function)
                for alias in child.names:          # ``from pkg import submodule``
                    if alias.name != "*":
                        yield Import(f"{mod}.{alias.name}", child.lineno, in_function)
            elif isinstance(child, ast.Call):
                lit = _literal_import(child)
                if lit is not None:
                    yield Import(lit, child.lineno, in_function)
            yield from visit(child, nested)

    yield from visit(tree, False)


def python_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*.py")):
        if not SKIP_DIRS.intersection(path.parts):
            yield path


def check(root: Path) -> tuple[list[str], int]:
    """All violations under ``root`` and the number of files read."""
    root = root.resolve()
    problems: list[str] = []
    nfiles = 0
    rules = {r.package: r for r in RULES}
    tops = [p for p in (*PACKAGES, *NOT_TESTS, "tests") if (root / p).is_dir()]
    for top in dict.fromkeys(tops):
        for path in python_files(root / top):
            nfiles += 1
            rel = path.relative_to(root).as_posix()
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"), rel)
            except (SyntaxError, UnicodeDecodeError) as exc:
                problems.append(f"{rel}: cannot parse ({exc})")
                continue
            dotted = module_name(root, path)
            rule = rules.get(top)
            for imp in find_imports(tree, dotted, path.name == "__init__.py"):
                if isinstance(imp, str):
                    problems.append(f"{rel}:{imp}")
                    continue
                first = imp.module.split(".")[0]
                if rule is not None:
                    msg = rule.verdict(first, rel, imp.in_function)
                    if msg:
                        problems.append(f"{rel}:{imp.line}: {msg}")
                        continue
                if top != "tests" and first == "tests":
                    problems.append(f"{rel}:{imp.line}: only tests/ may import the test suite; "
                                    "shared helpers belong in devstack/")
                elif imp.module.split(".")[-1] == "conftest":
                    problems.append(f"{rel}:{imp.line}: imports {imp.module}: conftest modules are "
                                    "pytest's; put shared helpers in an ordinary module")
    return sorted(set(problems)), nfiles


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else ".")
    missing = [p for p in PACKAGES if not (root / p).is_dir()]
    if missing:
        print(f"layer check: {root} has no {', '.join(missing)} -- wrong root?", file=sys.stderr)
        return 2
    problems, nfiles = check(root)
    for line in problems:
        print(line)
    print(f"layer check: {nfiles} files, {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
