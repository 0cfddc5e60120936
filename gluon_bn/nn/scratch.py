"""Batch normalization from scratch, corrected: the book's `batch_norm` and `BatchNorm` (d2lzh,
"Batch Normalization") and the older Gluon tutorial's nd-level `batch_norm2D`.

Three things differ from the copy of the book's chapter that circulates:
- the mode comes from `autograd.is_training()`, *called*: the function object `is_training` is
  always truthy, so that copy normalized predictions with the statistics of the batch at hand;
- the Block creates gamma and beta with `self.params.get` (not `self.param`);
- the moving statistics are Parameters, initialised like nn.BatchNorm's (mean 0, variance 1), so
  that save_parameters/load_parameters keep them and each device holds its own copy.

The tutorial's `batch_norm2D` keeps gamma, beta and the moving statistics as (C,) vectors and
updates the moving statistics in place, so a network written with bare NDArrays keeps them without
any layer object; its original reshaped the statistics only for 4D input, here both ranks work.
"""
import warnings

from mxnet import autograd, init, nd
from mxnet import numpy as mx_np
from mxnet.gluon import nn

from .. import ops
from ._checks import check_array, check_hyperparameters, check_input, check_textbook_dtype


def _sqrt(a):
    """sqrt in the array's own API: the textbook formulas take legacy NDArrays and the arrays of
    MXNet's NumPy API (npx.set_np(), the book's second edition) alike."""
    return mx_np.sqrt(a) if ops.is_numpy(a) else nd.sqrt(a)


def param_shape(num_features, num_dims):
    """The book's shape of gamma, beta and the statistics: (1, C) or (1, C, 1, 1)."""
    return (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)


def batch_moments(X):
    """Per-channel mean and biased variance of X, kept broadcastable against X.

    A dense layer's output (N, C) has one statistic per feature over the batch; a convolution's
    (N, C, H, W) one per channel over the batch and all positions.
    """
    axes = (0,) if X.ndim == 2 else (0, 2, 3)
    mean = X.mean(axis=axes, keepdims=True)
    var = ((X - mean) ** 2).mean(axis=axes, keepdims=True)
    return mean, var


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """Batch-normalize X; the book's function, with the mode read correctly.

    Parameters
    ----------
    X : NDArray, (N, C) or (N, C, H, W), floating point
    gamma, beta, moving_mean, moving_var : NDArray, (1, C) or (1, C, 1, 1), X's dtype
    eps : float
        Added to the variance before its square root.
    momentum : float
        Weight of the old moving statistics: new = momentum * old + (1 - momentum) * batch.

    Returns
    -------
    (Y, moving_mean, moving_var)
        In training mode (inside `autograd.record()`, or `autograd.train_mode()`) Y uses the
        batch's statistics and the moving statistics returned are updated copies; in prediction
        mode Y uses the moving statistics, which are returned unchanged. The caller's arrays are
        never written to.
    """
    check_input(X, 'batch_norm')
    check_textbook_dtype(X, 'batch_norm', 'gluon_bn.BatchNorm or HybridBatchNorm')
    check_hyperparameters('batch_norm', 'eps', eps, 'momentum', momentum)
    shape = param_shape(X.shape[1], X.ndim)
    for name, array in (('gamma', gamma), ('beta', beta),
                        ('moving_mean', moving_mean), ('moving_var', moving_var)):
        check_array(name, array, shape, X, 'batch_norm')

    if not autograd.is_training():
        X_hat = (X - moving_mean) / _sqrt(moving_var + eps)
    else:
        mean, var = batch_moments(X)
        X_hat = (X - mean) / _sqrt(var + eps)
        # The moving statistics are data, not part of the model's gradient.
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean.detach()
        moving_var = momentum * moving_var + (1.0 - momentum) * var.detach()
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


