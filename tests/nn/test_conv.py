"""FirstConv2D: the chapter's first convolution computed by gluon_bn, against nn.Conv2D and a
float64 reference."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd
from mxnet.gluon import nn

from gluon_bn import FirstConv2D
from gluon_bn.testing import APIS, array, array_api


def reference(x, w, b, dy):
    """float64 convolution and its gradients, written out."""
    N, _, H, W = x.shape
    F, OH, OW = w.shape[0], H - 4, W - 4
    windows = np.stack([x[:, 0, a:a + OH, c:c + OW] for a in range(5) for c in range(5)], -1)
    y = windows @ w.reshape(F, 25).T                      # (N, OH, OW, F)
    y = y.transpose(0, 3, 1, 2) + b[None, :, None, None]
    dw = np.einsum('nfij,nijk->fk', dy, windows).reshape(F, 1, 5, 5)
    dx = np.zeros_like(x)
    for k in range(25):
        a, c = divmod(k, 5)
        dx[:, 0, a:a + OH, c:c + OW] += np.einsum('nfij,f->nij', dy, w.reshape(F, 25)[:, k])
    return y, dx, dw, dy.sum(axis=(0, 2, 3))


def run(layer, x, dy, hybridize):
    """Forward (training and predicting) and backward; returns y, dx, dweight, dbias, y
    predicted."""
    if hybridize:
        layer.hybridize(static_alloc=True, static_shape=True)
    X = array(x, 'float32')
    X.attach_grad()
    with autograd.record():
        Y = layer(X)
    Y.backward(array(dy, 'float32'))
    return [Y.asnumpy(), X.grad.asnumpy(), layer.weight.grad().asnumpy(),
            layer.bias.grad().asnumpy(), layer(X).asnumpy()]


@pytest.mark.parametrize('api', APIS)
@pytest.mark.parametrize('shape, channels', [((256, 1, 28, 28), 6),    # LeNet: the fast path
                                             ((19, 1, 9, 12), 4)])     # any other size
@pytest.mark.parametrize('hybridize', [False, True])
def test_matches_the_float64_reference_at_least_as_closely_as_nn_conv2d(shape, channels,
                                                                         hybridize, api):
    """In either array API; hybridized, it predicts with nn.Conv2D's own graph
    (gluon_bn.nn.graphs)."""
    rng = np.random.default_rng(1)
    x = rng.normal(1, 2, size=shape).astype(np.float32)
    w = rng.normal(size=(channels, 1, 5, 5)).astype(np.float32)
    b = rng.normal(size=channels).astype(np.float32)
    dy = rng.normal(size=(shape[0], channels, shape[2] - 4, shape[3] - 4)).astype(np.float32)
    results = []
    with array_api(api):
        for layer in (FirstConv2D(channels), nn.Conv2D(channels, 5, in_channels=1)):
            layer.initialize()
            layer.weight.set_data(array(w, 'float32'))
            layer.bias.set_data(array(b, 'float32'))
            results.append(run(layer, x, dy, hybridize))
    exact = reference(*(a.astype(np.float64) for a in (x, w, b, dy)))
    exact = (*exact, exact[0])   # the prediction: the same convolution
    names = ['y', 'dx', 'dweight', 'dbias', 'y predicted']
    for name, ours, theirs, truth in zip(names, *results, exact):
        scale = np.abs(truth).max()
        ours_error = np.abs(ours - truth).max() / scale
        theirs_error = np.abs(theirs - truth).max() / scale
        # within a few float32 roundoffs of the truth, and no further than MXNet's kernel
        assert ours_error <= max(2 * theirs_error, 8 * 2 ** -24), (name, ours_error,
                                                                  theirs_error)


def test_parameter_files_move_between_it_and_nn_conv2d(tmp_path):
    theirs = nn.Conv2D(6, 5, in_channels=1)
    theirs.initialize(mx.init.Xavier())
    theirs.save_parameters(str(tmp_path / 'conv.params'))
    ours = FirstConv2D(6)
    ours.load_parameters(str(tmp_path / 'conv.params'))
    x = nd.random.uniform(shape=(4, 1, 28, 28))
    np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), rtol=1e-5, atol=1e-5)
    assert ours.weight.shape == theirs.weight.shape == (6, 1, 5, 5)


def test_activation_and_no_bias_behave_as_in_nn_conv2d():
    x = nd.random.uniform(shape=(2, 1, 12, 12))
    for kwargs in ({'activation': 'sigmoid'}, {'use_bias': False}):
        ours, theirs = FirstConv2D(3, **kwargs), nn.Conv2D(3, 5, in_channels=1, **kwargs)
        for layer in (ours, theirs):
            layer.initialize(mx.init.Constant(0.1))
        np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), rtol=1e-5)


def test_gradients_accumulate_with_grad_req_add():
    x = nd.random.uniform(shape=(3, 1, 10, 10))
    grads = []
    for req, steps in (('write', 1), ('add', 2)):
        layer = FirstConv2D(2)
        layer.initialize(mx.init.Constant(0.5))
        layer.collect_params().setattr('grad_req', req)
        layer.hybridize()
        for _ in range(steps):
            with autograd.record():
                y = layer(x)
            y.backward()
        grads.append([layer.weight.grad().asnumpy(), layer.bias.grad().asnumpy()])
    for once, twice in zip(*grads):
        np.testing.assert_allclose(twice, 2 * once, rtol=1e-6)


@pytest.mark.parametrize('shape', [(1, 3, 8, 8), (1, 1, 4, 8), (2, 64)])
@pytest.mark.parametrize('hybridize', [False, True])
def test_other_input_shapes_are_refused_by_name(shape, hybridize):
    layer = FirstConv2D(2)
    layer.initialize()
    if hybridize:
        layer.hybridize()
    with pytest.raises(ValueError, match=r'expects input of shape \(N, 1, H, W\)'):
        layer(nd.zeros(shape))
