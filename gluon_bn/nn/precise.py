"""Exact running statistics after training (fvcore's update_bn_stats, detectron2's PreciseBN,
torch.optim.swa_utils.update_bn), with the variance of the whole set.

The moving average a batch norm keeps while training mixes batches seen with older weights, and
weighs the last ones most: it lags the network it serves. `update_bn_stats` replaces it by the mean
and variance of each layer's input over a number of batches, all run with the weights as they are
now: per channel, in float64, merged batch by batch (Chan et al.'s parallel formula), so the
variance is that of all the examples together, not the mean of per-batch variances.
"""
import contextlib
import dataclasses

import numpy as np

from mxnet import autograd, nd
from mxnet.gluon import HybridBlock, contrib, nn
from mxnet.gluon.parameter import DeferredInitializationError

from .. import ops
from ._norms import BATCH_NORMS, channel_axis, running_statistics, write_everywhere
from ._tree import check_block, walk
from .frozen import FrozenBatchNorm
from .sync import SyncBatchNorm


@dataclasses.dataclass
class Statistics:
    """What update_bn_stats did: the layers it set, those it left and why, and over how much."""
    updated: list
    left: dict
    batches: int
    examples: int

    def __str__(self):
        text = (f"running statistics of {len(self.updated)} batch norm(s) set from {self.batches} "
                f"batches ({self.examples} examples)")
        return text + "".join(f"; {name} left: {why}" for name, why in self.left.items())


