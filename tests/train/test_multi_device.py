"""Data parallelism: a batch split between devices trains like the whole batch on one device;
with SyncBatchNorm, the loop runs the devices in threads of their own and they share the whole
batch's statistics. MXNet treats cpu(0) and cpu(1) as distinct devices, so this runs without
GPUs."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd

from gluon_bn import evaluate_accuracy, lenet_bn, train_ch5
from gluon_bn.train.loop import split

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


def test_train_ch5_on_two_devices(capsys):
    net = lenet_bn('hybrid')
    net.initialize(ctx=TWO_CPUS, init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.9})
    data = [batch(64, seed) for seed in range(4)]
    history = train_ch5(net, data, data[:2], 64, trainer, TWO_CPUS, 2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'training on [cpu(0), cpu(1)]' and len(lines) == 3
    assert history[-1]['test_acc'] == evaluate_accuracy(data[:2], net, TWO_CPUS)
    assert np.isfinite(history[-1]['loss'])


def test_train_ch5_synchronizes_two_devices(capsys):
    rng = np.random.default_rng(1)
    data = [(nd.array(rng.uniform(size=(32, 1, 28, 28))),
             nd.array(rng.integers(0, 10, 32), dtype='int32')) for _ in range(3)]
    net = lenet_bn('sync', num_devices=2)
    net.initialize(ctx=TWO_CPUS, init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.9})
    history = train_ch5(net, data, data[:1], 32, trainer, TWO_CPUS, 2)
    assert capsys.readouterr().out.splitlines()[0] == 'training on [cpu(0), cpu(1)]'
    assert np.isfinite(history[-1]['loss'])
    for name, p in net.collect_params().items():
        if 'running' in name:   # one whole-batch statistic, held by both devices
            assert np.array_equal(p.data(mx.cpu(0)).asnumpy(), p.data(mx.cpu(1)).asnumpy())


def test_a_batch_smaller_than_the_device_count_is_left_out_once_said(capsys):
    """257 training images in batches of 256 end in a batch of one: training goes on without it."""
    rng = np.random.default_rng(2)
    data = [(nd.array(rng.uniform(size=(n, 1, 28, 28))), nd.array(rng.integers(0, 10, n),
                                                                  dtype='int32'))
            for n in (1, 8, 1)]   # first and last: one sample for two devices
    net = lenet_bn('sync', num_devices=2)
    net.initialize(ctx=TWO_CPUS, init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.9})
    history = train_ch5(net, data, data[1:2], 8, trainer, TWO_CPUS, 2)
    notes = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith('train_ch5:')]
    assert notes == ["train_ch5: a batch of 1 sample(s) is left out of training: each of the 2 "
                     "devices that synchronize batch norm needs at least one"]
    assert len(history) == 2 and all(np.isfinite(r['loss']) for r in history)


def test_train_ch5_refuses_a_device_count_the_layers_do_not_expect():
    net = lenet_bn('sync', num_devices=4)
    net.initialize(ctx=TWO_CPUS)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.9})
    with pytest.raises(ValueError, match='synchronizes 4 devices, but the network trains on 2'):
        train_ch5(net, [], [], 32, trainer, TWO_CPUS, 1)
