"""HybridBatchNorm: a drop-in for mxnet.gluon.nn.BatchNorm that computes batch norm itself."""
import numpy as np
from mxnet import nd
from mxnet.gluon import HybridBlock

from . import ops
from ._checks import check_hyperparameters, check_not_empty, check_operator_dtype


def training_flag(F):
    """1.0 in training mode, 0.0 in prediction mode, decided when the graph runs.

    MXNet tells library operators nothing about the mode, and a hybridized graph is traced once.
    Dropout is the one built-in operator besides BatchNorm that reads the mode: applied to a one
    it gives 0 or 2 when training and exactly 1 when predicting, so |dropout(1) - 1| is the flag.
    (It draws one random number per call from MXNet's generator.)
    """
    return F.BlockGrad(F.abs(F.Dropout(F.ones((1,)), p=0.5) - 1))


class HybridBatchNorm(HybridBlock):
    """Batch normalization from scratch, with nn.BatchNorm's constructor and parameter names.

    The statistics and the gradient are computed by this library (a C++ operator: two-pass
    statistics summed in a wider type, a closed-form backward), not by MXNet's fused BatchNorm.
    That operator is CPU-only: on a GPU the layer runs MXNet's own CUDA BatchNorm kernel, with
    the same parameters and the biased variance in the running statistics, as on the CPU.
    Works imperatively and hybridized, exports (load gluon_bn before SymbolBlock.imports), and
    serves as a GluonCV `norm_layer`. A parameters file saved from a network built with
    nn.BatchNorm loads into the same network built with this layer, and the other way round.

    Parameters
    ----------
    axis : int, default 1
        The channel axis: 1 after a Conv2D with layout 'NCHW', -1 or 3 for 'NHWC'.
    momentum : float, default 0.9
        running = momentum * running + (1 - momentum) * batch statistic.
    epsilon : float, default 1e-5
        Added to the variance before its square root.
    center : bool, default True
        If True, add `beta`; if False, `beta` is not trained.
    scale : bool, default True
        If True, multiply by `gamma`; if False, `gamma` is treated as 1 and not trained.
    use_global_stats : bool, default False
        If True, normalize with the running statistics in training too, and never update them.
    beta_initializer, gamma_initializer : str or Initializer, default 'zeros', 'ones'
    running_mean_initializer, running_variance_initializer : str or Initializer,
        default 'zeros', 'ones'
    in_channels : int, default 0
        Number of channels; 0 infers it from the first input.

    Inputs:
        - **data**: float32 or float64, any shape with the channels on `axis`.

    Outputs:
        - **out**: the same shape. In training (autograd.record() or train_mode()) the running
          statistics of data's device are updated in the forward pass, with the biased batch
          variance, as nn.BatchNorm does in its backward pass; after a full step they agree.
    """

    def __init__(self, axis=1, momentum=0.9, epsilon=1e-5, center=True, scale=True,
                 use_global_stats=False, beta_initializer='zeros', gamma_initializer='ones',
                 running_mean_initializer='zeros', running_variance_initializer='ones',
                 in_channels=0, **kwargs):
        super().__init__(**kwargs)
        check_hyperparameters(type(self).__name__, 'epsilon', epsilon, 'momentum', momentum)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"{type(self).__name__}: axis must be an int, got {axis!r}")
        ops.load()
        self._kwargs = {'axis': axis, 'eps': epsilon, 'momentum': momentum,
                        'fix_gamma': not scale, 'use_global_stats': use_global_stats}
        if in_channels != 0:
            self.in_channels = in_channels
        self.gamma = self.params.get('gamma', grad_req='write' if scale else 'null',
                                     shape=(in_channels,), init=gamma_initializer,
                                     allow_deferred_init=True, differentiable=scale)
        self.beta = self.params.get('beta', grad_req='write' if center else 'null',
                                    shape=(in_channels,), init=beta_initializer,
                                    allow_deferred_init=True, differentiable=center)
        self.running_mean = self.params.get('running_mean', grad_req='null', shape=(in_channels,),
                                            init=running_mean_initializer,
                                            allow_deferred_init=True, differentiable=False)
        self.running_var = self.params.get('running_var', grad_req='null', shape=(in_channels,),
                                           init=running_variance_initializer,
                                           allow_deferred_init=True, differentiable=False)

    def cast(self, dtype):
        if np.dtype(dtype).name == 'float16':   # as nn.BatchNorm: statistics stay float32
            dtype = 'float32'
        super().cast(dtype)

    def _on_gpu(self, x):
        """Whether this call runs on a GPU: x's device, or, while a graph is traced, any device
        the parameters live on (the graph must then run everywhere)."""
        if hasattr(x, 'context'):
            return x.context.device_type == 'gpu'
        try:
            return any(ctx.device_type == 'gpu' for ctx in self.gamma.list_ctx())
        except RuntimeError:   # not initialized: a symbol built by hand, for export say
            return False

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray):   # before Gluon infers shapes; a graph of symbols is
            self._check(x)              # checked by the operator when it is bound
        return super().forward(x, *args)

    def _check(self, x):
        axis = self._kwargs['axis']
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"{self.name}: channel axis {axis} is out of range for a {x.ndim}D "
                             f"input of shape {x.shape}")
        check_not_empty(x, self.name)
        if x.context.device_type != 'gpu':
            check_operator_dtype(x, self.name, 'nn.BatchNorm')

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        if self._on_gpu(x):
            # The C++ operator is CPU-only. MXNet's own CUDA kernel tracks the biased variance
            # as the CPU does; cuDNN's (the default) would track the unbiased one.
            return F.BatchNorm(x, gamma, beta, running_mean, running_var, name='fwd',
                               cudnn_off=True, **self._kwargs)
        # The operator only ever writes its gradients; through identity, whose own backward
        # honours grad_req='add', gradients still accumulate. Hybridized, identity is free.
        return F.gluon_bn_batch_norm(F.identity(x), F.identity(gamma), F.identity(beta),
                                     running_mean, running_var, training_flag(F), name='fwd',
                                     **self._kwargs)[0]

    def __repr__(self):
        in_channels = self.gamma.shape[0]
        content = ', '.join(f'{k}={v!r}' for k, v in self._kwargs.items())
        return f"{type(self).__name__}({content}, in_channels={in_channels or None})"
