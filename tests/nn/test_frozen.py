"""FrozenBatchNorm: nothing in it changes or gets a gradient, whatever autograd or a tool says;
the converter keeps every value and parameter name."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

import gluon_bn
from gluon_bn import FrozenBatchNorm
from gluon_bn.train.models import lenet_bn
from tests.helpers import blocks

from .test_fold import trained_statistics

NAMES = ('gamma', 'beta', 'running_mean', 'running_var')


def frozen_values(net):
    return {k: v.data().asnumpy().copy() for k, v in net.collect_params().items()
            if k.endswith(NAMES)}


def test_training_steps_change_nothing_in_it_and_keep_no_gradient():
    net = lenet_bn('gluon')
    net.initialize(mx.init.Xavier())
    X, y = nd.random.uniform(shape=(32, 1, 28, 28)), nd.arange(32) % 10
    net.hybridize()
    net(X)
    trained_statistics(net)
    FrozenBatchNorm.convert(net)   # the graph traced before goes with the layers it held
    # a tool that sets every parameter's grad_req does not unfreeze it
    net.collect_params().setattr('grad_req', 'write')
    frozen = [b for b in net if isinstance(b, FrozenBatchNorm)]
    assert len(frozen) == 4 and all(isinstance(b, nn.BatchNorm) for b in frozen)
    params = [getattr(b, name) for b in frozen for name in NAMES]
    assert all(p.grad_req == 'null' for p in params)
    before = frozen_values(net)
    conv_before = net[0].weight.data().asnumpy().copy()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5, 'wd': 0.1,
                                                          'momentum': 0.9})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(3):
        with autograd.record():
            out = loss(net(X), y)
        out.backward()
        trainer.step(32)
    assert all(p._grad is None for p in params)   # no gradient kept for any of them
    with pytest.raises(RuntimeError):
        params[0].grad()
    after = frozen_values(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)   # bit-identical
    assert not np.array_equal(conv_before, net[0].weight.data().asnumpy())   # the rest learns


def test_gluoncvs_freeze_bn_does_not_unfreeze_it():
    from gluoncv.utils import freeze_bn
    layer = FrozenBatchNorm(in_channels=3)
    layer.initialize()
    layer.running_mean.set_data(nd.array([1, 2, 3]))
    freeze_bn(layer, use_global_stats=False)
    X = nd.random.uniform(shape=(4, 3, 2, 2))
    X.attach_grad()
    with autograd.record():
        y = layer(X)
    y.backward()
    # normalized with its running statistics, which stay
    expected = (X - nd.array([1, 2, 3]).reshape((1, 3, 1, 1))) / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(y.asnumpy(), expected.asnumpy(), rtol=1e-6, atol=1e-6)
    assert layer.running_mean.data().asnumpy().tolist() == [1, 2, 3]
    np.testing.assert_allclose(X.grad.asnumpy(), 1 / np.sqrt(1 + 1e-5), rtol=1e-6)


@pytest.mark.parametrize('model', ['cifar_resnet20_v1', 'resnet18_v1b'])
@pytest.mark.parametrize('layer', [nn.BatchNorm, gluon_bn.HybridBatchNorm])
def test_a_converted_gluoncv_resnet_predicts_exactly_as_before(model, layer, tmp_path):
    """Hybridized, both layers predict with MXNet's BatchNorm operator, as FrozenBatchNorm does
    (HybridBatchNorm's imperative prediction is gluon_bn's operator: equal to rounding)."""
    from gluoncv.model_zoo import get_model
    net = get_model(model, classes=10, norm_layer=layer)
    net.initialize(mx.init.Xavier())
    X = nd.random.uniform(shape=(2, 3, 32, 32))
    net(X)
    trained_statistics(net)
    net.hybridize()
    expected = net(X).asnumpy()
    net.save_parameters(str(tmp_path / 'before.params'))
    names = sorted(net.collect_params())
    assert FrozenBatchNorm.convert(net) is net
    assert sorted(net.collect_params()) == names   # the same parameter names
    assert sum(isinstance(b, FrozenBatchNorm) for b in blocks(net)) == len(
        [n for n in names if n.endswith('gamma')])
    assert np.array_equal(net(X).asnumpy(), expected)
    net.load_parameters(str(tmp_path / 'before.params'))   # the files keep loading
    assert np.array_equal(net(X).asnumpy(), expected)
    if layer is nn.BatchNorm:
        net.hybridize(False)
        assert np.array_equal(net(X).asnumpy(), expected)



@pytest.mark.parametrize('bn', ['gluon', 'hybrid', 'sync'])
def test_bn_lenet_of_every_kind_converts_and_predicts_the_same(bn):
    """contrib's SyncBatchNorm (and gluon_bn's, its subclass) keeps no axis in _kwargs."""
    net = lenet_bn(bn)
    net.initialize(mx.init.Xavier())
    X = nd.random.uniform(shape=(8, 1, 28, 28))
    net(X)
    trained_statistics(net)
    expected = net(X).asnumpy()
    FrozenBatchNorm.convert(net)
    assert sum(isinstance(b, FrozenBatchNorm) for b in net) == 4
    np.testing.assert_allclose(net(X).asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_converting_before_initialization_keeps_the_initializers():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3), nn.BatchNorm(gamma_initializer=mx.init.Constant(2)))
    FrozenBatchNorm.convert(net)
    net.initialize()
    net(nd.ones((1, 1, 5, 5)))
    assert isinstance(net[1], FrozenBatchNorm)
    assert net[1].gamma.data().asnumpy().tolist() == [2, 2, 2, 2]


def test_what_it_cannot_convert_is_named_before_anything_changes():
    with pytest.raises(ValueError, match='has no batch-norm layer: nothing to freeze'):
        FrozenBatchNorm.convert(nn.Dense(3))
    net = lenet_bn('scratch')
    with pytest.raises(TypeError, match="from-scratch BatchNorm"):
        FrozenBatchNorm.convert(net)
    assert not any(isinstance(b, FrozenBatchNorm) for b in net)
    with pytest.raises(ValueError, match='always uses its running statistics'):
        FrozenBatchNorm(use_global_stats=False)


def test_it_exports_as_mxnets_own_operator(tmp_path):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=1), FrozenBatchNorm(in_channels=4))
    net.initialize()
    trained_statistics(net)
    net.hybridize()
    X = nd.random.uniform(shape=(2, 1, 6, 6))
    expected = net(X).asnumpy()
    net.export(str(tmp_path / 'frozen'))
    loaded = gluon.SymbolBlock.imports(str(tmp_path / 'frozen-symbol.json'), ['data'],
                                       str(tmp_path / 'frozen-0000.params'))
    np.testing.assert_array_equal(loaded(X).asnumpy(), expected)
