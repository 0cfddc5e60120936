"""Run batch-norm implementations on one case and measure them against the NumPy reference.

A case is a few training steps (forward, then backward with a given head gradient) followed by
predictions on a fresh batch and on a single sample. Every implementation is driven through the
same small adapter, so a comparison is a loop over adapters:

    case = make_case((256, 6, 24, 24), 'float32')
    truth = reference_result(case)
    for name, adapter in ADAPTERS.items():
        print(name, max_errors(run(adapter, case), truth))

`run(..., api='np')` runs the same case in MXNet's NumPy API (npx.set_np(): mxnet.numpy arrays,
parameters and graphs), where every gluon_bn path works too.
"""
import contextlib
import threading
from dataclasses import dataclass, field
from typing import List

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from ..nn import BatchNorm, HybridBatchNorm, batch_norm, batch_norm2D, run_on_devices
from ..nn.scratch import param_shape
from . import reference

# Extended precision where the platform has it (x86-64: 64-bit mantissa, 11 bits more than
# float64): a float64 reference rounds as much as the float64 code it is meant to judge.
ACC = np.longdouble

APIS = ('nd', 'np')   # MXNet's legacy NDArray API, and its NumPy API


@contextlib.contextmanager
def array_api(api):
    """The block runs in MXNet's legacy API ('nd') or in its NumPy API ('np', as after
    npx.set_np()), and the calling thread's setting is put back afterwards."""
    if api not in APIS:
        raise ValueError(f"api must be one of {', '.join(APIS)}, got {api!r}")
    with mx.util.np_shape(api == 'np'), mx.util.np_array(api == 'np'):
        yield


def array(values, dtype, ctx=None):
    """An array of the API the caller runs in (array_api)."""
    make = mx.np.array if mx.util.is_np_array() else nd.array
    return make(values, dtype=dtype, ctx=ctx)


FIELDS = ('y', 'dx', 'dgamma', 'dbeta', 'running_mean', 'running_var',
          'y_predict', 'y_predict_one')


@dataclass
class Case:
    dtype: str
    eps: float
    momentum: float
    gamma: np.ndarray                     # (C,)
    beta: np.ndarray                      # (C,)
    batches: List[np.ndarray] = field(default_factory=list)
    head_grads: List[np.ndarray] = field(default_factory=list)
    x_predict: np.ndarray = None
    x_predict_one: np.ndarray = None

    @property
    def channels(self):
        return self.gamma.shape[0]


def make_case(shape, dtype, eps=1e-5, momentum=0.9, steps=3, seed=0):
    """Batches shaped like pre-activations: each channel with its own offset and scale."""
    rng = np.random.default_rng(seed)
    C = shape[1]
    per_channel = (1, C) + (1,) * (len(shape) - 2)
    offset = rng.uniform(-3, 3, C).reshape(per_channel)
    scale = rng.uniform(0.2, 4, C).reshape(per_channel)

    def batch(n):
        return (rng.standard_normal((n,) + tuple(shape[1:])) * scale + offset).astype(dtype)

    return Case(dtype=dtype, eps=eps, momentum=momentum,
                gamma=rng.uniform(0.5, 2, C).astype(dtype), beta=rng.normal(size=C).astype(dtype),
                batches=[batch(shape[0]) for _ in range(steps)],
                head_grads=[rng.standard_normal(shape).astype(dtype) for _ in range(steps)],
                x_predict=batch(shape[0]), x_predict_one=batch(1))


def reference_result(case, dtype=ACC):
    """What every implementation should produce for `case`, computed by `reference` in `dtype`."""
    running_mean = np.zeros(case.channels, dtype)
    running_var = np.ones(case.channels, dtype)
    for x, dy in zip(case.batches, case.head_grads):
        y, mean, var = reference.train_forward(x, case.gamma, case.beta, case.eps, dtype)
        dx, dgamma, dbeta = reference.train_backward(dy, x, case.gamma, case.eps, dtype)
        running_mean = reference.update_running(running_mean, mean, case.momentum, dtype)
        running_var = reference.update_running(running_var, var, case.momentum, dtype)

    def predict(x):
        return reference.predict(x, case.gamma, case.beta, running_mean, running_var,
                                 case.eps, dtype)

    return dict(y=y, dx=dx, dgamma=dgamma, dbeta=dbeta, running_mean=running_mean,
                running_var=running_var, y_predict=predict(case.x_predict),
                y_predict_one=predict(case.x_predict_one))


class LayerAdapter:
    """A Gluon layer: its parameters hold gamma, beta and the running statistics."""
    stat_names = ('running_mean', 'running_var')

    def __init__(self, case):
        ndim = case.batches[0].ndim
        self.layer = self.make_layer(case, ndim)
        self.layer.initialize()
        self.layer.cast(case.dtype)
        shape = self.layer.gamma.shape
        self.layer.gamma.set_data(array(case.gamma.reshape(shape), case.dtype))
        self.layer.beta.set_data(array(case.beta.reshape(shape), case.dtype))

    def train(self, X):
        return self.layer(X)

    predict = train

    def grads(self):
        return self.layer.gamma.grad(), self.layer.beta.grad()

    def stats(self):
        return tuple(getattr(self.layer, name).data() for name in self.stat_names)


