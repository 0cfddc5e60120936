"""gluon_bn.fold: folded networks predict as the original (float32, 1e-5 relative), for every
batch-norm kind, GluonCV's residual networks, channels first and last; what cannot fold stays,
and says why."""
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd
from mxnet.gluon import nn

import gluon_bn
from gluon_bn import FoldWarning, fold, fold_plan
from gluon_bn.nn.fold import Folded
from gluon_bn.train.models import BN_CHOICES, lenet_bn
from tests.helpers import blocks

RTOL = 1e-5   # of the largest output: float32 rounding of differently ordered sums


def trained_statistics(net, seed=0):
    """Running statistics, gamma and beta of a trained network's kind, not 0, 1, 1 and 0."""
    rng = np.random.default_rng(seed)
    for name, param in sorted(net.collect_params().items()):
        if name.endswith(('running_var', 'moving_var', 'gamma')):
            param.set_data(nd.array(rng.uniform(0.5, 2.0, size=param.shape)))
        elif name.endswith(('running_mean', 'moving_mean', 'beta')):
            param.set_data(nd.array(rng.normal(0, 0.5, size=param.shape)))


def close(folded, original, X):
    expected, got = original(X).asnumpy(), folded(X).asnumpy()
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error < RTOL, error
    return error


def folds_quietly(net):
    with warnings.catch_warnings():
        warnings.simplefilter('error', FoldWarning)   # every batch norm folds
        return fold(net)


@pytest.mark.parametrize('bn', [b for b in BN_CHOICES if b != 'none'])
@pytest.mark.parametrize('hybridized', [False, True])
def test_bn_lenet_of_every_kind_folds_whole_and_predicts_the_same(bn, hybridized):
    net = lenet_bn(bn)
    net.initialize(mx.init.Xavier())
    X = nd.random.uniform(shape=(16, 1, 28, 28))
    net(X)
    trained_statistics(net)
    if hybridized:
        net.hybridize()
    before = {k: v.data().asnumpy().copy() for k, v in net.collect_params().items()}
    folded = folds_quietly(net)
    if hybridized:
        folded.hybridize()
    close(folded, net, X)
    assert sum(isinstance(b, Folded) for b in folded) == 4
    assert not any(isinstance(b, (nn.BatchNorm, gluon_bn.BatchNorm)) for b in folded)
    # the original is untouched: the same parameters, its own batch norms
    after = {k: v.data().asnumpy() for k, v in net.collect_params().items()}
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert sum(isinstance(b, (nn.BatchNorm, gluon_bn.BatchNorm)) for b in net) == 4


@pytest.mark.parametrize('model', ['cifar_resnet20_v1', 'resnet18_v1b'])
@pytest.mark.parametrize('layer', [nn.BatchNorm, gluon_bn.HybridBatchNorm])
def test_gluoncv_resnets_fold_every_batch_norm(model, layer):
    from gluoncv.model_zoo import get_model
    net = get_model(model, classes=10, norm_layer=layer)
    net.initialize(mx.init.Xavier())
    X = nd.random.uniform(shape=(4, 3, 32, 32))
    net(X)
    trained_statistics(net)
    net.hybridize(static_alloc=True, static_shape=True)
    expected = net(X)
    folded = folds_quietly(net)
    folded.hybridize(static_alloc=True, static_shape=True)
    close(folded, net, X)
    plan = fold_plan(net)
    assert plan and all(step.folded for step in plan)
    assert len(plan) == sum(isinstance(b, layer) for b in blocks(net))
    # the convolutions GluonCV builds without bias have one now
    assert all(step.layer.bias is None for step in plan)
    assert all(b.bias is not None for b in blocks(folded) if isinstance(b, nn.Conv2D))
    assert np.array_equal(net(X).asnumpy(), expected.asnumpy())   # the original predicts as before



