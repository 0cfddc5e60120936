"""update_bn_stats: every layer's running statistics are the mean and variance of its input over
the batches, as NumPy computes them in float64, and nothing else changes."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd
from mxnet.gluon import nn

from gluon_bn import FrozenBatchNorm, HybridBatchNorm, update_bn_stats
from gluon_bn.train.models import lenet_bn
from tests.helpers import blocks

F32 = 2.0 ** -24   # float32 unit roundoff


def layer_inputs(net, batches):
    """Each batch norm's inputs, batch by batch, recorded in training mode on an unhybridized
    run of the same network."""
    seen = {}

    def hook(block, inputs):
        seen.setdefault(block.name, []).append(inputs[0].asnumpy().astype(np.float64))
    norms = [b for b in blocks(net) if isinstance(b, nn.BatchNorm) or hasattr(b, 'moving_mean')]
    handles = [b.register_forward_pre_hook(hook) for b in norms]
    with autograd.train_mode():
        for X in batches:
            net(X)
    for handle in handles:
        handle.detach()
    return norms, seen



def numpy_statistics(inputs, axis=1):
    x = np.concatenate(inputs)
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    return x.mean(axis=axes), x.var(axis=axes)


def running(norm):
    if isinstance(norm, nn.BatchNorm):
        return norm.running_mean.data().asnumpy(), norm.running_var.data().asnumpy()
    return (norm.moving_mean.data().asnumpy().reshape(-1),
            norm.moving_var.data().asnumpy().reshape(-1))


@pytest.mark.parametrize('layer', [nn.BatchNorm, HybridBatchNorm])
def test_every_layer_of_cifar_resnet20_gets_the_statistics_numpy_computes(layer):
    from gluoncv.model_zoo import get_model
    net = get_model('cifar_resnet20_v1', classes=10, norm_layer=layer)
    net.initialize(mx.init.Xavier())
    rng = np.random.default_rng(0)
    batches = [nd.array(rng.normal(0.5, 2.0, size=(16, 3, 32, 32))) for _ in range(3)]
    batches.append(nd.array(rng.normal(0.5, 2.0, size=(5, 3, 32, 32))))   # a short last batch
    net(batches[0])
    weights = {k: v.data().asnumpy().copy() for k, v in net.collect_params().items()
               if 'running' not in k}
    net.hybridize(static_alloc=True)   # runs layer by layer meanwhile, hybridized after
    done = update_bn_stats(net, batches)
    assert done.batches == 4 and done.examples == 53 and done.left == {}
    assert net._active and net._cached_op is None   # hybridized as before, traced again
    net.hybridize(False)
    # read first: HybridBatchNorm updates them in its training forward, as the reference runs
    stats = {b.name: running(b) for b in blocks(net) if isinstance(b, nn.BatchNorm)}
    norms, seen = layer_inputs(net, batches)
    assert len(norms) == len(done.updated) == 21   # after 21 convolutions: 19 + 2 shortcuts
    for norm in norms:
        mean, var = numpy_statistics(seen[norm.name])
        got_mean, got_var = stats[norm.name]
        # float32 roundoff of the stored value (the sums are float64)
        np.testing.assert_allclose(got_mean, mean, rtol=4 * F32, atol=4 * F32 * np.abs(mean).max())
        np.testing.assert_allclose(got_var, var, rtol=4 * F32)
    assert all(np.array_equal(v, net.collect_params()[k].data().asnumpy())
               for k, v in weights.items())   # weights untouched


def test_the_variance_is_of_the_whole_set_not_the_mean_of_batch_variances():
    net = nn.HybridSequential()
    net.add(nn.BatchNorm(in_channels=2))
    net.initialize()
    batches = [nd.full((4, 2), 0.0), nd.full((4, 2), 2.0)]   # each batch: variance 0
    update_bn_stats(net, batches)
    np.testing.assert_array_equal(net[0].running_mean.data().asnumpy(), [1, 1])
    np.testing.assert_array_equal(net[0].running_var.data().asnumpy(), [1, 1])


@pytest.mark.parametrize('bn', ['scratch', 'gluon', 'hybrid', 'sync'])
def test_bn_lenet_of_every_kind(bn):
    devices = 2 if bn == 'sync' else 1
    net = lenet_bn(bn, num_devices=devices)
    net.initialize(mx.init.Xavier(), ctx=[mx.cpu(i) for i in range(devices)])
    rng = np.random.default_rng(1)
    batches = [(nd.array(rng.uniform(size=(32, 1, 28, 28))), nd.zeros(32)) for _ in range(3)]
    done = update_bn_stats(net, batches, num_batches=2)
    assert done.batches == 2 and len(done.updated) == 4
    stats = [running(b) for b in net if b.name in done.updated]
    norms, seen = layer_inputs(_one_device_copy(net, bn), [X for X, _ in batches[:2]])
    for (got_mean, got_var), inputs in zip(stats, seen.values()):
        mean, var = numpy_statistics(inputs)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got_var, var, rtol=1e-6, atol=1e-7)
    if devices > 1:   # every device has the same statistics
        for norm in (b for b in net if b.name in done.updated):
            a, b = (norm.running_mean.data(mx.cpu(i)).asnumpy() for i in range(2))
            assert np.array_equal(a, b)


def _one_device_copy(net, bn):
    """The same network on one device (a SyncBatchNorm over the whole batch computes there what
    its devices compute together)."""
    if bn != 'sync':
        return net
    twin = lenet_bn('hybrid')
    twin.initialize()
    twin(nd.zeros((1, 1, 28, 28)))
    for (_, a), (_, b) in zip(net.collect_params().items(), twin.collect_params().items()):
        b.set_data(a.data(mx.cpu(0)))
    return twin


def test_frozen_layers_and_global_statistics_are_left_and_said():
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=2), FrozenBatchNorm(in_channels=3),
            nn.BatchNorm(in_channels=3, use_global_stats=True), nn.BatchNorm(in_channels=3))
    net.initialize()
    done = update_bn_stats(net, [nd.random.uniform(shape=(8, 2))])
    assert done.updated == [net[3].name]
    assert set(done.left) == {net[1].name, net[2].name}
    assert net[1].running_var.data().asnumpy().tolist() == [1, 1, 1]
    assert 'left: it normalizes with its stored statistics' in str(done)


def test_bad_input_changes_nothing_and_is_named():
    net = lenet_bn('hybrid')
    net.initialize()
    net(nd.zeros((2, 1, 28, 28)))
    before = {k: v.data().asnumpy().copy() for k, v in net.collect_params().items()}
    batches = [nd.random.uniform(shape=(8, 1, 28, 28)) for _ in range(2)]
    with pytest.raises(ValueError, match='gave no batch'):
        update_bn_stats(net, iter([]))
    with pytest.raises(ValueError, match='gave 2 batches, fewer than num_batches=3'):
        update_bn_stats(net, batches, num_batches=3)
    with pytest.raises(ValueError, match='num_batches must be a positive int'):
        update_bn_stats(net, batches, num_batches=0)
    with pytest.raises(TypeError, match='a batch must be an MXNet array.*got ndarray'):
        update_bn_stats(net, [np.zeros((8, 1, 28, 28))])
    with pytest.raises(ValueError, match='no batch norm whose running statistics'):
        update_bn_stats(lenet_bn('none'), batches)

    def interrupted():
        yield batches[0]
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        update_bn_stats(net, interrupted())
    after = {k: v.data().asnumpy() for k, v in net.collect_params().items()}
    assert all(np.array_equal(before[k], after[k]) for k in before)
