"""The batch-norm layers the network tools (fold, FrozenBatchNorm.convert, update_bn_stats)
handle, and where each kind keeps what they read and write.

nn.BatchNorm covers HybridBatchNorm, both SyncBatchNorms and FrozenBatchNorm: `running_mean`
and `running_var` of shape (C,), the channel axis and epsilon in `_kwargs` (contrib's
SyncBatchNorm has no axis there: always 1). The book's BatchNorm keeps `moving_mean` and
`moving_var` of shape (1, C) or (1, C, 1, 1), normalizes axis 1, and keeps its epsilon itself.
"""
from mxnet.gluon import nn

from . import scratch

BATCH_NORMS = (nn.BatchNorm, scratch.BatchNorm)


def channel_axis(norm):
    return norm._kwargs.get('axis', 1) if isinstance(norm, nn.BatchNorm) else 1


def epsilon(norm):
    return norm._kwargs['eps'] if isinstance(norm, nn.BatchNorm) else norm._eps


def running_statistics(norm):
    """The layer's running mean and variance parameters."""
    if isinstance(norm, nn.BatchNorm):
        return norm.running_mean, norm.running_var
    return norm.moving_mean, norm.moving_var


def write_everywhere(param, values):
    """NumPy values into the parameter on every device, in its shape and dtype."""
    for ctx in param.list_ctx():
        array = param.data(ctx)
        array[:] = values.reshape(array.shape).astype(array.dtype)
