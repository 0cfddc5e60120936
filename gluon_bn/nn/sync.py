"""Synchronized batch norm: statistics over the whole batch when it is split between devices.

With data parallelism each device normalizes its slice with the slice's statistics. SyncBatchNorm
normalizes every slice with the statistics of the whole batch, and its gradient is the gradient
of that whole-batch normalization, as mxnet.gluon.contrib.nn.SyncBatchNorm's is.

How the devices meet. Each device computes its moments (count, mean, M2 per channel); the
devices hand them to each other; each combines all of them (gluon_bn_combine, in device order,
so all get the same bits) and normalizes. The copies between devices are ordinary MXNet
operations recorded by autograd, so the backward pass needs no meeting of its own: the
gradient flows back through the copies to every device's moments.

The meeting happens in Python, before any operation that reads another device's moments is
pushed to MXNet's engine. An operator that waits inside the engine for the other devices
deadlocks on cpu(i) devices: all of them share the CPU's temporary space and random generator,
and MXNet queues every operator that uses one of those behind the earlier ones, whatever its
device. This is why each device's forward pass runs in a thread of its own (`run_on_devices`,
which gluon_bn.train's loop uses; the threads are made once and reused), and why the losses of
all devices go to a single `autograd.backward(losses)`.
"""
import queue
import threading
import weakref
from concurrent.futures import Future, wait

from mxnet import autograd, nd, util
from mxnet.gluon import contrib

from .. import ops
from . import graphs
from ..utils.errors import Error
from ._checks import (OPERATOR_DTYPES, SYNC_DTYPES, check_hyperparameters, check_not_empty,
                      check_operator_dtype)

# Seconds a device waits for the others at a SyncBatchNorm layer before giving up.
TIMEOUT_S = 120.0


class SyncError(Error, RuntimeError):
    """The devices did not all reach a SyncBatchNorm layer."""


class _Meeting:
    """Where the devices of one SyncBatchNorm layer hand each other their moments.

    A device's k-th visit joins round k, so a round is one forward pass of the layer on every
    device, whatever the order in which the threads arrive.
    """
    _all = weakref.WeakSet()
    _lock = threading.Condition()
    _failure = None   # set by abort(): every waiting and arriving device raises it

    def __init__(self, num_devices, name):
        self.num_devices, self.name = num_devices, name
        self._rounds = {}    # round -> {'moments': {device id: moments}, 'taken': n}
        self._visits = {}    # device id -> visits so far
        self._all.add(self)

    def exchange(self, device_id, moments):
        """Hands in this device's moments; returns every device's, ordered by device id."""
        lock = self._lock
        with lock:
            k = self._visits.get(device_id, 0)
            self._visits[device_id] = k + 1
            round_ = self._rounds.setdefault(k, {'moments': {}, 'taken': 0})
            handed_in = round_['moments']
            handed_in[device_id] = moments
            lock.notify_all()
            met = lock.wait_for(
                lambda: _Meeting._failure or len(handed_in) == self.num_devices,
                timeout=TIMEOUT_S)
            if _Meeting._failure:
                raise SyncError(_Meeting._failure)
            if not met:
                came = sorted(handed_in)
                self._rounds.clear()   # this round cannot complete: start afresh
                self._visits.clear()
                raise SyncError(
                    f"{self.name}: waited {TIMEOUT_S:g} s for {self.num_devices} devices and got "
                    f"{len(came)} (cpu ids {came}). In training, run the network on num_devices "
                    f"distinct devices at once, each in its own thread: "
                    f"gluon_bn.run_on_devices(fn, per-device arguments) does it.")
            round_['taken'] += 1
            if round_['taken'] == self.num_devices:
                del self._rounds[k]
            return [handed_in[d] for d in sorted(handed_in)]

    @classmethod
    def abort(cls, reason):
        """Fails every waiting device, and forgets all rounds (they cannot complete)."""
        with cls._lock:
            cls._failure = reason
            for meeting in cls._all:
                meeting._rounds.clear()
                meeting._visits.clear()
            cls._lock.notify_all()

    @classmethod
    def reset(cls):
        with cls._lock:
            cls._failure = None


