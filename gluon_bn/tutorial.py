"""The older Gluon tutorial's nd-level batch norm ("批量归一化 --- 从0开始"), corrected.

The tutorial's `batch_norm2D` keeps gamma, beta and the moving statistics as (C,) vectors and
updates the moving statistics in place, so a network written with bare NDArrays keeps them without
any layer object. Its original reshaped the statistics only for 4D input; here both ranks work.
"""
from mxnet import nd

from . import ops
from ._checks import check_array, check_input
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
    C = X.shape[1]
    for name, array in (('gamma', gamma), ('beta', beta),
                        ('moving_mean', moving_mean), ('moving_variance', moving_variance)):
        check_array(name, array, (C,), X, 'batch_norm2D')

    if fast and X.context.device_type == 'cpu':
        ops.load()
        return ops.batch_norm(X, gamma, beta, moving_mean, moving_variance, is_training, eps,
                              moving_momentum)
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
