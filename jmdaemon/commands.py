"""Twisted ``amp.Command`` classes generated from the shared schema ``jmcore.commands.COMMANDS``.

Every command of the schema (coinjoin, SNICKER, BIP78) becomes a class of the same name in this
module, e.g. ``jmdaemon.commands.JMInit``; ``COMMAND_CLASSES`` maps names to classes. Errors named
in the schema become exception classes in ``ERROR_CLASSES`` (e.g. ``DaemonNotReady``).
"""
from __future__ import annotations

from typing import Any

from twisted.protocols import amp

from jmcore.commands import ALL_COMMANDS, COINJOIN_COMMANDS, COMMANDS, EXTENSION_COMMANDS, CommandSpec
from jmcore.linkauth import LINK_AUTH_COMMANDS

from .amp_types import make_argument

ERROR_CLASSES: dict[str, type[Exception]] = {}


def _error_class(name: str) -> type[Exception]:
    if name not in ERROR_CLASSES:
        ERROR_CLASSES[name] = type(name, (Exception,), {"__module__": __name__})
    return ERROR_CLASSES[name]


def make_command(spec: CommandSpec) -> type[amp.Command]:
    """One amp.Command subclass for one CommandSpec."""
    errors = {_error_class(ename): str(code).encode("utf-8")
              for ename, code in dict(spec.errors or {}).items()}
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": "%s (%s, %s)" % (spec.name, spec.direction, spec.group),
        "commandName": spec.name.encode("ascii"),
        "arguments": [(a.name.encode("ascii"), make_argument(a.type)) for a in spec.arguments],
        "response": [(a.name.encode("ascii"), make_argument(a.type)) for a in spec.response],
        "errors": errors,
        "spec": spec,
    }
    return type(spec.name, (amp.Command,), attrs)


COMMAND_CLASSES = {name: make_command(spec) for name, spec in ALL_COMMANDS.items()}
"""The 50 reference commands and our extensions (jmcore.commands.EXTENSION_COMMANDS)."""
LINK_COMMAND_CLASSES = {name: COMMAND_CLASSES[name] for name in LINK_AUTH_COMMANDS}
"""The link authentication commands (jmcore.linkauth)."""
globals().update(COMMAND_CLASSES)
globals().update(ERROR_CLASSES)

CLIENT_TO_DAEMON = tuple(n for n, s in COMMANDS.items() if s.direction == "client->daemon")
DAEMON_TO_CLIENT = tuple(n for n, s in COMMANDS.items() if s.direction == "daemon->client")

__all__ = ["COMMANDS", "COINJOIN_COMMANDS", "EXTENSION_COMMANDS", "COMMAND_CLASSES",
           "LINK_COMMAND_CLASSES",
           "ERROR_CLASSES", "CLIENT_TO_DAEMON", "DAEMON_TO_CLIENT", "make_command"] + list(COMMAND_CLASSES)
