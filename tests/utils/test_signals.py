"""stopping_on_signals: SIGTERM and SIGHUP stop the process that asked, as Ctrl-C does, and
nothing else: a child forked meanwhile (a DataLoader's worker) still dies of them."""
import os
import signal
import time

import pytest

from gluon_bn.utils.signals import Stopped, status, stopping_on_signals


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_this_process_as_ctrl_c_and_the_handlers_come_back(signum):
    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt) as raised:
        with stopping_on_signals():
            os.kill(os.getpid(), signum)
            time.sleep(5)
    assert isinstance(raised.value, Stopped) and status(raised.value) == 128 + signum
    assert signal.getsignal(signum) == before


def test_a_child_forked_inside_still_dies_of_sigterm():
    with stopping_on_signals():
        pid = os.fork()
        if pid == 0:   # the child: wait to be stopped, as a pool's worker does
            time.sleep(30)
            os._exit(0)
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        _, code = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(code) and os.WTERMSIG(code) == signal.SIGTERM