class BatchNorm(nn.Block):
    """The book's batch-normalization layer, built on `batch_norm`.

    Parameters
    ----------
    num_features : int
        Number of outputs of the dense layer, or of channels of the convolution, before it.
    num_dims : int
        2 after a dense layer, 4 after a convolution. The misspelt keyword `nums_dims=` that
        circulates with the chapter is accepted, with a DeprecationWarning.
    eps : float, default 1e-5
        Added to the variance before its square root.
    momentum : float, default 0.9
        Weight of the old moving statistics in their update.
    fast : bool, default True
        True: on the CPU, the same math in gluon_bn's C++ operator (statistics summed in a wider
        type, a closed-form backward). False, and on other devices: the book's `batch_norm`,
        differentiated by autograd.

    Parameters created (names as in the book): `gamma` (ones), `beta` (zeros), and, not trained,
    `moving_mean` (zeros) and `moving_var` (ones), as nn.BatchNorm initialises its own.

    Inputs:
        - **data**: (N, num_features) if num_dims is 2, else (N, num_features, H, W).

    Outputs:
        - **out**: the same shape. Training mode updates the moving statistics of data's device
          in the forward pass (nn.BatchNorm does it in the backward pass; after a full step the
          two agree).
    """

    def __init__(self, num_features, num_dims=None, eps=1e-5, momentum=0.9, fast=True, **kwargs):
        if 'nums_dims' in kwargs:
            if num_dims is not None:
                raise TypeError("BatchNorm got both num_dims and its misspelling nums_dims")
            warnings.warn("BatchNorm(nums_dims=...) is a misspelling; use num_dims=",
                          DeprecationWarning, stacklevel=2)
            num_dims = kwargs.pop('nums_dims')
        if num_dims is None:
            raise TypeError("BatchNorm() missing required argument 'num_dims' "
                            "(2 after a dense layer, 4 after a convolution)")
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"BatchNorm: num_features must be a positive int, got "
                             f"{num_features!r}")
        if num_dims not in (2, 4):
            raise ValueError(f"BatchNorm: num_dims must be 2 (after a dense layer) or 4 (after a "
                             f"convolution), got {num_dims!r}")
        check_hyperparameters('BatchNorm', 'eps', eps, 'momentum', momentum)
        super().__init__(**kwargs)
        if fast:
            ops.load()
        self._num_features, self._num_dims = num_features, num_dims
        self._eps, self._momentum, self._fast = eps, momentum, fast
        shape = param_shape(num_features, num_dims)
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())
        self.moving_mean = self.params.get('moving_mean', shape=shape, init=init.Zero(),
                                           grad_req='null', differentiable=False)
        self.moving_var = self.params.get('moving_var', shape=shape, init=init.One(),
                                          grad_req='null', differentiable=False)

    def forward(self, X):
        check_input(X, 'BatchNorm')
        if X.ndim != self._num_dims or X.shape[1] != self._num_features:
            expected = '(N, {})' if self._num_dims == 2 else '(N, {}, H, W)'
            raise ValueError(f"{self!r} expects input of shape "
                             f"{expected.format(self._num_features)}, got {X.shape}")
        ctx = X.context
        gamma, beta = self.gamma.data(ctx), self.beta.data(ctx)
        moving_mean, moving_var = self.moving_mean.data(ctx), self.moving_var.data(ctx)
        if X.dtype != gamma.dtype:   # the fast operator would fail with a less helpful message
            check_array('gamma', gamma, gamma.shape, X, 'BatchNorm')
        if not self._fast:
            check_textbook_dtype(X, 'BatchNorm(fast=False)', 'BatchNorm(fast=True)')
        if self._fast and ctx.device_type == 'cpu':   # the operator is CPU-only so far
            return ops.batch_norm(nd, X, gamma, beta, moving_mean, moving_var,
                                  training=autograd.is_training(), eps=self._eps,
                                  momentum=self._momentum)
        Y, new_mean, new_var = batch_norm(X, gamma, beta, moving_mean, moving_var,
                                          self._eps, self._momentum)
        if autograd.is_training():
            moving_mean[:] = new_mean
            moving_var[:] = new_var
        return Y

    def __repr__(self):
        return (f"{type(self).__name__}({self._num_features}, num_dims={self._num_dims}, "
                f"eps={self._eps}, momentum={self._momentum}, fast={self._fast})")


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
        X_hat = (X - mean) / _sqrt(var + eps)
        moving_mean[:] = (moving_momentum * moving_mean
                          + (1.0 - moving_momentum) * mean.detach().reshape((C,)))
        moving_variance[:] = (moving_momentum * moving_variance
                              + (1.0 - moving_momentum) * var.detach().reshape((C,)))
    else:
        X_hat = ((X - moving_mean.reshape(per_channel))
                 / _sqrt(moving_variance.reshape(per_channel) + eps))
    return gamma.reshape(per_channel) * X_hat + beta.reshape(per_channel)
