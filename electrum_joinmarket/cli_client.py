"""The ``electrum`` command-line client's side of the plugin's commands.

Electrum's CLI client (the ``electrum`` script) sends one JSON-RPC request to the daemon and waits
at most its ``timeout`` setting (60 s); what the command returns is printed, a
``UserFacingException`` becomes one line on stderr and exit status 1. Ctrl-C is not handled: the
``KeyboardInterrupt`` in the client's main thread prints a traceback, then the process hangs on
Electrum's non-daemon loop thread while the daemon — still connected — goes on with the command.

Electrum imports the plugin's init module in the client process too (to know its commands before
parsing the command line), so :func:`install` — called from there only when the process is a
client running one of our commands — wraps ``electrum.daemon.request`` *for our commands only*:

* **follow**: ``joinmarket_coinjoin --wait`` starts the job, then both it and
  ``joinmarket_progress --wait`` long-poll ``joinmarket_progress --since N`` (each poll answered
  within the timeout, see :func:`jobs.wait_budget`), printing each new progress line on stderr;
  the end is the outcome on stdout (exit 0) or the job's one-line failure (exit 1);
* **Ctrl-C** (SIGINT) on a coinjoin command cancels the coinjoin (``joinmarket_cancel``; if the
  start request is still in flight, it first waits for it so the job it starts is the one
  cancelled) and says what happened — or, past the point of no return, that it goes on and how
  to follow it; exit 1. On other commands: one line, exit 1, no traceback, no hang;
* a client-side timeout becomes one line naming the ``timeout`` setting;
* answers are printed as Electrum prints them (sorted keys, 4-space indent) but with non-ASCII
  text as is ("≥", not ``\u2265``); the launcher then has nothing left to print.

Every request runs in a helper thread while the main thread waits interruptibly, so Ctrl-C never
leaves a half-sent request behind. Nothing here runs in the daemon or the GUI.
"""
from __future__ import annotations

import concurrent.futures
import signal
import sys
import threading
from typing import Any, Callable, Optional

__all__ = ["install", "is_client_of_ours"]

PREFIX = "joinmarket_"
FOLLOW = ("joinmarket_coinjoin", "joinmarket_progress")
NO_SUCH_DAEMON_OPTIONS = ("destination", "amount", "counterparties", "max_cj_fee_abs",
                          "max_cj_fee_rel", "broadcast")


def is_client_of_ours(argv: list[str]) -> bool:
    """True if this process looks like ``electrum [options] joinmarket_…`` (the CLI client):
    one of its arguments names one of our commands and it is not the daemon or the GUI."""
    args = argv[1:]
    return any(a.startswith(PREFIX) for a in args) and not any(a in ("daemon", "gui") for a in args)


