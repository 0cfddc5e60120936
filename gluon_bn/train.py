"""d2lzh's evaluate_accuracy and train_ch5, with the same signatures and printed lines.

Unlike d2lzh's, they keep their running sums on the device and read them once per epoch, instead
of waiting for every batch with asscalar(): MXNet's engine then runs ahead of Python.
"""
import time

import mxnet as mx
from mxnet import autograd, nd
from mxnet.gluon import loss as gloss

# Wait for the device every so many batches: it bounds the engine's queue (and so the memory it
# holds) and lets a progress bar show work done rather than work queued.
SYNC_EVERY = 50


def evaluate_accuracy(data_iter, net, ctx=mx.cpu()):
    """Fraction of the samples in data_iter that net classifies correctly."""
    correct, n = nd.zeros(1, ctx=ctx, dtype='float64'), 0
    for X, y in data_iter:
        X, y = X.as_in_context(ctx), y.as_in_context(ctx).astype('float32')
        correct += (net(X).argmax(axis=1) == y).sum().astype('float64')
        n += y.size
    return correct.asscalar() / n


def train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs, progress=None):
    """Train and evaluate a model on one device, printing d2lzh's lines.

    Parameters are d2lzh's; `progress`, if given, is called as progress(epoch, batches_done,
    batches_total) every SYNC_EVERY batches and at the end of each epoch.

    Returns the history: one dict per epoch with loss, train_acc, test_acc and seconds.
    """
    print('training on', ctx)
    loss = gloss.SoftmaxCrossEntropyLoss()
    history = []
    for epoch in range(num_epochs):
        start = time.time()
        # float64 sums of the float32 per-batch values, as d2lzh's Python floats are
        loss_sum = nd.zeros(1, ctx=ctx, dtype='float64')
        correct = nd.zeros(1, ctx=ctx, dtype='float64')
        n = 0
        for i, (X, y) in enumerate(train_iter, 1):
            X, y = X.as_in_context(ctx), y.as_in_context(ctx)
            with autograd.record():
                y_hat = net(X)
                l = loss(y_hat, y).sum()
            l.backward()
            trainer.step(batch_size)
            loss_sum += l.astype('float64')
            correct += (y_hat.argmax(axis=1) == y.astype('float32')).sum().astype('float64')
            n += y.size
            if i % SYNC_EVERY == 0:
                loss_sum.wait_to_read()
                if progress:
                    progress(epoch + 1, i, len(train_iter))
        test_acc = evaluate_accuracy(test_iter, net, ctx)
        record = dict(epoch=epoch + 1, loss=loss_sum.asscalar() / n,
                      train_acc=correct.asscalar() / n, test_acc=test_acc,
                      seconds=time.time() - start)
        if progress:
            progress(epoch + 1, len(train_iter), len(train_iter))
        print('epoch %d, loss %.4f, train acc %.3f, test acc %.3f, time %.1f sec'
              % (record['epoch'], record['loss'], record['train_acc'], record['test_acc'],
                 record['seconds']))
        history.append(record)
    return history
