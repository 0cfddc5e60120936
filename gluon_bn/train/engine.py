"""MXNet's engine and threads for training on one CPU device: the settings `gluon-bn train`
chooses unless told otherwise.

MXNet runs each operator on an engine worker thread, asynchronously, and gives its CPU operators
half the processors on x86 (it assumes two hardware threads per core). On a machine whose
processors are real cores (a 2-core VM, say), that leaves a core idle in every convolution; and
giving the operators every core instead makes the Python thread, the engine's worker and the
operators' threads fight over them (slower epochs than either way). MXNet's synchronous engine
(NaiveEngine) runs each operator in the calling thread: with every core for the operators no
thread waits for another, and BN-LeNet's epoch is the fastest of the three (the README's Speed
section has the figures). It suits one device driven from one Python thread; several devices,
a GPU, SyncBatchNorm's threads or a distributed KVStore want MXNet's default engine
(ThreadedEnginePerDevice).
"""
import ctypes
import os
import sys
import tempfile

import mxnet as mx
from mxnet import nd

SYNCHRONOUS = 'NaiveEngine'
# What the user may have set, which these settings leave alone.
USER_SETTINGS = ('MXNET_ENGINE_TYPE', 'OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS')


def processors():
    """The processors this process may run on."""
    return len(os.sched_getaffinity(0))


def mxnet_threads():
    """How many threads MXNet's CPU operators use, as it decides when it starts:
    MXNET_OMP_MAX_THREADS, else OMP_NUM_THREADS, else half the processors on x86 (it assumes
    two hardware threads per core), all of them elsewhere."""
    for name in ('MXNET_OMP_MAX_THREADS', 'OMP_NUM_THREADS'):
        if os.environ.get(name, '').strip().isdigit():
            return int(os.environ[name])
    x86 = os.uname().machine in ('x86_64', 'i386', 'i686', 'AMD64')
    return max(1, processors() // 2) if x86 else processors()


def synchronous_cpu(threads=None):
    """Run MXNet's operators in the calling thread (NaiveEngine), with `threads` threads each
    (default: every processor this process may use).

    MXNet starts its engine with the first operator, so this works only before any has run.
    Returns whether it took effect: True when MXNet started the synchronous engine now, False
    when an engine was running already (nothing changes then). MXNet's own line announcing the
    engine is not shown; anything else MXNet prints meanwhile is.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    before = os.environ.get('MXNET_ENGINE_TYPE')
    os.environ['MXNET_ENGINE_TYPE'] = SYNCHRONOUS
    printed = _stderr_of(lambda: nd.zeros(1).wait_to_read())   # starts the engine, if not yet
    started = f'start using engine: {SYNCHRONOUS}' in printed
    if not started:   # an engine was running: leave the environment as it was
        if before is None:
            del os.environ['MXNET_ENGINE_TYPE']
        else:
            os.environ['MXNET_ENGINE_TYPE'] = before
    sys.stderr.write(''.join(line for line in printed.splitlines(keepends=True)
                             if 'start using engine' not in line))
    if started:
        # The operators now run in this thread, so its OpenMP setting is theirs.
        mx.base.check_call(mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(threads or
                                                                        processors())))
    return started


def default_settings(ctxs, kvstore=None):
    """What `gluon-bn train` uses: on one CPU device without a KVStore, and with none
    of USER_SETTINGS in the environment, the synchronous engine with every processor
    (synchronous_cpu); otherwise MXNet's own settings. Returns a line saying which, or None
    when MXNet's own apply."""
    if len(ctxs) != 1 or ctxs[0].device_type != 'cpu' or kvstore:
        return None
    if any(name in os.environ for name in USER_SETTINGS):
        return None
    threads = processors()
    if not synchronous_cpu(threads):
        return None
    return f"MXNet runs operators synchronously on {threads} thread(s) (NaiveEngine)"


def _stderr_of(fn):
    """What fn() writes to file descriptor 2 (MXNet's C++ log), captured."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode(errors='replace')
