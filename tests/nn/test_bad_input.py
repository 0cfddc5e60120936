"""Bad input raises a TypeError or ValueError naming what was expected and what was given, and
leaves every statistic as it was, in MXNet's legacy API and in its NumPy API alike. Each call
runs inside autograd.record(), where a training path would otherwise update the statistics."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd

from gluon_bn import BatchNorm, HybridBatchNorm, SyncBatchNorm, batch_norm, batch_norm2D
from gluon_bn.testing import APIS, array, array_api

C = 3


def ones(shape, dtype='float32'):
    """Ones in the API the test runs in (legacy NDArrays, or mxnet.numpy)."""
    return array(np.ones(shape), dtype)


class Functional:
    """gluon_bn.batch_norm with book-shaped (1, C, 1, 1) arrays; overrides replace one of them."""
    names = ('gamma', 'beta', 'moving_mean', 'moving_var')

    def __init__(self, ndim=4, dtype='float32'):
        shape = (1, C) if ndim == 2 else (1, C, 1, 1)
        self.arrays = {name: ones(shape, dtype) for name in self.names}

    def __call__(self, X, **overrides):
        a = {**self.arrays, **overrides}
        return batch_norm(X, a['gamma'], a['beta'], a['moving_mean'], a['moving_var'], 1e-5, 0.9)

    def state(self):
        return [a.asnumpy() for a in self.arrays.values()]


class Tutorial(Functional):
    """gluon_bn.batch_norm2D with (C,) arrays, whatever the input's rank."""
    names = ('gamma', 'beta', 'moving_mean', 'moving_variance')

    def __init__(self, ndim=4, dtype='float32'):
        self.arrays = {name: ones(C, dtype) for name in self.names}

    def __call__(self, X, **overrides):
        a = {**self.arrays, **overrides}
        return batch_norm2D(X, a['gamma'], a['beta'], True, a['moving_mean'],
                            a['moving_variance'])


class Block:
    def __init__(self, ndim=4, dtype='float32'):
        self.block = BatchNorm(C, num_dims=ndim)
        self.block.initialize()
        self.block.cast(dtype)

    def __call__(self, X):
        return self.block(X)

    def state(self):
        return [p.data().asnumpy() for p in self.block.collect_params().values()]


ENTRY_POINTS = {'batch_norm': Functional, 'batch_norm2D': Tutorial, 'BatchNorm': Block}

# (input, the entry point's rank, exception, words the message must contain)
BAD_INPUTS = {
    '3d': (lambda: ones((4, C, 5)), 4, ValueError, ['3D', '(4, 3, 5)']),
    '5d': (lambda: ones((2, C, 4, 4, 4)), 4, ValueError, ['5D', '(2, 3, 4, 4, 4)']),
    'integer-dtype': (lambda: ones((4, C, 5, 5), 'int32'), 4, TypeError, ['int32', 'float']),
    'numpy-input': (lambda: np.ones((4, C, 5, 5), dtype='float32'), 4, TypeError,
                    ['NDArray', 'ndarray']),
}