class _Workers:
    """One long-lived daemon thread per device position, shared by every run_on_devices call.

    A new thread per call leaks: MXNet keeps each thread's C-API state (its
    MXAPIThreadLocalStore entries) until the process exits, so training with two devices grew at
    every step that way (README, SyncBatchNorm). Reused threads keep the memory flat.
    """
    _lock = threading.Lock()      # one run_on_devices call at a time: they share the threads
    _queues = []

    @classmethod
    def run(cls, jobs):
        """Runs jobs[i] in thread i, all at once; returns their futures."""
        while len(cls._queues) < len(jobs):
            jobs_queue = queue.SimpleQueue()
            threading.Thread(target=cls._serve, args=(jobs_queue,), daemon=True,
                             name=f"gluon_bn-device-{len(cls._queues)}").start()
            cls._queues.append(jobs_queue)
        futures = [Future() for _ in jobs]
        for jobs_queue, future, job in zip(cls._queues, futures, jobs):
            jobs_queue.put((future, job))
        return futures

    @staticmethod
    def _serve(jobs_queue):
        while True:
            future, job = jobs_queue.get()
            try:
                future.set_result(job())
            except BaseException as error:   # handed to the caller
                future.set_exception(error)


def run_on_devices(fn, *per_device):
    """fn(*args) for each device's arguments, each in a thread of its own; returns the results
    in order. The threads record (autograd.record) and train exactly when the caller does, in
    the same array API (npx.set_np()).

    This is how a network with SyncBatchNorm runs its forward pass on several devices; a
    failure on one device stops the others and is raised here. The threads live as long as the
    process and serve every call, one call at a time (fn must not call run_on_devices itself).
    Gluon's deferred initialization and the first call of a hybridized block are not
    thread-safe: run the network once (in prediction mode, which changes no statistics) before
    the first call, as train_ch5 does.

    Example::

        with autograd.record():
            losses = run_on_devices(lambda X, y: loss(net(X), y), Xs, ys)
        autograd.backward(losses)
    """
    calls = list(zip(*per_device))
    recording, training = autograd.is_recording(), autograd.is_training()
    numpy_api = util.is_np_shape(), util.is_np_array()   # npx.set_np() is per thread too

    def job(i, args):
        def work():
            autograd.set_recording(recording)   # MXNet's autograd state is per thread
            autograd.set_training(training)
            util.set_np(*numpy_api)
            try:
                return fn(*args)
            except BaseException as error:
                _Meeting.abort(f"stopped: the thread of call {i} failed with "
                               f"{type(error).__name__}: {error}")
                raise
        return work

    with _Workers._lock:
        _Meeting.reset()
        futures = _Workers.run([job(i, args) for i, args in enumerate(calls)])
        try:
            wait(futures)
        except BaseException:   # Ctrl-C here: release the threads waiting at a meeting
            _Meeting.abort("stopped: the caller was interrupted")
            wait(futures)
            raise
    errors = [future.exception() for future in futures]
    # The first failure is the cause; the others are the devices it stopped.
    first = next((e for e in errors if e is not None and not isinstance(e, SyncError)),
                 next((e for e in errors if e is not None), None))
    if first is not None:
        raise first
    return [future.result() for future in futures]