def nhwc_and_nchw(norm, axis):
    """A channels-last network (conv, batch norm, relu, conv, batch norm, dense, batch norm)
    and the same computation channels first, with the same weights."""
    last, first = nn.HybridSequential(), nn.HybridSequential()
    last.add(nn.Conv2D(8, 3, layout='NHWC', in_channels=3, use_bias=False),
             norm(axis=axis, in_channels=8), nn.Activation('relu'),
             nn.Conv2D(6, 3, layout='NHWC', in_channels=8), norm(axis=axis, in_channels=6))
    first.add(nn.Conv2D(8, 3, in_channels=3, use_bias=False), norm(in_channels=8),
              nn.Activation('relu'), nn.Conv2D(6, 3, in_channels=8), norm(in_channels=6))
    for net in (last, first):
        net.initialize(mx.init.Xavier())
    trained_statistics(last, 1)
    for (_, a), (_, b) in zip(sorted(last.collect_params().items()),
                              sorted(first.collect_params().items())):
        value = a.data()
        b.set_data(value.transpose((0, 3, 1, 2)) if value.ndim == 4 else value)
    return last, first


@pytest.mark.parametrize('norm', [nn.BatchNorm, gluon_bn.HybridBatchNorm])
@pytest.mark.parametrize('axis', [3, -1])
def test_channels_last_folds_along_the_channel_axis(norm, axis):
    """MXNet 1.9 has no channels-last convolution on the CPU (oneDNN refuses it): the folded
    channels-last weights are checked by running them channels first."""
    last, first = nhwc_and_nchw(norm, axis)
    assert [step.folded for step in fold_plan(last)] == [True, True]
    folded = folds_quietly(last)
    copy = nn.HybridSequential()
    copy.add(nn.Conv2D(8, 3, in_channels=3), nn.Activation('relu'),
             nn.Conv2D(6, 3, in_channels=8))
    copy.initialize()
    weights = [b for b in folded if isinstance(b, nn.Conv2D)]
    for target, source in zip([b for b in copy if isinstance(b, nn.Conv2D)], weights):
        target.weight.set_data(source.weight.data().transpose((0, 3, 1, 2)))
        target.bias.set_data(source.bias.data())
    X = nd.random.uniform(shape=(2, 3, 10, 10))
    close(copy, first, X)


@pytest.mark.skipif(mx.context.num_gpus() == 0, reason='channels-last convolutions need a GPU')
def test_channels_last_on_a_gpu():
    last, _ = nhwc_and_nchw(nn.BatchNorm, 3)
    last.reset_ctx(mx.gpu(0))
    X = nd.random.uniform(shape=(2, 10, 10, 3), ctx=mx.gpu(0))
    close(folds_quietly(last), last, X)


def test_a_dense_layer_and_its_batch_norm_fold_flattened_or_channels_last():
    net = nn.HybridSequential()
    net.add(nn.Dense(7, in_units=5), nn.BatchNorm(in_channels=7),
            nn.Dense(4, flatten=False, in_units=7), nn.BatchNorm(axis=-1, in_channels=4))
    net.initialize()
    trained_statistics(net)
    close(folds_quietly(net), net, nd.random.uniform(shape=(3, 5)))


def test_what_cannot_fold_stays_and_says_why():
    net = nn.HybridSequential()
    net.add(nn.BatchNorm(in_channels=3),                               # the network's input
            nn.Conv2D(4, 3, in_channels=3, activation='relu'), nn.BatchNorm(in_channels=4),
            nn.Conv2D(4, 3, in_channels=4), nn.MaxPool2D(), nn.BatchNorm(in_channels=4),
            nn.Conv2DTranspose(4, 3, in_channels=4), nn.BatchNorm(in_channels=4),
            nn.Conv2D(5, 1, in_channels=4), nn.BatchNorm(in_channels=5))   # this one folds
    net.initialize()
    trained_statistics(net)
    X = nd.random.uniform(shape=(2, 3, 12, 12))
    whys = [step.why for step in fold_plan(net)]
    assert 'input of' in whys[0] and 'activation (relu)' in whys[1]
    assert 'pooling' in whys[2] and 'Conv2DTranspose' in whys[3] and whys[4] is None
    with pytest.warns(FoldWarning, match=r"4 of 5 batch norms stay: .*input of"):
        folded = fold(net)
    close(folded, net, X)


