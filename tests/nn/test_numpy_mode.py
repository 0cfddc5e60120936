"""Every gluon_bn layer in both of MXNet's array APIs (legacy NDArrays, and the NumPy API of
npx.set_np() that MXNet 1.9's documentation and the book's second edition use), imperative and
hybridized, training and predicting: each in a small network against the same network with its
MXNet twin (nn.BatchNorm, nn.Conv2D). The numerics of each path against the float64 reference,
in both APIs, are tests/testing/test_regression.py's; SyncBatchNorm over two devices,
tests/nn/test_sync.py's."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init
from mxnet.gluon import nn

from gluon_bn import BatchNorm, FirstConv2D, HybridBatchNorm, SyncBatchNorm, batch_norm
from gluon_bn.testing import APIS, array, array_api

C = 4
LAYERS = {   # name -> (gluon_bn's, its twin), as (first layer, batch norm)
    'HybridBatchNorm': (lambda: (nn.Conv2D(C, 3), HybridBatchNorm(in_channels=C)),
                        lambda: (nn.Conv2D(C, 3), nn.BatchNorm(in_channels=C))),
    'SyncBatchNorm(num_devices=1)': (
        lambda: (nn.Conv2D(C, 3), SyncBatchNorm(in_channels=C, num_devices=1)),
        lambda: (nn.Conv2D(C, 3), nn.BatchNorm(in_channels=C))),
    'BatchNorm': (lambda: (nn.Conv2D(C, 3), BatchNorm(C, num_dims=4)),
                  lambda: (nn.Conv2D(C, 3), nn.BatchNorm(in_channels=C))),
    'BatchNorm(fast=False)': (lambda: (nn.Conv2D(C, 3), BatchNorm(C, num_dims=4, fast=False)),
                              lambda: (nn.Conv2D(C, 3), nn.BatchNorm(in_channels=C))),
    'FirstConv2D': (lambda: (FirstConv2D(C), nn.BatchNorm(in_channels=C)),
                    lambda: (nn.Conv2D(C, 5, in_channels=1), nn.BatchNorm(in_channels=C))),
}


def network(layers):
    first, norm = layers()
    # The book's BatchNorm is an nn.Block: in a hybridized nn.Sequential it stays imperative, as
    # Gluon keeps any Block, and the layers around it are hybridized.
    net = nn.Sequential() if isinstance(norm, BatchNorm) else nn.HybridSequential()
    net.add(first, norm, nn.Activation('relu'), nn.Dense(5))
    return net


def train_and_predict(net, hybridize, start=None):
    """Two SGD steps and a prediction, from the twin's starting weights if given. Returns what
    came out, and the weights it started from."""
    rng = np.random.default_rng(0)
    x = [array(rng.normal(1, 2, (8, 1, 9, 9)), 'float32') for _ in range(3)]
    net.initialize(init.Xavier())
    net(x[0])   # shapes (predicting: no statistic moves)
    params = net._collect_params_with_prefix()
    for name, value in (start or {}).items():
        params[name].set_data(array(value, 'float32'))
    start = starting_values(net)
    if hybridize:
        net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    for X in x[:2]:
        with autograd.record():
            y = net(X)
            loss = (y * y).mean()
        loss.backward()
        trainer.step(8)
    statistics = sorted(name for name in params if 'running' in name or 'moving' in name)
    out = dict(training=y.asnumpy(), predicting=net(x[2]).asnumpy(),
               dense=params['3.weight'].data().asnumpy(),
               statistics=[params[name].data().asnumpy().reshape(-1) for name in statistics])
    return out, start


def starting_values(net):
    """The weights to copy to gluon_bn's network: all but the batch norm's (which start as 1, 0,
    0, 1 in both)."""
    return {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()
            if name.startswith(('0.', '3.'))}


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
@pytest.mark.parametrize('api', APIS)
@pytest.mark.parametrize('name', LAYERS)
def test_trains_and_predicts_like_its_mxnet_twin_in_either_api(name, api, hybridize):
    ours_layers, twin_layers = LAYERS[name]
    with array_api(api):
        expected, start = train_and_predict(network(twin_layers), hybridize)
        ours = network(ours_layers)
        got, _ = train_and_predict(ours, hybridize, start)
        assert type(ours(array(np.ones((1, 1, 9, 9)), 'float32'))) is \
            (mx.np.ndarray if api == 'np' else mx.nd.NDArray)
    for key in ('training', 'predicting', 'dense'):
        np.testing.assert_allclose(got[key], expected[key], rtol=2e-4, atol=2e-5, err_msg=key)
    for ours_stat, twin_stat in zip(got['statistics'], expected['statistics']):
        np.testing.assert_allclose(ours_stat, twin_stat, rtol=2e-4, atol=2e-5)
    assert len(got['statistics']) == len(expected['statistics']) == 2


def test_the_books_function_takes_the_second_editions_arrays():
    """The book's batch_norm, called as the second edition writes it: mxnet.numpy arrays."""
    rng = np.random.default_rng(1)
    x = rng.normal(2, 3, (16, C, 5, 5))
    results = {}
    for api in APIS:
        with array_api(api):
            X = array(x, 'float32')
            gamma, beta = array(np.ones((1, C, 1, 1)), 'float32'), array(np.zeros((1, C, 1, 1)),
                                                                        'float32')
            moving = [array(np.zeros((1, C, 1, 1)), 'float32'),
                      array(np.ones((1, C, 1, 1)), 'float32')]
            with autograd.record():
                Y, *moving = batch_norm(X, gamma, beta, *moving, eps=1e-5, momentum=0.9)
            predicted, _, _ = batch_norm(X, gamma, beta, *moving, eps=1e-5, momentum=0.9)
            assert all(type(a) is type(X) for a in (Y, *moving, predicted))
            results[api] = [a.asnumpy() for a in (Y, *moving, predicted)]
    for nd_result, np_result in zip(results['nd'], results['np']):
        np.testing.assert_array_equal(nd_result, np_result)


@pytest.mark.parametrize('make', [lambda: HybridBatchNorm(in_channels=C), lambda: FirstConv2D(C),
                                  lambda: BatchNorm(C, num_dims=4)],
                         ids=['HybridBatchNorm', 'FirstConv2D', 'BatchNorm'])
@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
def test_a_layer_built_before_set_np_takes_numpy_arrays_afterwards(make, hybridize):
    """nn.BatchNorm built (and initialized) before npx.set_np() refuses NumPy arrays
    imperatively and takes them hybridized; nn.Conv2D refuses both. gluon_bn's take them in
    both, training and predicting."""
    layer = make()
    layer.initialize()
    if hybridize:
        layer.hybridize()
    channels = 1 if isinstance(layer, FirstConv2D) else C
    with array_api('np'):
        x = array(np.random.default_rng(2).normal(size=(4, channels, 7, 7)), 'float32')
        with autograd.record():
            training = layer(x)
        predicting = layer(x)
        assert type(training) is type(predicting) is mx.np.ndarray
    assert np.isfinite(predicting.asnumpy()).all()
