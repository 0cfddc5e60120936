"""d2lzh's evaluate_accuracy and train_ch5, with the same signatures and printed lines, on one
device or several; and `epochs`, the same loop without d2lzh's lines, one epoch at a time.

Unlike d2lzh's, they keep their running sums on the device and read them once per epoch, instead
of waiting for every batch with asscalar(): MXNet's engine then runs ahead of Python.

The loop knows the one layer that needs more than a forward pass per device: SyncBatchNorm, whose
devices must each run in a thread of their own (plan_for), as PyTorch's DistributedDataParallel
knows its SyncBatchNorm. No layer knows the loop.
"""
import time
import warnings

import mxnet as mx
from mxnet import autograd, nd
from mxnet.gluon import loss as gloss
from mxnet.gluon import utils as gutils

from ..nn import SyncBatchNorm, run_on_devices

# Wait for the device every so many batches: it bounds the engine's queue (and so the memory it
# holds) and lets a progress bar show work done rather than work queued.
SYNC_EVERY = 50


def hybridize(net, num_devices=1):
    """Hybridize every layer of `net` that can be; on one device with static memory and shapes
    (MXNet's static_alloc and static_shape), so that the graph's memory is planned once instead
    of at every call. `gluon-bn train` trains this way.

    Static memory gives the same bits as plain hybridization on one device (checked by
    training both ways). On several, it changed the test accuracy of a seeded run in the fourth
    digit, and a run resumed from a checkpoint no longer ended as the uninterrupted one: there
    it stays off."""
    static = num_devices == 1
    with warnings.catch_warnings():
        # nn.Sequential of HybridBlocks (--bn sync) suggests HybridSequential, which a
        # SyncBatchNorm over several devices cannot be part of.
        warnings.filterwarnings('ignore', message='All children of this Sequential')
        net.hybridize(static_alloc=static, static_shape=static)


def devices(ctx):
    """ctx as a list: one context, or several (data parallelism)."""
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]


def split(batch, ctxs):
    """The batch cut into one slice per device (fewer devices if the batch is smaller)."""
    return gutils.split_and_load(batch, ctxs[:batch.shape[0]], even_split=False)


def evaluate_accuracy(data_iter, net, ctx=mx.cpu()):
    """Fraction of the samples in data_iter that net classifies correctly, on one device or
    several (ctx a list: each batch is split between them)."""
    ctxs = devices(ctx)
    correct, n = nd.zeros(1, ctx=ctxs[0], dtype='float64'), 0
    for X, y in data_iter:
        for X_part, y_part in zip(split(X, ctxs), split(y, ctxs)):
            hits = (net(X_part).argmax(axis=1) == y_part.astype('float32')).sum()
            correct += hits.astype('float64').as_in_context(ctxs[0])
        n += y.size
    return correct.asscalar() / n


# --- how a step's forward passes run on the devices ---------------------------------------------

class OneAfterAnother:
    """The devices' forward passes one after the other, in this thread: what every network
    needs but one with SyncBatchNorm layers over several devices."""
    min_samples = 1        # a batch with fewer samples is left out of training
    why = ''               # ... and the reason given for it

    def forward(self, fn, Xs, ys):
        return [fn(X, y) for X, y in zip(Xs, ys)]


class Synchronized:
    """For a network with SyncBatchNorm layers: each device's forward pass in a thread of its own
    (gluon_bn.run_on_devices), every device with at least one sample."""

    def __init__(self, net, ctxs):
        self.net, self.min_samples = net, len(ctxs)
        self.why = (f"each of the {len(ctxs)} devices that synchronize batch norm needs at "
                    f"least one")
        self._warmed = False

    def forward(self, fn, Xs, ys):
        if not self._warmed:
            # Gluon's deferred initialization is not thread-safe: finish it on one device
            # first, in prediction mode, where no statistics change and no device waits.
            with autograd.pause(train_mode=False):
                self.net(Xs[0])
            self._warmed = True
        return run_on_devices(fn, Xs, ys)


def sync_layers(block):
    """The SyncBatchNorm layers in block, block included."""
    found = [block] if isinstance(block, SyncBatchNorm) else []
    for child in block._children.values():
        found += sync_layers(child)
    return found


def plan_for(net, ctxs):
    """Synchronized if net has SyncBatchNorm layers over several devices (which must then be
    ctxs), else OneAfterAnother."""
    layers = [layer for layer in sync_layers(net) if layer.num_devices > 1]
    for layer in layers:
        if layer.num_devices != len(ctxs):
            raise ValueError(f"{layer.name} synchronizes {layer.num_devices} devices, but the "
                             f"network trains on {len(ctxs)}: {ctxs}")
    return Synchronized(net, ctxs) if layers else OneAfterAnother()


# --- the loop -------------------------------------------------------------------------------