class GluonBatchNorm(LayerAdapter):
    """mxnet.gluon.nn.BatchNorm, the built-in this library is measured against."""

    @staticmethod
    def make_layer(case, ndim):
        return nn.BatchNorm(momentum=case.momentum, epsilon=case.eps, in_channels=case.channels)


class ScratchBlock(LayerAdapter):
    """gluon_bn.BatchNorm, the book's Block, on its default fast path."""
    stat_names = ('moving_mean', 'moving_var')
    fast = True

    @classmethod
    def make_layer(cls, case, ndim):
        return BatchNorm(case.channels, num_dims=ndim, eps=case.eps, momentum=case.momentum,
                         fast=cls.fast)


class TextbookBlock(ScratchBlock):
    """gluon_bn.BatchNorm(fast=False): the book's batch_norm, differentiated by autograd."""
    fast = False


class HybridAdapter(LayerAdapter):
    """gluon_bn.HybridBatchNorm, imperative."""

    @staticmethod
    def make_layer(case, ndim):
        return HybridBatchNorm(momentum=case.momentum, epsilon=case.eps,
                               in_channels=case.channels)


class HybridizedAdapter(HybridAdapter):
    """gluon_bn.HybridBatchNorm, hybridized with static memory and shapes."""

    def __init__(self, case):
        super().__init__(case)
        self.layer.hybridize(static_alloc=True, static_shape=True)


class ScratchFunction:
    """gluon_bn.batch_norm, carrying the moving statistics it returns from step to step."""

    @staticmethod
    def param_shape(case):
        return param_shape(case.channels, case.batches[0].ndim)

    def __init__(self, case):
        shape = self.param_shape(case)
        self.case = case
        self.gamma = array(case.gamma.reshape(shape), case.dtype)
        self.beta = array(case.beta.reshape(shape), case.dtype)
        self.gamma.attach_grad()
        self.beta.attach_grad()
        self.moving_mean = array(np.zeros(shape), case.dtype)
        self.moving_var = array(np.ones(shape), case.dtype)

    def _call(self, X):
        return batch_norm(X, self.gamma, self.beta, self.moving_mean, self.moving_var,
                          self.case.eps, self.case.momentum)

    def train(self, X):
        Y, self.moving_mean, self.moving_var = self._call(X)
        return Y

    def predict(self, X):
        return self._call(X)[0]

    def grads(self):
        return self.gamma.grad, self.beta.grad

    def stats(self):
        return self.moving_mean, self.moving_var


class TutorialFunction(ScratchFunction):
    """gluon_bn.batch_norm2D on its default fast path: (C,) parameters, statistics in place."""
    fast = True

    @staticmethod
    def param_shape(case):
        return (case.channels,)

    def _call(self, X, is_training):
        return batch_norm2D(X, self.gamma, self.beta, is_training, self.moving_mean,
                            self.moving_var, self.case.eps, self.case.momentum, fast=self.fast)

    def train(self, X):
        return self._call(X, True)

    def predict(self, X):
        return self._call(X, False)


class TextbookTutorialFunction(TutorialFunction):
    """gluon_bn.batch_norm2D(fast=False): the tutorial's formulation under autograd."""
    fast = False


ADAPTERS = {'nn.BatchNorm': GluonBatchNorm, 'BatchNorm': ScratchBlock,
            'BatchNorm(fast=False)': TextbookBlock, 'HybridBatchNorm': HybridAdapter,
            'HybridBatchNorm hybridized': HybridizedAdapter,
            'batch_norm': ScratchFunction, 'batch_norm2D': TutorialFunction,
            'batch_norm2D(fast=False)': TextbookTutorialFunction}


def run(adapter, case, ctx=None, api='nd'):
    """Train `adapter(case)` for the case's steps on ctx (default: the current context), then
    predict, in MXNet's legacy API or its NumPy API (`api`, see array_api). Returns FIELDS as
    NumPy arrays."""
    with ctx or mx.context.current_context(), array_api(api):   # every array is made there
        return _run(adapter, case)


def _run(adapter, case):
    impl = adapter(case)
    for x, dy in zip(case.batches, case.head_grads):
        X = array(x, case.dtype)
        X.attach_grad()
        with autograd.record():
            Y = impl.train(X)
        Y.backward(array(dy, case.dtype))
    dgamma, dbeta = impl.grads()
    running_mean, running_var = impl.stats()
    result = dict(y=Y, dx=X.grad, dgamma=dgamma, dbeta=dbeta, running_mean=running_mean,
                  running_var=running_var,
                  y_predict=impl.predict(array(case.x_predict, case.dtype)),
                  y_predict_one=impl.predict(array(case.x_predict_one, case.dtype)))
    # Parameters come back as (C,), whatever shape the implementation keeps them in.
    return {k: v.asnumpy().reshape(-1) if k in ('dgamma', 'dbeta', 'running_mean',
                                                'running_var') else v.asnumpy()
            for k, v in result.items()}