def assert_untouched(api, call, exception, words):
    before = api.state()
    with pytest.raises(exception) as raised:
        with autograd.record():
            call()
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))
    for a, b in zip(api.state(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('mode', APIS)
@pytest.mark.parametrize('case', BAD_INPUTS)
@pytest.mark.parametrize('api_name', ENTRY_POINTS)
def test_bad_input_is_rejected_and_changes_nothing(api_name, case, mode):
    make, ndim, exception, words = BAD_INPUTS[case]
    with array_api(mode):
        api = ENTRY_POINTS[api_name](ndim)
        X = make()
        assert_untouched(api, lambda: api(X), exception, words)


@pytest.mark.parametrize('mode', APIS)
@pytest.mark.parametrize('ndim', [2, 4])
@pytest.mark.parametrize('api_name', ENTRY_POINTS)
def test_channel_count_mismatch(api_name, ndim, mode):
    with array_api(mode):
        api = ENTRY_POINTS[api_name](ndim)
        X = ones((4, C + 2) if ndim == 2 else (4, C + 2, 5, 5))
        assert_untouched(api, lambda: api(X), ValueError, [str(X.shape), '3'])


@pytest.mark.parametrize('mode', APIS)
@pytest.mark.parametrize('api_name', ENTRY_POINTS)
def test_float64_input_with_float32_state(api_name, mode):
    with array_api(mode):
        api = ENTRY_POINTS[api_name](4, dtype='float32')
        X = ones((4, C, 5, 5), 'float64')
        assert_untouched(api, lambda: api(X), TypeError, ['float32', 'float64'])


@pytest.mark.parametrize('name', ['gamma', 'beta', 'moving_mean', 'moving_var'])
@pytest.mark.parametrize('bad_shape', [(1, C + 1, 1, 1), (C,), (1, C)])
def test_batch_norm_rejects_misshapen_arrays(name, bad_shape):
    api = Functional(4)
    X = nd.ones((4, C, 5, 5))
    bad = nd.ones(bad_shape)
    assert_untouched(api, lambda: api(X, **{name: bad}), ValueError,
                     [name, str(bad_shape), '(1, 3, 1, 1)'])


@pytest.mark.parametrize('name', ['gamma', 'beta', 'moving_mean', 'moving_variance'])
@pytest.mark.parametrize('bad_shape', [(C + 1,), (1, C), (1, C, 1, 1)])
def test_batch_norm2D_rejects_misshapen_arrays(name, bad_shape):
    api = Tutorial()
    X = nd.ones((4, C, 5, 5))
    bad = nd.ones(bad_shape)
    assert_untouched(api, lambda: api(X, **{name: bad}), ValueError,
                     [name, str(bad_shape), '(3,)'])


def test_block_rejects_the_other_rank():
    api = Block(ndim=4)
    X = nd.ones((4, C))
    assert_untouched(api, lambda: api(X), ValueError, ['(N, 3, H, W)', '(4, 3)'])


@pytest.mark.parametrize('kwargs, words', [
    (dict(num_features=3, num_dims=3), ['num_dims', '3']),
    (dict(num_features=0, num_dims=2), ['num_features', '0']),
    (dict(num_features=2.5, num_dims=2), ['num_features', '2.5']),
    (dict(num_features=3, num_dims=2, momentum=1.5), ['momentum', '1.5']),
    (dict(num_features=3, num_dims=2, eps=-1.0), ['eps', '-1.0']),
    (dict(num_features=3, num_dims=2, eps=0), ['eps', 'got 0']),
])
def test_block_constructor_rejects_bad_settings(kwargs, words):
    with pytest.raises(ValueError) as raised:
        BatchNorm(**kwargs)
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize('mode', APIS)
@pytest.mark.parametrize('api_name', ENTRY_POINTS)
def test_an_empty_batch_is_rejected_and_changes_nothing(api_name, mode):
    """nn.BatchNorm turns its running statistics into NaN on an empty batch."""
    with array_api(mode):
        api = ENTRY_POINTS[api_name](4)
        with mx.util.np_shape(True):
            X = ones((0, C, 5, 5))
            assert_untouched(api, lambda: api(X), ValueError, ['(0, 3, 5, 5)', 'no values'])


def call_with(api_name, eps, momentum):
    X = nd.ones((4, C))
    if api_name == 'batch_norm':
        a = [nd.ones((1, C)) for _ in range(4)]
        return batch_norm(X, *a, eps, momentum)
    if api_name == 'batch_norm2D':
        a = [nd.ones(C) for _ in range(4)]
        return batch_norm2D(X, a[0], a[1], True, a[2], a[3], eps, momentum)
    if api_name == 'BatchNorm':
        return BatchNorm(C, num_dims=2, eps=eps, momentum=momentum)
    return HybridBatchNorm(epsilon=eps, momentum=momentum)


@pytest.mark.parametrize('api_name', ['batch_norm', 'batch_norm2D', 'BatchNorm',
                                      'HybridBatchNorm'])
@pytest.mark.parametrize('eps, momentum, exception, words', [
    (1e-5, 2, ValueError, ['momentum', 'in [0, 1], got 2']),
    (1e-5, -0.5, ValueError, ['momentum', '-0.5']),
    (1e-5, float('nan'), ValueError, ['momentum', 'nan']),
    (1e-5, 'a', TypeError, ['momentum must be a number', "'a'"]),
    (0, 0.9, ValueError, ['must be a positive number, got 0', 'divides by zero']),
    (-1, 0.9, ValueError, ['-1']),
    (float('inf'), 0.9, ValueError, ['inf']),
    (None, 0.9, TypeError, ['must be a number, got None']),
])
def test_bad_eps_and_momentum_are_refused_by_every_api(api_name, eps, momentum, exception, words):
    with pytest.raises(exception) as raised:
        with autograd.record():
            call_with(api_name, eps, momentum)
    for word in words:
        assert word in str(raised.value), str(raised.value)


def test_float16_where_the_synchronized_operators_cannot_take_it_says_so():
    layer = SyncBatchNorm(in_channels=C, num_devices=2)
    layer.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    layer.cast('float16')
    with pytest.raises(TypeError) as raised:
        with autograd.record():
            layer(nd.ones((4, C), dtype='float16', ctx=mx.cpu(0)))
    assert "takes float32 or float64 data, got float16; cast the input, or use " \
           "mxnet.gluon.contrib.nn.SyncBatchNorm" in str(raised.value)


@pytest.mark.parametrize('mode', APIS)
@pytest.mark.parametrize('shape, axis', [((2, C, 4, 4), 5), ((2, C, 4, 4), -5), ((5,), 1)])
@pytest.mark.parametrize('hybridize', [False, True])
def test_hybrid_layer_refuses_an_axis_the_input_does_not_have(shape, axis, hybridize, mode):
    with array_api(mode):
        layer = HybridBatchNorm(axis=axis, in_channels=C if len(shape) > 1 else 0)
        layer.initialize()
        if hybridize:
            layer.hybridize()
        with pytest.raises(ValueError) as raised:
            with autograd.record():
                layer(ones(shape))
    assert f"channel axis {axis} is out of range for a {len(shape)}D input of shape " \
           f"{shape}" in str(raised.value)




@pytest.mark.parametrize('mode', APIS)
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('how', ['in_channels', 'first input'])
def test_hybrid_layer_given_another_channel_count_says_so_and_changes_nothing(how, hybridize,
                                                                               mode):
    with array_api(mode):
        layer = HybridBatchNorm(in_channels=C if how == 'in_channels' else 0)
        layer.initialize()
        if hybridize:
            layer.hybridize()
        if how == 'first input':
            layer(ones((2, C, 4, 4)))
        before = [p.data().asnumpy() for p in layer.collect_params().values()]
        with pytest.raises(ValueError) as raised:
            with autograd.record():
                layer(ones((2, C + 1, 4, 4)))
        after = [p.data().asnumpy() for p in layer.collect_params().values()]
    message = str(raised.value)
    assert f"has {C} channels" in message and f"input with {C + 1} on axis 1" in message
    assert f"in_channels={C + 1}" in message and 'Traceback' not in message
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)