class _Moments:
    """Per-channel count, mean and sum of squared deviations of the inputs seen, in float64:
    each batch's by gluon_bn's operator (two passes summed in double; SyncBatchNorm's) on the
    CPU, by float64 NDArray operations elsewhere, merged by Chan et al.'s formula."""

    def __init__(self, axis):
        self.axis, self.count, self.mean, self.m2 = axis, 0, None, None
        ops.load()

    def add(self, x):
        x = x.as_nd_ndarray() if ops.is_numpy(x) else x
        axis = self.axis % x.ndim
        if x.size == 0:
            return
        if x.context.device_type == 'cpu' and x.dtype in (np.float32, np.float64):
            _, mean, m2 = ops.moments(nd, x, axis=axis)   # rows: count, mean, M2
            n = int(x.size // x.shape[axis])
        else:
            x = nd.moveaxis(x, axis, 0).reshape((x.shape[axis], -1)).astype('float64')
            n = x.shape[1]
            mean = x.mean(axis=1)
            m2 = ((x - mean.expand_dims(1)) ** 2).sum(axis=1)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
        self.count = total

    def result(self):
        return self.mean.asnumpy(), (self.m2 / self.count).asnumpy()


def update_bn_stats(net, data, num_batches=None, ctx=None):
    """Set the running statistics of every batch norm in `net` to the exact mean and (biased)
    variance of its input over batches of `data`.

    Parameters
    ----------
    net : Block
        With nn.BatchNorm (and its subclasses: HybridBatchNorm, gluon_bn's and contrib's
        SyncBatchNorm) or the book's BatchNorm layers, hybridized or not.
    data : iterable
        Batches: arrays, or (data, label) pairs as a DataLoader gives (the label is not used).
    num_batches : int, optional
        How many batches to use (from the start of `data`); all of them if not given.
    ctx : Context, optional
        Where the batches are moved to; by default the device of the network's first parameter.

    The network runs in training mode (`autograd.train_mode()`), as when it learnt: each batch
    norm normalizes with the statistics of the batch at hand (a SyncBatchNorm with those of the
    whole batch), dropout drops. Nothing is recorded and no weight changes. Layers that normalize
    with their stored statistics (use_global_stats=True, FrozenBatchNorm) are left as they are, as
    are layers the batches do not reach. If anything fails or the run is interrupted, every
    running statistic is put back as it was.

    Returns a Statistics (`updated`, `left`, `batches`, `examples`). Raises ValueError when the
    network has no batch norm with running statistics to update, when `data` gives no batch, or
    fewer than num_batches; nothing is changed then.
    """
    check_block(net, 'update_bn_stats')
    if num_batches is not None and (isinstance(num_batches, bool) or
                                    not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"update_bn_stats: num_batches must be a positive int, got "
                         f"{num_batches!r}")
    norms, left = [], {}
    for _, _, block in walk(net):
        if isinstance(block, BATCH_NORMS):
            if block in norms or block.name in left:
                continue
            if isinstance(block, FrozenBatchNorm) or isinstance(block, nn.BatchNorm) and \
                    block._kwargs.get('use_global_stats'):
                left[block.name] = "it normalizes with its stored statistics"
            else:
                norms.append(block)
    if not norms:
        raise ValueError(f"update_bn_stats: {net.name} has no batch norm whose running "
                         f"statistics training updates: nothing to update")
    if ctx is None:
        ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    saved = {id(p): _copy(p) for norm in norms for p in running_statistics(norm)}
    moments = {id(norm): _Moments(channel_axis(norm)) for norm in norms}
    batches = examples = 0
    try:
        with _observed(net, norms, moments), _one_device(norms), autograd.train_mode():
            for batch in data:
                if num_batches is not None and batches == num_batches:
                    break
                x = batch[0] if isinstance(batch, (list, tuple)) else batch
                if not hasattr(x, 'as_in_context'):
                    raise TypeError(f"update_bn_stats: a batch must be an MXNet array, or a "
                                    f"(data, label) pair as a DataLoader gives, got "
                                    f"{type(x).__name__}")
                net(x.as_in_context(ctx))
                batches += 1
                examples += x.shape[0]
        if batches == 0:
            raise ValueError("update_bn_stats: the data gave no batch: nothing to compute the "
                             "statistics from")
        if num_batches is not None and batches < num_batches:
            raise ValueError(f"update_bn_stats: the data gave {batches} batches, fewer than "
                             f"num_batches={num_batches}")
        for norm in norms:
            found = moments[id(norm)]
            if found.count == 0:
                left[norm.name] = "the batches did not reach it"
                continue
            mean, var = found.result()
            for param, values in zip(running_statistics(norm), (mean, var)):
                write_everywhere(param, values)
    except BaseException:
        for norm in norms:
            for param in running_statistics(norm):
                for c, value in zip(param.list_ctx(), saved[id(param)] or ()):
                    param.data(c)[:] = value
        raise
    nd.waitall()
    return Statistics([norm.name for norm in norms if norm.name not in left], left, batches,
                      examples)


def _copy(param):
    """A copy of the parameter's values on each device; None while it waits for its first input
    to know its shape (deferred initialization): it then has no values to put back."""
    try:
        return [param.data(c).copy() for c in param.list_ctx()]
    except DeferredInitializationError:
        return None


@contextlib.contextmanager
def _observed(net, norms, moments):
    """Each layer's input goes to its moments. A hybridized network runs its compiled graph,
    which calls no layer: it runs layer by layer meanwhile, and is hybridized as before after."""
    hybrid = [(block, block._active, block._flags) for _, _, block in walk(net)
              if isinstance(block, HybridBlock)]
    for block, _, _ in hybrid:
        block._active = False
        block._clear_cached_op()
    handles = [norm.register_forward_pre_hook(
        lambda block, inputs: moments[id(block)].add(inputs[0])) for norm in norms]
    try:
        yield
    finally:
        for handle in handles:
            handle.detach()
        for block, active, flags in hybrid:
            block._active, block._flags = active, flags
            block._clear_cached_op()


@contextlib.contextmanager
def _one_device(norms):
    """A SyncBatchNorm over several devices waits for all of them in training; here one device
    runs the whole batch, whose statistics are those the devices would share: it meets no one."""
    syncs = [norm for norm in norms if isinstance(norm, contrib.nn.SyncBatchNorm)]
    saved = [(norm._kwargs['ndev'], getattr(norm, 'num_devices', None)) for norm in syncs]
    for norm in syncs:
        norm._kwargs['ndev'] = 1
        if isinstance(norm, SyncBatchNorm):
            norm.num_devices = 1
    try:
        yield
    finally:
        for norm, (ndev, num_devices) in zip(syncs, saved):
            norm._kwargs['ndev'] = ndev
            if isinstance(norm, SyncBatchNorm):
                norm.num_devices = num_devices
