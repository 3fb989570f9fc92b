"""How every command reports a user's mistake: one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import NoReturn


class UserError(Exception):
    """A mistake in what the user asked for: reported as one line, never a traceback."""


#: The exit status of every usage error, in every command.
USAGE_ERROR = 2


#: The exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


class _Interrupts:
    """Ctrl-C raises KeyboardInterrupt wherever the main thread is, and Python drops one
    raised inside a weakref callback or a ``__del__`` ("Exception ignored in …"): a
    Ctrl-C landing there was lost, and the run went on to its end (seen while Python
    imported). Until the command takes the interrupt (:func:`interrupt_taken`), it is
    raised again every ``AGAIN_S``."""

    AGAIN_S = 0.5

    def __init__(self):
        self.taken = threading.Event()
        self.watch = None
        self.again = False  # the signal in flight is this guard's own

    def handler(self, signum, frame):
        again, self.again = self.again, False
        if again and (self.taken.is_set() or sys.exc_info()[1] is not None):
            return  # taken, or an except block may be taking it: not the user's Ctrl-C
        if self.watch is None:
            self.watch = threading.Thread(target=self._raise_again, daemon=True,
                                          name="interrupt-guard")
            self.watch.start()
        raise KeyboardInterrupt

    def _raise_again(self):
        while not self.taken.wait(self.AGAIN_S):
            self.again = True
            os.kill(os.getpid(), signal.SIGINT)


_INTERRUPTS = _Interrupts()


def guard_interrupts() -> None:
    """Make sure a Ctrl-C ends the command (see :class:`_Interrupts`): the first thing a
    command's entry point does."""
    signal.signal(signal.SIGINT, _INTERRUPTS.handler)


def interrupt_taken() -> None:
    """The command has caught the interrupt and is ending: the first statement of the
    ``except`` that catches it."""
    _INTERRUPTS.taken.set()


def leave(code: int, prog: str) -> NoReturn:
    """End the process as soon as its work is done and its output flushed. The
    interpreter's own teardown (the runner's threads, gRPC's) can take a second, and
    Python stops handling Ctrl-C part way through it: a Ctrl-C then (a second one after a
    drain, say) killed the process with no message, and after a Ctrl-C the teardown under
    live worker threads can abort ("terminate called without an active exception").
    Until the end a Ctrl-C is one line and status 130."""
    import logging

    def interrupted(signum, frame):
        os.write(2, f"{prog}: interrupted\n".encode())
        os._exit(INTERRUPTED)

    if code != INTERRUPTED:
        signal.signal(signal.SIGINT, interrupted)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader gone, or a stream closed
            pass
    os._exit(code)


def quiet_broken_pipe() -> int:
    """The reader of stdout went away (``… --help | head``): not an error of ours, and no
    traceback at exit either (Python flushes stdout again then)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


class CommandParser(argparse.ArgumentParser):
    """argparse for every command: a usage error is one line (``PROG: error: …``) and exit
    status 2, never a usage dump; ``--help`` anywhere prints the help and exits 0; no
    abbreviated flags (a prefix that happens to match is a typo, not a choice)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)


class RaisingParser(argparse.ArgumentParser):
    """argparse whose usage error is a :class:`UserError`, for a command inside another
    (``python -m run replay``, ``compact``) whose caller prints the one line and exits 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UserError(message)