class SyncBatchNorm(contrib.nn.SyncBatchNorm):
    """Batch normalization with statistics over all devices, computed by this library:
    mxnet.gluon.contrib.nn.SyncBatchNorm (a subclass: same constructor, parameters, `_kwargs`
    and repr, so tools that look for nn.BatchNorm or contrib's SyncBatchNorm find it), with its
    own computation.

    Parameters
    ----------
    in_channels : int, default 0
        Number of channels; 0 infers it from the first input.
    num_devices : int, default: the number of GPUs, or 1 (as contrib's, with its warning)
        How many devices share each batch. Every training step must run the layer once on each
        of that many distinct devices, at the same time, each from its own thread
        (`gluon_bn.run_on_devices`, which `gluon_bn.train_ch5` uses), and the losses of all
        devices must go to one `autograd.backward(losses)`.
    momentum, epsilon, center, scale, use_global_stats, beta_initializer, gamma_initializer,
    running_mean_initializer, running_variance_initializer :
        As for nn.BatchNorm (and HybridBatchNorm).

    Inputs:
        - **data**: float32 or float64, channels on axis 1, on cpu(i).

    Outputs:
        - **out**: the same shape. In training, normalized with the mean and biased variance of
          the batch that all devices hold together; every device's running statistics get the
          same update. In prediction (or with use_global_stats), each device uses its running
          statistics and meets no other.

    Unlike contrib's, the layer runs imperatively only when num_devices > 1 (the devices meet in
    Python; see gluon_bn.nn.sync). With num_devices=1 it computes as HybridBatchNorm, and
    hybridizes.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_hyperparameters(type(self).__name__, 'epsilon', self._kwargs['eps'], 'momentum',
                              self._kwargs['momentum'])
        num_devices = self._kwargs['ndev']
        if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
            raise ValueError(f"SyncBatchNorm: num_devices must be a positive int, got "
                             f"{num_devices!r}")
        ops.load()
        self.num_devices = num_devices
        self._meeting = _Meeting(self.num_devices, self.name)

    def hybridize(self, active=True, **kwargs):
        """Hybridizes with num_devices=1 only; with more devices the layer stays imperative."""
        super().hybridize(active and self.num_devices == 1, **kwargs)

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray):
            if x.ndim < 2:
                raise ValueError(f"{self.name}: channel axis 1 is out of range for a {x.ndim}D "
                                 f"input of shape {x.shape}")
            check_not_empty(x, self.name)
            check_operator_dtype(x, self.name, 'mxnet.gluon.contrib.nn.SyncBatchNorm',
                                 SYNC_DTYPES if self.num_devices > 1 else OPERATOR_DTYPES)
        return super().forward(x, *args)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        k = self._kwargs
        settings = dict(eps=k['eps'], momentum=k['momentum'], fix_gamma=k['fix_gamma'])
        batch_stats = autograd.is_training() and not k['use_global_stats']
        if self.num_devices == 1 and F is not nd and graphs.tracing() == graphs.PREDICT:
            # MXNet's own BatchNorm, as nn.BatchNorm's graph predicts (gluon_bn.nn.graphs)
            return ops.mxnet_batch_norm(F, x, gamma, beta, running_mean, running_var,
                                        name='fwd', use_global_stats=k['use_global_stats'],
                                        **settings)
        if self.num_devices == 1 or (F is nd and not batch_stats):
            return ops.batch_norm(F, x, gamma, beta, running_mean, running_var, name='fwd',
                                  use_global_stats=k['use_global_stats'], **settings)
        if F is not nd:
            raise TypeError(f"{self.name}: SyncBatchNorm with num_devices > 1 cannot be part of "
                            f"a hybridized graph (its devices meet in Python); hybridize the "
                            f"blocks around it instead, or use HybridBatchNorm")
        ctx = x.context
        if ctx.device_type != 'cpu':
            raise ValueError(f"{self.name}: SyncBatchNorm runs on cpu(i) devices, got {ctx}")
        # Checked before the meeting, so that the other devices are stopped, not misled.
        if x.shape[1] != gamma.shape[0]:
            raise ValueError(f"{self.name}: input of shape {x.shape} does not have the layer's "
                             f"{gamma.shape[0]} channels on axis 1")
        everyone = self._meeting.exchange(ctx.device_id, ops.moments(F, x))
        stats = ops.combine(F, [m.as_in_context(ctx) for m in everyone])
        return ops.normalize(F, x, gamma, beta, stats, running_mean, running_var, **settings)
