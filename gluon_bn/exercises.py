"""The batch-norm chapter's five exercises as experiments, plus the picture the chapter describes
but never shows (how a layer's inputs shift during training, with and without batch norm).

Each exercise is a function returning its measurements as plain data (lists, dicts, floats):
scripts/exercises.py turns them into figures and a report whose answers follow from the numbers.
Every training run is seeded and described by a key; `Runs` keeps finished runs in a JSON file,
so an interrupted sweep starts again where it stopped.
"""
import contextlib
import io
import json
import math
import os
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from . import files
from .conv import FirstConv2D
from .data import ArrayLoader
from .hybrid import HybridBatchNorm
from .train import hybridize, train_ch5

BATCH_SIZE = 256
PLACEMENTS = ('after_affine', 'after_activation', 'conv_only', 'dense_only', 'none')


def lenet(placement='after_affine', use_bias=True, **bn_kwargs):
    """The chapter's LeNet with batch norm where `placement` says: 'after_affine' (the book's:
    between each conv/dense layer and its sigmoid), 'after_activation' (after each sigmoid),
    'conv_only', 'dense_only', or 'none' (the lenet chapter's network). `use_bias` for the layers
    before a batch norm; `bn_kwargs` go to every HybridBatchNorm (use_global_stats=True, ...).
    Layer 0's output is the first layer's pre-activation."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    conv_bn = placement in ('after_affine', 'after_activation', 'conv_only')
    dense_bn = placement in ('after_affine', 'after_activation', 'dense_only')
    net = nn.HybridSequential()

    def block(layer, with_bn):
        if with_bn and placement == 'after_activation':
            net.add(layer, nn.Activation('sigmoid'), HybridBatchNorm(**bn_kwargs))
        elif with_bn:
            net.add(layer, HybridBatchNorm(**bn_kwargs), nn.Activation('sigmoid'))
        else:
            net.add(layer, nn.Activation('sigmoid'))

    bias = use_bias or placement == 'none'
    block(FirstConv2D(6, use_bias=bias or not conv_bn), conv_bn)
    net.add(nn.MaxPool2D(pool_size=2, strides=2))
    block(nn.Conv2D(16, kernel_size=5, use_bias=bias or not conv_bn), conv_bn)
    net.add(nn.MaxPool2D(pool_size=2, strides=2))
    block(nn.Dense(120, use_bias=bias or not dense_bn), dense_bn)
    block(nn.Dense(84, use_bias=bias or not dense_bn), dense_bn)
    net.add(nn.Dense(10))
    return net


def build(seed, **kwargs):
    mx.random.seed(seed)
    net = lenet(**kwargs)
    net.initialize(init=init.Xavier())
    return net


def learned_count(net, shape=(1, 1, 28, 28)):
    """The parameters training changes (running statistics left out)."""
    net(nd.zeros(shape))
    return int(sum(np.prod(p.shape) for p in net.collect_params().values()
                   if 'running' not in p.name))


class Data:
    """The training subset and the test set, as ArrayLoaders."""

    def __init__(self, train, test, train_size=None):
        (train_x, train_y), (test_x, test_y) = train, test
        self.train = ArrayLoader(train_x[:train_size], train_y[:train_size], BATCH_SIZE, True)
        self.test = ArrayLoader(test_x, test_y, BATCH_SIZE, False)
        self.probe = nd.array(test_x[:BATCH_SIZE, None], dtype='float32') / 255


def fit(net, data, epochs, lr, seed, after_epoch=None):
    """train_ch5 with SGD at `lr`: the per-epoch history (loss, train_acc, test_acc). A loss
    that is no longer finite stops the run: it has diverged."""
    mx.random.seed(seed)
    hybridize(net)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    history = []
    for epoch in range(epochs):
        with contextlib.redirect_stdout(io.StringIO()):
            record, = train_ch5(net, data.train, data.test, BATCH_SIZE, trainer, mx.cpu(),
                                epoch + 1, start_epoch=epoch)
        record = {k: float(record[k]) for k in ('loss', 'train_acc', 'test_acc')}
        history.append(record)
        if after_epoch:
            after_epoch(net, epoch)
        if not math.isfinite(record['loss']):
            break
    return history


class Runs:
    """Finished runs by key, kept with the settings they ran with in a JSON file written
    atomically after each run: a sweep that is interrupted starts again at the first run it had
    not finished. A file from other settings is refused, not mixed in."""

    def __init__(self, path=None, settings=None, progress=None):
        self.path, self.settings, self.done = path, settings or {}, {}
        self.progress = progress or (lambda message: print(message, flush=True))
        if path and os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            if saved.get('settings') != self.settings:
                raise ValueError(f"{path} holds runs made with other settings "
                                 f"({saved.get('settings')}): choose another folder, or delete "
                                 f"it to start again")
            self.done = saved['runs']

    def get(self, key, run):
        if key in self.done:
            self.progress(f"  {key}: done before, kept")
            return self.done[key]
        start = time.time()
        self.done[key] = run()
        self.progress(f"  {key}: {time.time() - start:.1f} s")
        if self.path:
            text = json.dumps({'settings': self.settings, 'runs': self.done}, indent=1)
            files.write_atomically(self.path, (text + '\n').encode())
        return self.done[key]


# ---- the exercises -----------------------------------------------------------------------------

def bias_before_bn(data, runs, epochs, lr=1.0, seed=0):
    """1. The conv/dense layers before batch norm, with and without their bias: accuracy curves,
    parameter counts, and each layer's bias gradient against its weight gradient (max |db| /
    max |dW| on one batch): batch norm subtracts the batch mean, so a bias before it has no
    effect, and its gradient is zero up to rounding; without batch norm it is not."""
    result = {}
    for use_bias in (True, False):
        key = f"1/bias={use_bias}"
        result[key] = runs.get(key, lambda: {
            'history': fit(build(seed, use_bias=use_bias), data, epochs, lr, seed),
            'parameters': learned_count(build(seed, use_bias=use_bias))})
    result['gradient ratio'] = {name: bias_gradient_ratio(placement, data, seed)
                                for name, placement in (('with BN', 'after_affine'),
                                                        ('without BN', 'none'))}
    return result


def bias_gradient_ratio(placement, data, seed):
    """max |d loss / d bias| / max |d loss / d weight| of the four conv/dense layers that feed a
    sigmoid (or a batch norm), on one training batch of the freshly built network."""
    net = build(seed, placement=placement)
    X, y = next(iter(data.train))
    with autograd.record():
        total = gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y).sum()
    total.backward()
    layers = [layer for layer in net if isinstance(layer, (nn.Conv2D, nn.Dense))][:4]
    return [float(np.abs(layer.bias.grad().asnumpy()).max()
                  / np.abs(layer.weight.grad().asnumpy()).max()) for layer in layers]


def learning_rates(data, runs, epochs, rates, seed=0):
    """2. Final test accuracy against the learning rate, LeNet without and with batch norm."""
    result = {}
    for placement in ('none', 'after_affine'):
        for lr in rates:
            key = f"2/{placement}/lr={lr:g}"
            result[key] = runs.get(key, lambda: fit(build(seed, placement=placement), data,
                                                    epochs, lr, seed))
    return result


def placements(data, runs, epochs, lr=1.0, seed=0):
    """3. Where batch norm goes: accuracy curves of every placement."""
    return {p: runs.get(f"3/{p}", lambda: fit(build(seed, placement=p), data, epochs, lr, seed))
            for p in PLACEMENTS}


def frozen_gamma_beta(data, runs, epochs, lr=1.0, seed=0):
    """4. gamma and beta learned, or frozen at 1 and 0 (grad_req='null'): accuracy curves, and
    where gamma and beta end."""
    result = {}
    for frozen in (False, True):
        def run():
            net = build(seed)
            if frozen:
                for name, param in net.collect_params().items():
                    if name.endswith('gamma') or name.endswith('beta'):
                        param.grad_req = 'null'
            history = fit(net, data, epochs, lr, seed)
            ends = {kind: [float(np.abs(p.data().asnumpy() - start).max())
                           for name, p in net.collect_params().items() if name.endswith(kind)]
                    for kind, start in (('gamma', 1.0), ('beta', 0.0))}
            return {'history': history, 'moved': ends}
        result[f"4/frozen={frozen}"] = runs.get(f"4/frozen={frozen}", run)
    return result


def global_statistics(data, runs, epochs, lr=1.0, seed=0):
    """5. use_global_stats=True while training: every batch is normalized with the running
    statistics, which then never change (MXNet updates them only from batch statistics), so
    the layers stay the affine map they started as. Accuracy curves against the usual
    batch norm and against none, and how far the running statistics moved."""
    result = {}
    for name, kwargs in (('batch statistics', {}), ('global statistics',
                                                    {'use_global_stats': True}),
                         ('no batch norm', {'placement': 'none'})):
        def run():
            net = build(seed, **kwargs)
            history = fit(net, data, epochs, lr, seed)
            moved = [float(np.abs(p.data().asnumpy() - (1.0 if 'var' in k else 0.0)).max())
                     for k, p in net.collect_params().items() if 'running' in k]
            return {'history': history, 'running statistics moved': max(moved, default=0.0)}
        result[f"5/{name}"] = runs.get(f"5/{name}", run)
    return result


QUANTILES = (5, 25, 50, 75, 95)


def input_shift(data, runs, epochs, lr=1.0, seed=0):
    """The picture the chapter talks about: quantiles of the values entering the first sigmoid
    (a fixed test batch), after each epoch, with and without batch norm."""
    result = {}
    for placement in ('after_affine', 'none'):
        def run():
            net = build(seed, placement=placement)
            shown = 2 if placement == 'after_affine' else 1   # conv (+ BN) before the sigmoid
            bands = [quantiles(net, data.probe, shown)]

            def after_epoch(net, epoch):
                bands.append(quantiles(net, data.probe, shown))
            history = fit(net, data, epochs, lr, seed, after_epoch)
            return {'history': history, 'quantiles': bands}
        result[f"shift/{placement}"] = runs.get(f"shift/{placement}", run)
    return result


def quantiles(net, X, layers):
    """The QUANTILES of the first `layers` layers' output on X, as in prediction."""
    h = X
    for layer in list(net)[:layers]:
        h = layer(h)
    return [float(q) for q in np.percentile(h.asnumpy(), QUANTILES)]
