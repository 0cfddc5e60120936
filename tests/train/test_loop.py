"""LeNet-BN, the d2l-style training loop against d2lzh's own, and the one training recipe."""
import re

import d2lzh
import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, init, nd
from mxnet.gluon import nn

import gluon_bn
from gluon_bn import FirstConv2D
from gluon_bn.train import BN_CHOICES, evaluate_accuracy, lenet_bn, train_ch5
from gluon_bn.train.loop import hybridize


def tiny_data(n, seed):
    """Batches shaped like Fashion-MNIST's: class-dependent blobs, so the net can learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int32)
    images = rng.uniform(0, 0.3, (n, 1, 28, 28)).astype(np.float32)
    for i, label in enumerate(labels):
        images[i, 0, 2 * label:2 * label + 8, 4:24] += 0.7
    return [(nd.array(images[s:s + 64]), nd.array(labels[s:s + 64], dtype='int32'))
            for s in range(0, n, 64)]


def twin_nets(bn, tmp_path):
    """Two LeNets with the same starting parameters."""
    first = lenet_bn(bn)
    first.initialize(init=init.Xavier())
    first(nd.zeros((1, 1, 28, 28)))
    first.save_parameters(str(tmp_path / 'start.params'))
    second = lenet_bn(bn)
    second.load_parameters(str(tmp_path / 'start.params'))
    return first, second


def printed(train, net, train_iter, test_iter, capsys):
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.9})
    capsys.readouterr()
    result = train(net, train_iter, test_iter, 64, trainer, mx.cpu(), 3)
    return capsys.readouterr().out.splitlines(), result


@pytest.mark.parametrize('bn', ['scratch', 'gluon'])
def test_train_ch5_prints_d2lzhs_lines(bn, tmp_path, capsys):
    train_iter, test_iter = tiny_data(640, seed=0), tiny_data(256, seed=1)
    ours_net, theirs_net = twin_nets(bn, tmp_path)
    ours, history = printed(train_ch5, ours_net, train_iter, test_iter, capsys)
    theirs, _ = printed(d2lzh.train_ch5, theirs_net, train_iter, test_iter, capsys)
    def untimed(lines):
        return [re.sub(r'time \d+\.\d sec', 'time _ sec', line) for line in lines]

    assert untimed(ours) == untimed(theirs)
    assert ours[0] == 'training on cpu(0)' and len(ours) == 4
    assert re.fullmatch(r'epoch 3, loss \d\.\d{4}, train acc \d\.\d{3}, test acc \d\.\d{3}, '
                        r'time \d+\.\d sec', ours[3])
    # The history holds the printed figures, unrounded, and the net learned.
    assert [f"{r['loss']:.4f}" for r in history] == re.findall(r'loss (\S+),', '\n'.join(ours))
    assert history[-1]['test_acc'] > 0.5
    assert history[-1]['test_acc'] == evaluate_accuracy(test_iter, ours_net, mx.cpu())


def test_lenet_bn_places_bn_between_each_affine_layer_and_its_sigmoid():
    def layers(net):   # gluon_bn's FirstConv2D is an nn.Conv2D
        return ['Conv2D' if isinstance(layer, nn.Conv2D) else type(layer).__name__
                for layer in net]

    affine = ['Conv2D', 'Conv2D', 'Dense', 'Dense']
    for bn, bn_type in (('scratch', 'BatchNorm'), ('gluon', 'BatchNorm'),
                        ('hybrid', 'HybridBatchNorm'), ('sync', 'SyncBatchNorm')):
        names = layers(lenet_bn(bn))
        assert [names[i] for i, n in enumerate(names) if n in ('Conv2D', 'Dense')][:4] == affine
        for i, name in enumerate(names[:-1]):
            if name in ('Conv2D', 'Dense'):
                assert names[i + 1:i + 3] == [bn_type, 'Activation']
    assert all(isinstance(lenet_bn(bn)[0], FirstConv2D) for bn in BN_CHOICES)
    assert isinstance(lenet_bn('scratch')[1], gluon_bn.BatchNorm)
    assert isinstance(lenet_bn('gluon')[1], nn.BatchNorm)
    assert isinstance(lenet_bn('hybrid')[1], gluon_bn.HybridBatchNorm)
    assert lenet_bn('sync', num_devices=2)[1].num_devices == 2
    assert not any('BatchNorm' in name for name in layers(lenet_bn('none')))
    for bn in ('scratch', 'gluon', 'hybrid', 'sync', 'none'):
        net = lenet_bn(bn)
        net.initialize()
        assert net(nd.zeros((2, 1, 28, 28))).shape == (2, 10)
    with pytest.raises(ValueError, match="one of scratch, gluon, hybrid, sync, none; got 'batch'"):
        lenet_bn('batch')


def test_device_helpers_fall_back_to_the_cpu():
    if mx.context.num_gpus() == 0:
        assert gluon_bn.try_gpu() == mx.cpu() and gluon_bn.try_all_gpus() == [mx.cpu()]
    else:
        assert gluon_bn.try_gpu() == mx.gpu(0)


@pytest.mark.parametrize('bn', ['hybrid', 'scratch'])
def test_static_memory_on_one_device_gives_the_same_bits(bn, capsys):
    """gluon_bn.train.loop.hybridize: static_alloc and static_shape change the speed, not the
    numbers (a last batch of another size included)."""
    data = tiny_data(64 * 3 + 40, seed=5)
    params = []
    for static in (False, True):
        mx.random.seed(7)
        net = lenet_bn(bn)
        net.initialize(init=init.Xavier())
        if static:
            hybridize(net)
        else:
            net.hybridize()
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
        history = train_ch5(net, data, data, 64, trainer, mx.cpu(), 2)
        params.append(({name: p.data().asnumpy() for name, p in
                        net._collect_params_with_prefix().items()}, history))
    (plain, plain_history), (static, static_history) = params
    assert plain.keys() == static.keys()
    for name in plain:
        assert plain[name].tobytes() == static[name].tobytes(), name
    assert [r['test_acc'] for r in plain_history] == [r['test_acc'] for r in static_history]