def max_errors(result, truth):
    """Largest absolute difference per field, computed in extended precision."""
    return {k: float(np.max(np.abs(result[k].astype(ACC) - truth[k]))) for k in FIELDS}


def term_magnitudes(case, truth, dtype=ACC):
    """For each field, the size of the terms it is computed from.

    Rounding errors are relative to these, not to the result: where terms cancel (x - mean in a
    channel whose spread is tiny next to its mean; the three terms of dx, which nearly cancel for a
    batch of 2) a result can be far smaller than its terms, and every float implementation loses
    the same bits. A field's error bound is then c * unit roundoff * its term magnitude.
    """
    def per_channel(v, x):
        return np.asarray(v, dtype).reshape((1, -1) + (1,) * (x.ndim - 2))

    def x_hat_terms(x, mean, var):
        """(|x| + |mean|) / sqrt(var + eps): the size of x_hat's terms, before x - mean."""
        inv_std = 1 / np.sqrt(per_channel(var, x) + dtype(case.eps))
        return (np.abs(x.astype(dtype)) + np.abs(per_channel(mean, x))) * inv_std, inv_std

    def y_terms(x, mean, var):
        terms = np.abs(per_channel(case.gamma, x)) * x_hat_terms(x, mean, var)[0]
        return float(np.max(terms + np.abs(per_channel(case.beta, x))))

    x, dy = case.batches[-1], np.abs(case.head_grads[-1].astype(dtype))
    _, mean, var = reference.train_forward(x, case.gamma, case.beta, case.eps, dtype)
    x_hat, inv_std = x_hat_terms(x, mean, var)
    axes = (0,) + tuple(range(2, x.ndim))
    return dict(
        y=y_terms(x, mean, var),
        dx=float(np.max(dy * np.abs(per_channel(case.gamma, x)) * inv_std)
                 * (1 + np.max(x_hat) ** 2)),
        dgamma=float(np.max((dy * x_hat).sum(axis=axes))),
        dbeta=float(np.max(dy.sum(axis=axes))),
        running_mean=float(np.max(np.abs(truth['running_mean'])) + np.max(np.abs(x))),
        running_var=float(np.max(truth['running_var']) + np.max(x.astype(dtype) ** 2)),
        y_predict=y_terms(case.x_predict, truth['running_mean'], truth['running_var']),
        y_predict_one=y_terms(case.x_predict_one, truth['running_mean'], truth['running_var']))


# ---- Several devices: one case's batches split between them --------------------------------

def run_split(make_layer, case, ctxs, drive, api='nd'):
    """Train a synchronized layer on `case`'s batches split between `ctxs`, then predict on the
    first device. Returns FIELDS as for `run`, where y and dx are the devices' parts put back
    together, dgamma and dbeta are summed over the devices (what the Trainer applies), and the
    running statistics and predictions are the first device's; plus 'per_device': every
    device's running statistics, which must all be equal.

    drive: 'joint' runs the devices' forward passes in threads (gluon_bn.run_on_devices) and
    one backward for all of them, as gluon_bn.SyncBatchNorm requires; 'per-thread' gives each
    device a thread for its forward and its backward, as contrib's SyncBatchNorm needs on cpu(i).
    """
    with array_api(api):
        return _run_split(make_layer, case, ctxs, drive)


def _run_split(make_layer, case, ctxs, drive):
    layer = make_layer(case)
    layer.initialize(ctx=ctxs)
    layer.cast(case.dtype)
    layer.gamma.set_data(array(case.gamma, case.dtype))
    layer.beta.set_data(array(case.beta, case.dtype))

    def parts(values):
        return gluon.utils.split_and_load(array(values, case.dtype), ctxs,
                                          even_split=False)

    for x, dy in zip(case.batches, case.head_grads):
        Xs, dYs = parts(x), parts(dy)
        for X in Xs:
            X.attach_grad()
        if drive == 'joint':
            with autograd.record():
                Ys = run_on_devices(layer, Xs)
            autograd.backward(Ys, dYs)
        else:
            Ys = [None] * len(ctxs)

            def step(i):
                with autograd.record():
                    Ys[i] = layer(Xs[i])
                Ys[i].backward(dYs[i])
                Xs[i].grad.wait_to_read()

            threads = [threading.Thread(target=step, args=(i,)) for i in range(len(ctxs))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def total(param):
        return sum(param.grad(ctx).asnumpy().astype(ACC) for ctx in ctxs)

    def first(values):
        return layer(array(values, case.dtype, ctxs[0])).asnumpy()

    return dict(y=np.concatenate([Y.asnumpy() for Y in Ys]),
                dx=np.concatenate([X.grad.asnumpy() for X in Xs]),
                dgamma=total(layer.gamma), dbeta=total(layer.beta),
                running_mean=layer.running_mean.data(ctxs[0]).asnumpy(),
                running_var=layer.running_var.data(ctxs[0]).asnumpy(),
                y_predict=first(case.x_predict), y_predict_one=first(case.x_predict_one),
                per_device=[(layer.running_mean.data(ctx).asnumpy(),
                             layer.running_var.data(ctx).asnumpy()) for ctx in ctxs])
