"""gluon_bn against its peers in one run: batch norm alone, then BN-LeNet epochs
(`gluon-bn bench-peers`, also `make bench`).

1. Batch norm, forward + backward, per BN-LeNet shape at batch 256: gluon_bn's from-scratch Block
   (`--bn scratch`: gluon_bn.BatchNorm, imperative) and HybridBatchNorm (`--bn hybrid`,
   hybridized), MXNet's nn.BatchNorm (hybridized), PyTorch's nn.BatchNorm2d/1d and the
   from-scratch BatchNorm of the book's PyTorch port. The memory floor is what moving the data
   costs: four copies of X (batch norm reads X twice and writes Y forward; reads X and dY twice
   and writes dX backward), timed as NumPy copies.
2. BN-LeNet epochs (train on 60,000 images, then test on 10,000; data preloaded in memory; SGD,
   lr 1.0, batch 256, Xavier-uniform weights): the training recipe as `gluon-bn train`
   runs it, against PyTorch training the book port's network (seed 001's) the same way.

Contenders take turns, round by round (epoch by epoch), so a drift of the machine's speed hits
them alike; each figure is the median over the rounds, and each ratio compares two medians of
this run. MXNet runs as `gluon-bn train` runs it (gluon_bn.train.engine: synchronously, on
every processor, unless MXNET_ENGINE_TYPE, OMP_NUM_THREADS or MXNET_OMP_MAX_THREADS say
otherwise); PyTorch gets as many threads.

PyTorch runs in a process and an environment of its own (gluon_bn/bench/torch_peer.py; `make peers`
creates .venv-peers with it), because GluonCV refuses to import beside torch 2. Its OpenMP threads
spin while they wait, and when another process shares the cores its times grow tenfold or more
(epochs of 36-185 s instead of 4 s were seen on 2 cores): measure on a quiet machine. Without
PyTorch the run compares gluon_bn with MXNet alone.
"""
import contextlib
import ctypes
import json
import os
import statistics
import subprocess
import tempfile
import time

import mxnet as mx
import numpy as np
from mxnet import nd
from mxnet.gluon import nn

from .. import ops
from ..nn import BatchNorm, HybridBatchNorm
from ..train import Recipe, Run, engine
from ..train.data import load_arrays
from ..utils.errors import Error
from . import predict
from .bn import bn_step
from .timing import Local, interleaved, mxnet_contender

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS_PYTHON = os.path.join(ROOT, '.venv-peers', 'bin', 'python')
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'torch_peer.py')
SHAPES = [(256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84)]
TORCH = {'torch BatchNorm': 'builtin', 'torch book BN': 'book'}
SETTLE_S = 0.1   # after each of PyTorch's rounds, before the next contender's


class PeerError(Error, RuntimeError):
    """The PyTorch worker could not start or failed a request."""


