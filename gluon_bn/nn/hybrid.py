"""HybridBatchNorm: mxnet.gluon.nn.BatchNorm, with the computation done by gluon_bn."""
from mxnet import nd
from mxnet.gluon import nn

from .. import ops
from . import graphs
from ._checks import check_hyperparameters, check_not_empty, check_operator_dtype


class HybridBatchNorm(nn.BatchNorm):
    """nn.BatchNorm whose statistics and gradient gluon_bn computes.

    A subclass that changes only the computation (as GluonCV's BatchNormCudnnOff does): the
    constructor, parameters (`gamma`, `beta`, `running_mean`, `running_var`), `cast`, `repr`
    and `_kwargs` are nn.BatchNorm's, so every tool that finds, freezes (`use_global_stats`),
    casts, saves or exports batch-norm layers treats it as one, and a parameters file moves
    between networks built with either. It serves as a GluonCV `norm_layer`.

    On the CPU the layer runs gluon_bn's C++ operator: two-pass statistics summed in a wider
    type, a closed-form backward, the running statistics updated in the forward pass (with the
    biased batch variance, as nn.BatchNorm does in its backward pass; after a full step they
    agree). It takes float16, float32 and float64 data; after `cast('float16')` the parameters
    stay float32, as with nn.BatchNorm. It takes MXNet's NumPy arrays as well (npx.set_np()).
    Hybridized, a network predicts with nn.BatchNorm's own graph (gluon_bn.nn.graphs), which is
    also what it exports: a model that loads wherever MXNet does; its training graph reads the
    mode as it runs, without drawing random numbers (ops.mode_flag), so a seeded run draws the
    same random numbers as with nn.BatchNorm. On a GPU the layer runs MXNet's own CUDA BatchNorm
    kernel (cudnn_off: the biased variance in the running statistics, as on the CPU).

    Parameters
    ----------
    As nn.BatchNorm: axis (default 1; -1 or 3 for 'NHWC'), momentum, epsilon, center, scale,
    use_global_stats, beta_initializer, gamma_initializer, running_mean_initializer,
    running_variance_initializer, in_channels. Bad values raise a TypeError or ValueError here,
    where nn.BatchNorm would fail later or compute nonsense.

    Inputs:
        - **data**: float16, float32 or float64, any shape with the channels on `axis`.

    Outputs:
        - **out**: the same shape and dtype.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_hyperparameters(type(self).__name__, 'epsilon', self._kwargs['eps'], 'momentum',
                              self._kwargs['momentum'])
        axis = self._kwargs['axis']
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"{type(self).__name__}: axis must be an int, got {axis!r}")
        ops.load()

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray):   # before Gluon infers shapes; a graph of symbols is
            self._check(x)              # checked by the operator when it is bound
        return super().forward(x, *args)

    def _check(self, x):
        axis = self._kwargs.get('axis', 1)
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"{self.name}: channel axis {axis} is out of range for a {x.ndim}D "
                             f"input of shape {x.shape}")
        check_not_empty(x, self.name)
        built = self.gamma.shape[0] if self.gamma.shape else 0   # 0 or -1: not known yet
        if built > 0 and x.shape[axis] != built:
            raise ValueError(f"{self.name}: has {built} channels (from in_channels or its "
                             f"first input), got an input with {x.shape[axis]} on axis {axis} "
                             f"(shape {x.shape}); build the layer with in_channels="
                             f"{x.shape[axis]}, or leave in_channels out to take it from the "
                             f"first input")
        if x.context.device_type != 'gpu':
            check_operator_dtype(x, self.name, 'nn.BatchNorm')

    def _on_gpu(self, x):
        """Whether this call runs on a GPU: x's device, or, while a graph is traced, any device
        the parameters live on (the graph must then run everywhere)."""
        if hasattr(x, 'context'):
            return x.context.device_type == 'gpu'
        try:
            return any(ctx.device_type == 'gpu' for ctx in self.gamma.list_ctx())
        except RuntimeError:   # not initialized: a symbol built by hand, for export say
            return False

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        if self._on_gpu(x):
            # The C++ operator is CPU-only. MXNet's own CUDA kernel tracks the biased variance
            # as the CPU does; cuDNN's (the default) would track the unbiased one.
            return ops.mxnet_batch_norm(F, x, gamma, beta, running_mean, running_var,
                                        name='fwd', cudnn_off=True, **self._kwargs)
        if F is not nd and graphs.tracing() == graphs.PREDICT:   # nn.BatchNorm's own graph
            return super().hybrid_forward(F, x, gamma, beta, running_mean, running_var)
        return ops.batch_norm(F, x, gamma, beta, running_mean, running_var, name='fwd',
                              **self._kwargs)
