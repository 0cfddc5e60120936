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
(ThreadedEnginePerDevice). So does a busy machine: the synchronous engine's OpenMP threads spin
at each barrier, and when another process holds one of the cores every operator waits for its
turn (3x slower epochs), while MXNet's own engine keeps its speed; before the first operator,
busy_processors() measures how much of the machine others take.
"""
import ctypes
import os
import sys
import tempfile
import time

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


def default_settings(ctxs, kvstore=None, busy=None):
    """What `gluon-bn train` uses: on one CPU device without a KVStore, with none of
    USER_SETTINGS in the environment, and on a machine that other work leaves free (fewer than
    BUSY processors busy, `busy` or measured by busy_processors), the synchronous engine with
    every processor (synchronous_cpu); otherwise MXNet's own settings (a busy machine is said,
    on stderr). Returns a line saying which, or None when MXNet's own apply."""
    if len(ctxs) != 1 or ctxs[0].device_type != 'cpu' or kvstore:
        return None
    if any(name in os.environ for name in USER_SETTINGS):
        return None
    if busy is None and os.environ.get(LOAD_VARIABLE, '').strip():
        busy = _float(os.environ[LOAD_VARIABLE])
    others = busy_processors() if busy is None else busy
    if others >= BUSY:
        print(f"gluon_bn: other work takes {others:.1f} of the {processors()} processor(s) this "
              f"process may use: MXNet's own engine, which holds its speed under load (the "
              f"synchronous one, fastest on a quiet machine, slows 3x)", file=sys.stderr)
        return None
    threads = processors()
    if not synchronous_cpu(threads):
        return None
    return f"MXNet runs operators synchronously on {threads} thread(s) (NaiveEngine)"


# Processors' worth of work by others above which the machine counts as busy: with one other
# CPU-bound process, the synchronous engine's threads, which spin at OpenMP barriers, lose
# their core (BN-LeNet: 2.4 s an epoch quiet, 8-10 s busy), while MXNet's own engine holds
# (3.3 s quiet, 3.4 s busy).
BUSY = 0.5
# Sets the load default_settings assumes instead of measuring it (gluon-bn bench-load uses 0 to
# time the synchronous engine on a busy machine).
LOAD_VARIABLE = 'GLUON_BN_ASSUME_LOAD'


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"${LOAD_VARIABLE} must be a number (processors taken by others), got "
                         f"{text!r}") from None


def busy_processors(seconds=0.2, stat='/proc/stat'):
    """How many of the processors this process may use are taken by others (other processes,
    or the hypervisor: steal time), measured over `seconds` from the kernel's counters; 0 where
    they cannot be read. This process is idle meanwhile, so what is busy is others' work."""
    allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)}

    def sample():
        busy = total = 0
        try:
            with open(stat) as f:
                for line in f:
                    name, *counts = line.split()
                    if name in allowed:
                        counts = [int(c) for c in counts[:8]]   # user .. steal
                        idle = counts[3] + counts[4]            # idle, iowait
                        busy, total = busy + sum(counts) - idle, total + sum(counts)
        except (OSError, ValueError):
            return None
        return busy, total

    before = sample()
    time.sleep(seconds)
    after = sample()
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    return len(allowed) * (after[0] - before[0]) / (after[1] - before[1])


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