class TwoReaders(mx.gluon.HybridBlock):
    """A convolution whose output feeds its batch norm and a shortcut."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 1, in_channels=3)
        self.bn = nn.BatchNorm(in_channels=3)

    def hybrid_forward(self, F, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_a_convolution_whose_output_is_read_twice_keeps_its_batch_norm():
    net = TwoReaders()
    net.initialize()
    trained_statistics(net)
    [step] = fold_plan(net)
    assert not step.folded and 'read by 1 other layer' in step.why
    with pytest.warns(FoldWarning):
        folded = fold(net)
    close(folded, net, nd.random.uniform(shape=(2, 3, 5, 5)))


def test_bad_input_is_named():
    plain = nn.HybridSequential()
    plain.add(nn.Dense(3, in_units=2))
    plain.initialize()
    with pytest.raises(ValueError, match='has no batch-norm layer: nothing to fold'):
        fold(plain)
    with pytest.raises(TypeError, match='expects a Gluon Block'):
        fold(lambda x: x)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(3, 1), nn.BatchNorm())
    net.initialize()   # shapes not known before the first call
    with pytest.raises(ValueError, match='not initialized.*run it once before folding'):
        fold(net)


def test_a_folded_network_exports_and_converts_to_onnx(tmp_path):
    onnx = pytest.importorskip('onnxruntime')
    net = lenet_bn('hybrid')
    net.initialize(mx.init.Xavier())
    X = nd.random.uniform(shape=(8, 1, 28, 28))
    net(X)
    trained_statistics(net)
    folded = folds_quietly(net)
    folded.hybridize()
    expected = folded(X).asnumpy()
    folded.export(str(tmp_path / 'folded'))
    symbol = mx.sym.load(str(tmp_path / 'folded-symbol.json'))
    assert 'BatchNorm' not in {node['op'] for node in __import__('json').loads(
        symbol.tojson())['nodes']}
    loaded = mx.gluon.SymbolBlock.imports(str(tmp_path / 'folded-symbol.json'), ['data'],
                                          str(tmp_path / 'folded-0000.params'))
    np.testing.assert_allclose(loaded(X).asnumpy(), expected, rtol=1e-6, atol=1e-6)
    path = mx.onnx.export_model(str(tmp_path / 'folded-symbol.json'),
                                str(tmp_path / 'folded-0000.params'), [X.shape], np.float32,
                                str(tmp_path / 'folded.onnx'))
    session = onnx.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: X.asnumpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


class TwoInputs(mx.gluon.HybridBlock):
    def __init__(self):
        super().__init__()
        self.body = nn.HybridSequential()
        self.body.add(nn.Conv2D(3, 1, in_channels=3), nn.BatchNorm(in_channels=3))
        self.bn = nn.BatchNorm(in_channels=3)

    def hybrid_forward(self, F, x, y):
        return self.body(x) + self.bn(y)


def test_a_block_one_input_cannot_trace_is_read_by_its_parts():
    net = TwoInputs()
    net.initialize()
    trained_statistics(net)
    inner, outer = fold_plan(net)
    assert inner.folded and inner.layer is net.body[0]
    assert 'could not be traced with one input' in outer.why
    with pytest.warns(FoldWarning):
        folded = fold(net)
    X, Y = nd.random.uniform(shape=(2, 3, 4, 4)), nd.random.uniform(shape=(2, 3, 4, 4))
    expected, got = net(X, Y).asnumpy(), folded(X, Y).asnumpy()
    assert np.abs(got - expected).max() < RTOL * np.abs(expected).max()


def test_numpy_mode(tmp_path):
    """The second edition's API (npx.set_np()): fold, FrozenBatchNorm and update_bn_stats."""
    from mxnet import np as mx_np, npx
    npx.set_np()
    try:
        net = nn.HybridSequential()
        net.add(nn.Conv2D(4, 3, in_channels=1), gluon_bn.HybridBatchNorm(in_channels=4),
                nn.Activation('relu'), nn.Dense(3, in_units=64), nn.BatchNorm(in_channels=3))
        net.initialize()
        X = mx_np.random.uniform(size=(5, 1, 6, 6))
        done = gluon_bn.update_bn_stats(net, [X, X * 2])
        assert len(done.updated) == 2
        mean = net[1].running_mean.data().asnumpy()
        assert mean.std() > 0   # set from the data, not the initial zeros
        net.hybridize()
        folded = folds_quietly(net)
        folded.hybridize()
        expected, got = net(X).asnumpy(), folded(X).asnumpy()
        assert np.abs(got - expected).max() < RTOL * np.abs(expected).max()
        gluon_bn.FrozenBatchNorm.convert(net)
        assert np.abs(net(X).asnumpy() - expected).max() < RTOL * np.abs(expected).max()
    finally:
        npx.reset_np()
