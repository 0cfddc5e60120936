"""The original mistakes, kept so that they can be shown. DO NOT USE: every name here is wrong
on purpose; gluon_bn.nn and gluon_bn.teach.tutorial hold the corrections, named in each
docstring.

From the book's chapter as readers copy it (d2lzh), and from the older Gluon tutorial.
"""
from mxnet import autograd, init, nd
from mxnet.gluon import nn

from ..nn import batch_norm
from .tutorial import init_params


def batch_norm_uncalled_is_training(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """WRONG: tests `autograd.is_training` without calling it. The function object is always
    truthy, so prediction also normalizes with the statistics of the batch at hand: a sample's
    output depends on the other samples, and a single sample after a dense layer comes out as
    beta. Corrected: gluon_bn.batch_norm."""
    if not autograd.is_training:   # the mistake: no parentheses
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        axes = (0,) if X.ndim == 2 else (0, 2, 3)
        mean = X.mean(axis=axes, keepdims=True)
        var = ((X - mean) ** 2).mean(axis=axes, keepdims=True)
        X_hat = (X - mean) / nd.sqrt(var + eps)
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    return gamma * X_hat + beta, moving_mean, moving_var


class BatchNormParamTypo(nn.Block):
    """WRONG: creates its parameters with `self.param.get`, which Gluon does not have: building
    the layer raises AttributeError. Corrected: gluon_bn.BatchNorm (`self.params.get`)."""

    def __init__(self, num_features, num_dims, **kwargs):
        super().__init__(**kwargs)
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = self.param.get('gamma', shape=shape, init=init.One())   # the mistake
        self.beta = self.param.get('beta', shape=shape, init=init.Zero())


class BatchNormZeroMovingVar(nn.Block):
    """WRONG: starts the moving variance at 0, as the book's copy does (and as plain NDArrays
    that are never saved). After the first batch it holds a tenth of the batch variance, so
    predictions are scaled up by sqrt(10) until the average warms up. Corrected:
    gluon_bn.BatchNorm (moving variance starts at 1, like nn.BatchNorm)."""

    def __init__(self, num_features, num_dims, eps=1e-5, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())
        self.moving_mean = nd.zeros(shape)
        self.moving_var = nd.zeros(shape)   # the mistake
        self.eps, self.momentum = eps, momentum

    def forward(self, X):
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma.data(), self.beta.data(), self.moving_mean, self.moving_var,
            eps=self.eps, momentum=self.momentum)
        return Y


def tutorial_update_step(params, lr, batch_size):
    """WRONG: the tutorial's loop wrote a bare `trainer` where the SGD step belongs, so the
    weights never change and accuracy stays at chance. Corrected: gluon_bn.teach.tutorial.sgd."""
    return None   # `trainer` as a statement: evaluates a name, updates nothing


def tutorial_init_params(ctx=None, weight_scale=1):
    """WRONG three ways, as the tutorial drew them: every weight with scale 1 (the loss starts
    in the hundreds and training explodes), gamma and beta drawn at random instead of ones and
    zeros (the BN layer no longer outputs standardized values), and moving variance 0.
    Corrected: gluon_bn.teach.tutorial.init_params."""
    params = init_params(ctx, weight_scale)
    for i in (1, 2):   # the mistakes, on top of the corrected initialisation
        like = params[f'moving_variance{i}']
        for name in (f'gamma{i}', f'beta{i}'):
            params[name] = nd.random.normal(scale=weight_scale, shape=like.shape,
                                            ctx=like.context)
            params[name].attach_grad()
        params[f'moving_variance{i}'] = nd.zeros_like(like)
    return params