def install() -> bool:
    """Wrap ``electrum.daemon.request`` (idempotent). Returns whether it is installed."""
    from electrum import daemon
    if getattr(daemon.request, "_joinmarket_client", False):
        return True
    original = daemon.request

    def request(config: Any, endpoint: str, args: tuple = (), timeout: float = 60) -> Any:
        opts = args[0] if args and isinstance(args[0], dict) else {}
        if endpoint != "run_cmdline" or not str(opts.get("cmd", "")).startswith(PREFIX):
            return original(config, endpoint, args, timeout)
        return _Client(original, config, opts, timeout).run()

    request._joinmarket_client = True    # type: ignore[attr-defined]
    daemon.request = request
    return True


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class _Client:
    def __init__(self, original: Callable, config: Any, opts: dict, timeout: float):
        self.original, self.config, self.opts, self.timeout = original, config, opts, timeout
        self.cmd = str(opts["cmd"])
        self.job: Optional[str] = None

    # -------------------------------------------------------------- requests
    def _call_in_thread(self, opts: dict) -> "concurrent.futures.Future":
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def work() -> None:
            try:
                fut.set_result(self.original(self.config, "run_cmdline", (opts,), self.timeout))
            except BaseException as exc:      # handed to the waiting main thread
                fut.set_exception(exc)
        threading.Thread(target=work, name="joinmarket-cli-request", daemon=True).start()
        return fut

    def _wait(self, fut: "concurrent.futures.Future") -> Any:
        """The answer; KeyboardInterrupt reaches us here (the main thread), the request goes on."""
        while True:
            try:
                return fut.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                if fut.done():
                    raise self._timeout_error() from None
                continue

    def _timeout_error(self) -> Exception:
        from electrum.util import JsonRPCError
        return JsonRPCError(code=JsonRPCError.Codes.USERFACING, message=(
            f"no answer from the Electrum daemon within {self.timeout:.0f} s (client setting "
            f"'timeout'); the command may still be running there"))

    def _opts(self, cmd: str, **kw: Any) -> dict:
        o = {k: v for k, v in self.opts.items() if k not in NO_SUCH_DAEMON_OPTIONS}
        o.update(cmd=cmd, **kw)
        return o

    # -------------------------------------------------------------- the flows
    def run(self) -> None:
        """Do the command; print its answer (or raise the one-line JsonRPCError Electrum prints)."""
        answer = self._run()
        if answer is not None:
            import json

            from electrum.util import MyEncoder
            sys.stdout.write(json.dumps(answer, sort_keys=True, indent=4, cls=MyEncoder,
                                        ensure_ascii=False) + "\n")
            sys.stdout.flush()
        return None

    def _run(self) -> Any:
        follow = self.cmd in FOLLOW and bool(self.opts.get("wait"))
        first = dict(self.opts, wait=False) if follow else dict(self.opts)
        if follow and self.cmd == "joinmarket_progress":
            first["since"] = 0
        start = self._call_in_thread(first)
        try:
            answer = self._wait(start)
        except KeyboardInterrupt:
            return self._interrupted(start)
        if not follow:
            return answer
        return self._follow(answer)

    def _follow(self, answer: dict) -> Any:
        from electrum.util import JsonRPCError
        self.job = answer.get("job")
        while True:
            for line in answer.get("lines", []):
                _say(f"[{line.get('t', 0):7.1f}s] {line.get('stage', '')}: {line.get('line', '')}")
            if answer.get("state") != "running":
                break
            poll = self._call_in_thread(self._opts("joinmarket_progress", wait=True,
                                                   since=answer.get("lines_total", 0),
                                                   job=self.job))
            try:
                answer = self._wait(poll)
            except KeyboardInterrupt:
                return self._cancel()
        if answer.get("state") != "success":
            raise JsonRPCError(code=JsonRPCError.Codes.USERFACING,
                               message=answer.get("error") or f"coinjoin {answer.get('state')}")
        answer.pop("lines", None)
        return answer

    def _interrupted(self, start: "concurrent.futures.Future") -> Any:
        from electrum.util import JsonRPCError
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # let the cancellation finish
        if self.cmd == "joinmarket_coinjoin":
            _say("Ctrl-C: waiting for the coinjoin to start, to cancel it…")
            try:
                answer = start.result(timeout=self.timeout)
            except Exception:                 # it did not start: its own error says why
                raise
            self.job = answer.get("job") if isinstance(answer, dict) else None
            if isinstance(answer, dict) and answer.get("state") != "running":
                raise JsonRPCError(code=JsonRPCError.Codes.USERFACING,
                                   message=answer.get("error") or "the coinjoin already ended")
            return self._cancel(already_ignoring=True)
        if self.cmd == "joinmarket_progress" and self.opts.get("wait"):
            return self._cancel(already_ignoring=True)
        raise JsonRPCError(code=JsonRPCError.Codes.USERFACING, message=(
            f"interrupted (Ctrl-C); {self.cmd} may still complete inside Electrum"))

    def _cancel(self, already_ignoring: bool = False) -> Any:
        from electrum.util import JsonRPCError
        if not already_ignoring:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        _say("Ctrl-C: cancelling the coinjoin…")
        try:
            answer = self._call_in_thread(self._opts("joinmarket_cancel")).result(
                timeout=self.timeout)
        except JsonRPCError as exc:           # refused: no job, or too late
            raise JsonRPCError(code=JsonRPCError.Codes.USERFACING,
                               message=f"Ctrl-C: not cancelled: {exc.message}") from None
        except concurrent.futures.TimeoutError:
            raise self._timeout_error() from None
        raise JsonRPCError(code=JsonRPCError.Codes.USERFACING,
                           message=str(answer.get("message") or answer.get("error")
                                       or f"coinjoin {answer.get('state')}"))
