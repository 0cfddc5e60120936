"""The older Gluon tutorial's nd-level batch norm ("批量归一化 --- 从0开始"), corrected.

The tutorial's `batch_norm2D` keeps gamma, beta and the moving statistics as (C,) vectors and
updates the moving statistics in place, so a network written with bare NDArrays keeps them without
any layer object. Its original reshaped the statistics only for 4D input; here both ranks work.
"""
import mxnet as mx
from mxnet import nd

from . import ops
from ._checks import check_array, check_hyperparameters, check_input, check_textbook_dtype
from .scratch import batch_moments


def batch_norm2D(X, gamma, beta, is_training, moving_mean, moving_variance,
                 eps=1e-5, moving_momentum=0.9, fast=True):
    """Batch-normalize X, updating the caller's moving statistics in place when training.

    Parameters
    ----------
    X : NDArray, (N, C) or (N, C, H, W), floating point
    gamma, beta : NDArray, (C,)
    is_training : bool
        True: normalize with the batch's statistics and update the moving ones. False: normalize
        with the moving statistics.
    moving_mean, moving_variance : NDArray, (C,)
        Written in place (`x[:] = ...`) when training: the caller's arrays change.
    eps : float, default 1e-5
    moving_momentum : float, default 0.9
        new = moving_momentum * old + (1 - moving_momentum) * batch statistic.
    fast : bool, default True
        True: on the CPU, the same math in gluon_bn's C++ operator. False, and on other devices:
        the tutorial's formulation, differentiated by autograd.

    Returns
    -------
    Y : NDArray, X's shape
    """
    check_input(X, 'batch_norm2D')
    check_hyperparameters('batch_norm2D', 'eps', eps, 'moving_momentum', moving_momentum)
    C = X.shape[1]
    for name, array in (('gamma', gamma), ('beta', beta),
                        ('moving_mean', moving_mean), ('moving_variance', moving_variance)):
        check_array(name, array, (C,), X, 'batch_norm2D')

    if not fast:
        check_textbook_dtype(X, 'batch_norm2D(fast=False)', 'batch_norm2D(fast=True)')
    if fast and X.context.device_type == 'cpu':
        ops.load()
        return ops.batch_norm(nd, X, gamma, beta, moving_mean, moving_variance,
                              training=is_training, eps=eps, momentum=moving_momentum)
    per_channel = (1, C) if X.ndim == 2 else (1, C, 1, 1)
    if is_training:
        mean, var = batch_moments(X)
        X_hat = (X - mean) / nd.sqrt(var + eps)
        moving_mean[:] = (moving_momentum * moving_mean
                          + (1.0 - moving_momentum) * mean.detach().reshape((C,)))
        moving_variance[:] = (moving_momentum * moving_variance
                              + (1.0 - moving_momentum) * var.detach().reshape((C,)))
    else:
        X_hat = ((X - moving_mean.reshape(per_channel))
                 / nd.sqrt(moving_variance.reshape(per_channel) + eps))
    return gamma.reshape(per_channel) * X_hat + beta.reshape(per_channel)


# The tutorial's network, written with bare NDArrays: conv 20@5x5 -> BN -> relu -> maxpool,
# conv 50@3x3 -> BN -> relu -> maxpool, dense 128 -> relu, dense 10.
LAYERS = {'conv1': (20, 1, 5, 5), 'conv2': (50, 20, 3, 3), 'dense1': (1250, 128),
          'dense2': (128, 10)}


def init_params(ctx=None, weight_scale=0.01):
    """The network's parameters and BN statistics, as the tutorial meant them: small random
    weights, zero biases, gamma ones and beta zeros, moving mean 0 and moving variance 1.

    Returns a dict: weights W1..W4 and biases b1..b4, gamma1/beta1 and gamma2/beta2 (trained),
    moving_mean1/moving_variance1 and moving_mean2/moving_variance2 (updated in place).
    """
    ctx = ctx or mx.cpu()
    params = {}
    for i, shape in enumerate(LAYERS.values(), 1):
        params[f'W{i}'] = nd.random.normal(scale=weight_scale, shape=shape, ctx=ctx)
        params[f'b{i}'] = nd.zeros(shape[0] if i <= 2 else shape[1], ctx=ctx)
    for i, channels in ((1, 20), (2, 50)):
        params[f'gamma{i}'] = nd.ones(channels, ctx=ctx)
        params[f'beta{i}'] = nd.zeros(channels, ctx=ctx)
        params[f'moving_mean{i}'] = nd.zeros(channels, ctx=ctx)
        params[f'moving_variance{i}'] = nd.ones(channels, ctx=ctx)
    for name in trained(params):
        params[name].attach_grad()
    return params


def trained(params):
    """Names of the parameters SGD updates: everything but the moving statistics."""
    return [name for name in params if not name.startswith('moving')]


def net(X, params, is_training=False):
    """The tutorial's forward pass; in training mode the moving statistics change in place."""
    p = params
    h = nd.Convolution(X, p['W1'], p['b1'], kernel=(5, 5), num_filter=20)
    h = batch_norm2D(h, p['gamma1'], p['beta1'], is_training, p['moving_mean1'],
                     p['moving_variance1'])
    h = nd.Pooling(nd.relu(h), pool_type='max', kernel=(2, 2), stride=(2, 2))
    h = nd.Convolution(h, p['W2'], p['b2'], kernel=(3, 3), num_filter=50)
    h = batch_norm2D(h, p['gamma2'], p['beta2'], is_training, p['moving_mean2'],
                     p['moving_variance2'])
    h = nd.Pooling(nd.relu(h), pool_type='max', kernel=(2, 2), stride=(2, 2))
    h = nd.relu(nd.dot(nd.flatten(h), p['W3']) + p['b3'])
    return nd.dot(h, p['W4']) + p['b4']


def sgd(params, lr, batch_size):
    """The update step the tutorial's loop left out: param -= lr * grad / batch_size."""
    for name in trained(params):
        params[name][:] = params[name] - lr * params[name].grad / batch_size
