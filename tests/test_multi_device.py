"""Data parallelism: a batch split between devices trains like the whole batch on one device.
MXNet treats cpu(0) and cpu(1) as distinct devices, so this runs without GPUs."""
import contextlib
import io

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd

from gluon_bn import evaluate_accuracy, lenet_bn, train_ch5
from gluon_bn.train import split

TWO_CPUS = [mx.cpu(0), mx.cpu(1)]


def batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return (nd.array(rng.uniform(size=(n, 1, 28, 28))),
            nd.array(rng.integers(0, 10, n), dtype='int32'))


def one_step(net, ctxs, X, y, trainer=None):
    trainer = trainer or gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    with autograd.record():
        ls = [loss(net(X_part), y_part).sum()
              for X_part, y_part in zip(split(X, ctxs), split(y, ctxs))]
    for l in ls:
        l.backward()
    trainer.step(X.shape[0])


def twins(bn, tmp_path):
    first = lenet_bn(bn)
    first.initialize(init=init.Xavier())
    first(nd.zeros((1, 1, 28, 28)))
    first.save_parameters(str(tmp_path / 'start.params'))
    nets = []
    for ctxs in ([mx.cpu(0)], TWO_CPUS):
        net = lenet_bn(bn)
        net.load_parameters(str(tmp_path / 'start.params'), ctx=ctxs)
        nets.append(net)
    return nets


def test_two_devices_take_the_same_step_as_one_without_bn(tmp_path):
    X, y = batch()
    one, two = twins('none', tmp_path)
    one_step(one, [mx.cpu(0)], X, y)
    one_step(two, TWO_CPUS, X, y)
    for (name, p1), p2 in zip(one.collect_params().items(), two.collect_params().values()):
        for ctx in TWO_CPUS:   # every device holds the same, updated copy
            # The gradients are summed in another order: rounding differences only.
            np.testing.assert_allclose(p2.data(ctx).asnumpy(), p1.data().asnumpy(),
                                       rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize('bn', ['gluon', 'hybrid'])
def test_batch_norm_statistics_are_per_device_by_default(bn, tmp_path):
    _, two = twins(bn, tmp_path)
    trainer = gluon.Trainer(two.collect_params(), 'sgd', {'learning_rate': 0.5})
    # The Trainer's first step sets up its store and copies every parameter, the running
    # statistics too, from the first device to the others; after that each device keeps its own.
    for seed in (0, 1):
        X, y = batch(seed=seed)
        X[32:] *= 3   # the second device sees differently scaled data
        one_step(two, TWO_CPUS, X, y, trainer)
    running = [p for name, p in two.collect_params().items() if 'running_var' in name][0]
    per_device = [running.data(ctx).asnumpy() for ctx in TWO_CPUS]
    assert np.abs(per_device[0] - per_device[1]).max() > 1e-3


def test_train_ch5_on_two_devices(tmp_path):
    net = lenet_bn('hybrid')
    net.initialize(ctx=TWO_CPUS, init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.9})
    data = [batch(64, seed) for seed in range(4)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        history = train_ch5(net, data, data[:2], 64, trainer, TWO_CPUS, 2)
    lines = out.getvalue().splitlines()
    assert lines[0] == 'training on [cpu(0), cpu(1)]' and len(lines) == 3
    assert history[-1]['test_acc'] == evaluate_accuracy(data[:2], net, TWO_CPUS)
    assert np.isfinite(history[-1]['loss'])