class TorchPeer:
    """The PyTorch worker (torch_peer.py, beside this file) in its own process and environment,
    asked one turn at a time."""

    def __init__(self, python, threads, data_path):
        self.process = subprocess.Popen(
            [python, WORKER, '--threads', str(threads), '--data', data_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = self.ask(cmd='hello')

    def ask(self, **request):
        try:
            self.process.stdin.write(json.dumps(request) + '\n')
            self.process.stdin.flush()
        except BrokenPipeError:
            pass   # the worker is gone: said below
        line = self.process.stdout.readline()
        if not line:
            raise PeerError(f"the PyTorch worker ended (exit status {self.process.wait()})")
        answer = json.loads(line)
        if 'error' in answer:
            raise PeerError(f"the PyTorch worker failed: {answer['error']}")
        return answer

    def close(self):
        try:
            self.process.stdin.close()   # the worker's loop ends with its input
        except BrokenPipeError:
            pass
        self.process.wait(timeout=60)


class Remote:
    """A contender in the PyTorch worker: a batch-norm layer's forward and backward, or BN-LeNet
    predicting (predict=True)."""

    def __init__(self, peer, bn, shape, predict=False):
        self.peer, self.spec = peer, {'bn': bn, 'shape': list(shape), 'predict': predict}

    def warm(self):
        self.peer.ask(cmd='warm', **self.spec)

    def round(self, reps):
        ms = self.peer.ask(cmd='round', reps=reps, **self.spec)['ms']
        # PyTorch's OpenMP threads spin a while after its work: not on the next contender's time
        time.sleep(SETTLE_S)
        return ms


# ---- batch norm alone --------------------------------------------------------------------------

def memory_floor(shape):
    """Four copies of X, as NumPy makes them (into new memory)."""
    src = np.random.standard_normal(shape).astype(np.float32)
    return Local(lambda: [src.copy() for _ in range(4)])


def bench_batch_norm(rounds, peer):
    print('Batch norm, forward + backward, ms per call (median of the rounds)')
    names = ['gluon_bn scratch', 'gluon_bn hybrid', 'nn.BatchNorm']
    names += list(TORCH) if peer else []
    names.append('floor (4 copies)')
    print(f"{'shape':17}" + ''.join(f"{name:>17}" for name in names)
          + (f"{'hybrid/torch':>13}" if peer else '') + f"{'hybrid/floor':>13}")
    for shape in SHAPES:
        C, num_dims = shape[1], len(shape)
        reps = 20 if shape == SHAPES[0] else 100
        layers = {'gluon_bn scratch': (BatchNorm(C, num_dims), False),
                  'gluon_bn hybrid': (HybridBatchNorm(in_channels=C), True),
                  'nn.BatchNorm': (nn.BatchNorm(in_channels=C), True)}   # layer, hybridized
        contenders = {name: mxnet_contender(bn_step(layer, shape, hybridize))
                      for name, (layer, hybridize) in layers.items()}
        if peer:
            contenders.update({name: Remote(peer, bn, shape) for name, bn in TORCH.items()})
        contenders['floor (4 copies)'] = memory_floor(shape)
        t = interleaved(contenders, rounds, reps)
        print(f"{str(shape):17}" + ''.join(f"{t[name]:17.3f}" for name in names)
              + (f"{t['gluon_bn hybrid'] / t['torch BatchNorm']:13.2f}" if peer else '')
              + f"{t['gluon_bn hybrid'] / t['floor (4 copies)']:13.2f}", flush=True)


# ---- BN-LeNet epochs ---------------------------------------------------------------------------

class Epochs:
    """BN-LeNet trained by the training recipe, as `gluon-bn train` trains it, one epoch per
    call."""

    def __init__(self, bn, arrays):
        self.epochs = Run(Recipe(bn=bn, epochs=10 ** 6, seed=0), arrays, mx.cpu()).epochs()

    def epoch(self):
        start = time.perf_counter()
        record = next(self.epochs)
        return time.perf_counter() - start, record['test_acc']


class RemoteEpochs:
    def __init__(self, peer, bn):
        self.peer, self.bn = peer, bn

    def epoch(self):
        answer = self.peer.ask(cmd='epoch', bn=self.bn)
        return answer['seconds'], answer['test_acc']


def bench_epochs(epochs, peer, arrays):
    print(f'BN-LeNet, seconds per epoch (train + test; median of {epochs}), test accuracy '
          f'after epoch {epochs}')
    runs = {f'gluon_bn {bn}': Epochs(bn, arrays) for bn in ('hybrid', 'scratch', 'gluon')}
    if peer:
        runs.update({name: RemoteEpochs(peer, bn) for name, bn in TORCH.items()})
    seconds, accuracy = {name: [] for name in runs}, {}
    for _ in range(epochs):
        for name, run in runs.items():
            s, accuracy[name] = run.epoch()
            seconds[name].append(s)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    against = [(name, f'vs {name}') for name in TORCH] if peer else []
    print(f"{'contender':18} {'s/epoch':>8} {'test acc':>9}"
          + ''.join(f"{title:>19}" for _, title in against))
    for name in runs:
        print(f"{name:18} {median[name]:8.2f} {accuracy[name]:9.3f}"
              + ''.join(f"{median[name] / median[peer_name]:19.2f}" for peer_name, _ in against),
              flush=True)


def parallel_gain(threads, reps=30):
    """How much faster gluon_bn's batch norm runs on `threads` threads than on one (forward,
    LeNet's first shape), under the synchronous engine, whose operators take this thread's OpenMP
    setting: about the thread count where the cores are free, 1 or less where they are not (a
    busy machine, or a VM whose host schedules a core late: two busy processes side by side can
    still look fine there, while threads that wait for each other do not)."""
    ops.load()
    x = nd.random.normal(shape=SHAPES[0])
    C = SHAPES[0][1]
    stats = [nd.ones(C), nd.zeros(C), nd.zeros(C), nd.ones(C), nd.ones(1)]

    def seconds(n):
        mx.base.check_call(mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(n)))
        nd.gluon_bn_batch_norm(x, *stats)[0].wait_to_read()
        start = time.perf_counter()
        for _ in range(reps):
            nd.gluon_bn_batch_norm(x, *stats)[0].wait_to_read()
        return time.perf_counter() - start
    one = min(seconds(1) for _ in range(3))
    many = min(seconds(threads) for _ in range(3))
    return one / many


def torch_python(given=None):
    """The Python with torch to use: `given` ('none' leaves PyTorch out), else .venv-peers's
    if `make peers` made it, else 'none'."""
    return given or (PEERS_PYTHON if os.path.exists(PEERS_PYTHON) else 'none')


def bench(rounds=7, epochs=3, skip_epochs=False, python='none', train_size=None,
          data_dir=None, skip_networks=False):
    """The tables, PyTorch included unless `python` is 'none': batch norm alone, whole networks
    predicting and taking training steps (unless skip_networks), BN-LeNet epochs (unless
    skip_epochs). PeerError if PyTorch's worker fails."""
    # Before any MXNet operator runs: the engine and threads the training command would use.
    synchronous = engine.default_settings([mx.cpu()])
    threads = engine.processors() if synchronous else engine.mxnet_threads()
    arrays = load_arrays(data_dir, train_size)
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        peer = None
        if python == 'none':
            print("PyTorch: not measured (make peers sets it up in .venv-peers)")
        else:
            (train_x, train_y), (test_x, test_y) = arrays
            np.savez(os.path.join(folder, 'data.npz'), train_x=train_x, train_y=train_y,
                     test_x=test_x, test_y=test_y)
            peer = TorchPeer(python, threads, os.path.join(folder, 'data.npz'))
            stack.callback(peer.close)
            print("PyTorch's threads spin while they wait: with another process busy on these "
                  "cores its times grow tenfold; the figures hold on a quiet machine")
        if synchronous and threads > 1:
            gain = parallel_gain(threads)
            print(f"{threads} threads run batch norm {gain:.2f}x as fast as one here")
            if gain < 1.3:
                print("warning: the cores are not all free (a busy machine, or a host that "
                      "schedules this VM's cores late): the figures below say more about the "
                      "machine than about the contenders")
        print(f"MXNet {mx.__version__}: {threads} thread(s), "
              f"{'synchronous' if synchronous else 'its own'} engine"
              + (f"; PyTorch {peer.hello['torch']}: {peer.hello['threads']} thread(s)" if peer
                 else ''), flush=True)
        bench_batch_norm(rounds, peer)
        if not skip_networks:
            print()
            predict.bench_prediction(rounds, peer, lambda shape: Remote(peer, 'builtin', shape,
                                                                        predict=True))
            print()
            predict.bench_training_steps(rounds)
        if not skip_epochs:
            print()
            bench_epochs(epochs, peer, arrays)