def epochs(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs, progress=None, *,
           start_epoch=0, before_epoch=None, before_test=None, plan=None):
    """Train and evaluate, one epoch at a time: a generator of each epoch's record (epoch, loss,
    train_acc, test_acc, seconds). It prints none of d2lzh's lines, only the notice of a batch
    left out. Arguments as for train_ch5; `before_test()`, if given, runs after each epoch's
    training and before its test, and what it returns (a dict) joins the epoch's record."""
    ctxs = devices(ctx)
    plan = plan or plan_for(net, ctxs)
    loss = gloss.SoftmaxCrossEntropyLoss()

    def forward(X_part, y_part):
        y_hat = net(X_part)
        return y_hat, loss(y_hat, y_part).sum()

    dropped = False
    for epoch in range(start_epoch, num_epochs):
        if before_epoch:
            before_epoch(epoch)
        start = time.time()
        # float64 sums of the float32 per-batch values, as d2lzh's Python floats are
        loss_sum = nd.zeros(1, ctx=ctxs[0], dtype='float64')
        correct = nd.zeros(1, ctx=ctxs[0], dtype='float64')
        n = 0
        for i, (X, y) in enumerate(train_iter, 1):
            if X.shape[0] < plan.min_samples:
                # Dropped, as Gluon's last_batch='discard' would, and said once.
                if not dropped:
                    print(f"train_ch5: a batch of {X.shape[0]} sample(s) is left out of "
                          f"training: {plan.why}")
                dropped = True
                continue
            Xs, ys = split(X, ctxs), split(y, ctxs)
            with autograd.record():
                outs = plan.forward(forward, Xs, ys)
            y_hats, ls = [out[0] for out in outs], [out[1] for out in outs]
            # One backward for all devices: with SyncBatchNorm their graphs are joined.
            autograd.backward(ls)
            trainer.step(batch_size)
            for l, y_hat, y_part in zip(ls, y_hats, ys):
                loss_sum += l.astype('float64').as_in_context(ctxs[0])
                hits = (y_hat.argmax(axis=1) == y_part.astype('float32')).sum()
                correct += hits.astype('float64').as_in_context(ctxs[0])
            n += y.size
            if i % SYNC_EVERY == 0:
                loss_sum.wait_to_read()
                if progress:
                    progress(epoch + 1, i, len(train_iter))
        extra = before_test() if before_test else {}
        test_acc = evaluate_accuracy(test_iter, net, ctx)
        record = dict(epoch=epoch + 1, loss=loss_sum.asscalar() / n,
                      train_acc=correct.asscalar() / n, test_acc=test_acc,
                      seconds=time.time() - start, **extra)
        if progress:
            progress(epoch + 1, len(train_iter), len(train_iter))
        yield record


def epoch_line(record):
    """d2lzh's line for an epoch."""
    return ('epoch %d, loss %.4f, train acc %.3f, test acc %.3f, time %.1f sec'
            % (record['epoch'], record['loss'], record['train_acc'], record['test_acc'],
               record['seconds']))


def precise_line(record):
    """What --precise-bn adds after an epoch's line."""
    return ('  precise BN: test acc %.3f with exact statistics over %d batches, %.3f with the '
            'moving averages' % (record['test_acc'], record['precise_batches'],
                                 record['test_acc_moving']))


def train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs, progress=None, *,
              start_epoch=0, before_epoch=None, before_test=None, after_epoch=None, plan=None):
    """Train and evaluate a model, printing d2lzh's lines.

    Parameters are d2lzh's. `ctx` may also be a list of contexts: each batch is then split
    between them with gluon.utils.split_and_load, each device computes its part, and the
    Trainer adds up the gradients. Batch norm layers keep per-device statistics, as
    nn.BatchNorm does, unless they are SyncBatchNorm layers: then each device runs its forward
    pass in a thread of its own (gluon_bn.run_on_devices) and they share the whole batch's
    statistics (plan_for; `plan` gives a plan of your own, see OneAfterAnother). `progress`, if
    given, is called as progress(epoch, batches_done, batches_total) every SYNC_EVERY batches
    and at the end of each epoch.

    To continue a run (see gluon_bn.train.checkpoint): `start_epoch` epochs are done already, so
    training goes on with epoch start_epoch + 1 up to num_epochs; `before_epoch(epoch)` (0-based)
    is called before each epoch and `after_epoch(history)` after each, with the epochs trained by
    this call so far. `before_test()`: see `epochs`; a record it gives `test_acc_moving` (the
    accuracy from the moving averages, before precise statistics replaced them) adds a line.

    Returns the history: one dict per epoch with epoch, loss, train_acc, test_acc and seconds.
    """
    print('training on', ctx)
    history = []
    for record in epochs(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs,
                         progress, start_epoch=start_epoch, before_epoch=before_epoch,
                         before_test=before_test, plan=plan):
        print(epoch_line(record))
        if 'test_acc_moving' in record:
            print(precise_line(record))
        history.append(record)
        if after_epoch:
            after_epoch(history)
    return history
