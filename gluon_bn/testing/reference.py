"""Batch normalization in NumPy, small and obvious: the yardstick the tests measure against.

Arrays are (N, C) or (N, C, H, W); gamma, beta and the statistics are (C,). Everything is computed
in `dtype` (float64 by default; the tests pass `np.longdouble` to judge float64 results, since a
float64 reference rounds as much as the float64 code it checks).
"""
import numpy as np


def _axes(x):
    """The axes a channel's statistics run over: all but axis 1."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    """Reshape a (C,) vector so that it broadcasts along axis 1 of x."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _cast(dtype, *arrays):
    return [np.asarray(a, dtype=dtype) for a in arrays]


def train_forward(x, gamma, beta, eps, dtype=np.float64):
    """Normalize with the batch's own statistics. Returns (y, mean, biased variance)."""
    x, gamma, beta = _cast(dtype, x, gamma, beta)
    mean = x.mean(axis=_axes(x))
    var = ((x - _per_channel(mean, x)) ** 2).mean(axis=_axes(x))
    x_hat = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + dtype(eps))
    return _per_channel(gamma, x) * x_hat + _per_channel(beta, x), mean, var


def train_backward(dy, x, gamma, eps, dtype=np.float64):
    """Closed-form gradients of train_forward. Returns (dx, dgamma, dbeta)."""
    dy, x, gamma = _cast(dtype, dy, x, gamma)
    axes = _axes(x)
    mean = _per_channel(x.mean(axis=axes), x)
    inv_std = 1 / np.sqrt(_per_channel(((x - mean) ** 2).mean(axis=axes), x) + dtype(eps))
    x_hat = (x - mean) * inv_std
    dx_hat = dy * _per_channel(gamma, x)
    dx = inv_std * (dx_hat - dx_hat.mean(axis=axes, keepdims=True)
                    - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True))
    return dx, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)


def predict(x, gamma, beta, running_mean, running_var, eps, dtype=np.float64):
    """Normalize with running statistics."""
    x, gamma, beta, mean, var = _cast(dtype, x, gamma, beta, running_mean, running_var)
    x_hat = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + dtype(eps))
    return _per_channel(gamma, x) * x_hat + _per_channel(beta, x)


def update_running(running, batch_stat, momentum, dtype=np.float64):
    """One step of the exponential moving average: momentum * running + (1 - momentum) * batch."""
    running, batch_stat = _cast(dtype, running, batch_stat)
    return dtype(momentum) * running + (1 - dtype(momentum)) * batch_stat
