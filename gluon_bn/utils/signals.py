"""SIGTERM and SIGHUP stop a program as Ctrl-C does.

`timeout`, `kill`, a CI cancelling a job and a closed terminal send SIGTERM or SIGHUP, whose
default action ends the process at once: no report written, children left running, temporary
files left behind. Inside `stopping_on_signals()` they raise `Stopped` (a KeyboardInterrupt)
in the main thread instead, so every `except KeyboardInterrupt` / `finally` that keeps what is
done and stops the children runs for them too; the command line then exits 128 + the signal's
number with one line, as a shell reports a process the signal killed.
"""
import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A signal asked the program to stop (SIGINT too, when raised for one)."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self):
        return signal.Signals(self.signum).name


def status(interrupt):
    """The exit status for a KeyboardInterrupt or Stopped: 128 + the signal's number."""
    return 128 + getattr(interrupt, 'signum', signal.SIGINT)


def signal_name(interrupt):
    return getattr(interrupt, 'name', 'SIGINT')


# The handlers stopping_on_signals replaced, while it is active: a child forked meanwhile gets
# them back at once (os.register_at_fork), so that it behaves as if nothing was installed.
_replaced = {}


def _restore_in_child():
    for signum, handler in _replaced.items():
        signal.signal(signum, handler)
    _replaced.clear()


os.register_at_fork(after_in_child=_restore_in_child)


@contextlib.contextmanager
def stopping_on_signals(signals=SIGNALS):
    """Raise Stopped(signum) in the main thread on each of `signals` while inside; the previous
    handlers come back after. Outside the main thread (where Python cannot set handlers) it
    changes nothing. A process forked meanwhile (a DataLoader's worker, which its pool stops
    with SIGTERM) starts with the previous handlers, as if none were installed."""
    if threading.current_thread() is not threading.main_thread() or _replaced:
        yield   # not settable here, or active already (nested): nothing to add
        return

    def stop(signum, frame):
        raise Stopped(signum)

    _replaced.update({s: signal.signal(s, stop) for s in signals})
    try:
        yield
    finally:
        for s, handler in _replaced.items():
            signal.signal(s, handler)
        _replaced.clear()
