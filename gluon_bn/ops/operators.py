"""Calling gluon_bn's operators: the one place that does, for F = mx.nd or mx.sym (Gluon's F).

The layers of gluon_bn.nn compute through these functions; each hands its inputs to the operator
the way MXNet needs them (through identity where a gradient may be added up; the mode as an
input, or read from a probe inside a graph), in either of MXNet's array APIs (array_api).
"""
import functools
import os

from mxnet import autograd, nd
from mxnet import numpy as mx_np
from mxnet.symbol.numpy import _Symbol as NumpySymbol

_flags = {}


def is_numpy(array):
    """Whether array is of MXNet's NumPy API (mxnet.numpy, npx.set_np()): an ndarray, or a
    symbol while a graph of them is traced."""
    return isinstance(array, (mx_np.ndarray, NumpySymbol))


def mxnet_batch_norm(F, x, *args, **kwargs):
    """MXNet's own BatchNorm operator, in the API of the data x (as nn.BatchNorm's graph calls
    it): where gluon_bn's operator is not the one to run."""
    return (F.npx.batch_norm if is_numpy(x) else F.BatchNorm)(x, *args, **kwargs)


def array_api(call):
    """Lets an entry point take the arrays (and symbols) of MXNet's NumPy API as well as legacy
    ones. mx.library.load offers library operators in mx.nd and mx.sym only, and legacy operators
    refuse NumPy arrays; so the operators get legacy views of them (as_nd_ndarray: the same
    memory and the same autograd entry, so gradients and in-place running statistics reach the
    caller's arrays), and the output comes back in the API of the data, the first array."""
    @functools.wraps(call)
    def wrapper(F, x, *args, **kwargs):
        if not is_numpy(x[0] if isinstance(x, (list, tuple)) else x):
            return call(F, x, *args, **kwargs)

        def legacy(a):
            if isinstance(a, (list, tuple)):
                return [legacy(item) for item in a]
            return a.as_nd_ndarray() if is_numpy(a) else a
        return call(F, legacy(x), *legacy(args), **kwargs).as_np_ndarray()
    return wrapper


def _constant_flag(ctx, training):
    """A known mode as the operator's `training` input, 1 or 0: two constant arrays per device,
    so a call allocates nothing."""
    key = (ctx, bool(training))
    if key not in _flags:
        _flags[key] = nd.full((1,), float(training), ctx=ctx)
    return _flags[key]


# The probe's rows: -PROBE_ROW, 0, PROBE_ROW in every channel (exact in float16 and float32).
PROBE_ROW = 32768.0


def mode_flag(F, gamma, running_mean, running_var):
    """The operator's `training` input in a graph: a probe of the mode, read as the graph runs.

    MXNet tells library operators nothing about the mode, and a hybridized graph is traced once.
    BatchNorm is the one built-in operator that reads the mode without drawing random numbers
    (Dropout draws one, which shifted every later draw of a seeded run; a Python operator can
    hang the process at exit). The probe is MXNet's BatchNorm of the rows -K, 0, K (K = 2^15) in
    every channel, with the layer's own running statistics as its own (BatchNorm's running
    statistics must be graph variables) and momentum 1, which leaves every bit of them as it
    is (a test). Training, it normalizes the rows by their own statistics; predicting, by the
    running ones: the operator (attribute probe=2) computes both and takes the nearer. Six
    small operators: the rows, BatchNorm, BlockGrad.
    """
    zeros = F.zeros_like(gamma)
    rows = F.stack(zeros - PROBE_ROW, zeros, zeros + PROBE_ROW)
    probe = F.BatchNorm(rows, zeros, zeros, running_mean, running_var, eps=1e-5, momentum=1.0,
                        fix_gamma=True, use_global_stats=False, cudnn_off=True)
    return F.BlockGrad(probe)


def _through_identity(F, array):
    """The operators only ever write their gradients; an input whose gradient may have to be
    added up (grad_req='add') reaches them through identity, whose backward honours that.
    Imperatively, that is an array with a gradient buffer of its own. In a graph, it is a
    variable (the graph's input, a parameter), or any input where MXNet may add gradients in
    place (MXNET_EXEC_ENABLE_ADDTO); another operator's output otherwise gets its gradient in a
    buffer of its own, written once, and each identity costs an operator call for nothing."""
    if F is nd:
        needed = array.grad is not None
    else:
        needed = array.get_children() is None or _addto_enabled()
    return F.identity(array) if needed else array


def _addto_enabled():
    return os.environ.get('MXNET_EXEC_ENABLE_ADDTO', '0').strip() not in ('', '0')


@array_api
def batch_norm(F, x, gamma, beta, running_mean, running_var, *, training=None, axis=1,
               eps=1e-5, momentum=0.9, fix_gamma=False, use_global_stats=False, name=None):
    """gluon_bn_batch_norm's output, for F = mx.nd or mx.sym (Gluon's F).

    The running statistics (one value per channel, any shape) are updated in place when
    training. `training`: the mode if the caller knows it; None: autograd's mode imperatively,
    read from the graph as it runs in a graph (mode_flag).
    """
    if training is None and F is nd:   # imperatively the mode is known now
        training = autograd.is_training()
    probe = 2 if training is None else 0
    flag = (mode_flag(F, gamma, running_mean, running_var) if probe
            else _constant_flag(x.context, training))
    return F.gluon_bn_batch_norm(
        _through_identity(F, x), _through_identity(F, gamma), _through_identity(F, beta),
        running_mean, running_var, flag, axis=axis, eps=eps, momentum=momentum,
        fix_gamma=fix_gamma, use_global_stats=use_global_stats, probe=probe, name=name)[0]


@array_api
def conv(F, x, weight, bias):
    """gluon_bn_conv: one input channel, 5x5 windows, stride 1, no padding (FirstConv2D)."""
    return F.gluon_bn_conv(_through_identity(F, x), _through_identity(F, weight),
                           _through_identity(F, bias))


@array_api
def moments(F, x, axis=1):
    """SyncBatchNorm's per-device moments: (3, C) float64 rows count, mean, M2."""
    return F.gluon_bn_moments(_through_identity(F, x), axis=axis)


@array_api
def combine(F, moments_of_every_device):
    """The whole batch's (2, C) mean and biased variance, the same bits on every device."""
    return F.gluon_bn_combine(*moments_of_every_device,
                              num_devices=len(moments_of_every_device))


@array_api
def normalize(F, x, gamma, beta, stats, running_mean, running_var, *, axis=1, eps=1e-5,
              momentum=0.9, fix_gamma=False):
    """SyncBatchNorm's output from the combined statistics; the running ones updated in place."""
    return F.gluon_bn_normalize(
        _through_identity(F, x), _through_identity(F, gamma), _through_identity(F, beta), stats,
        running_mean, running_var, axis=axis, eps=eps, momentum=momentum, fix_gamma=fix_gamma)
