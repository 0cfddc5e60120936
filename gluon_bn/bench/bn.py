"""Batch norm, forward and backward, and BN-LeNet training steps, each gluon_bn path against
MXNet's fused nn.BatchNorm run the same way, in one run (`gluon-bn bench-bn`).

Per shape (BN-LeNet's four at batch 256, and one ResNet-sized): the book's textbook BN, the book's
Block on its fast path, HybridBatchNorm hybridized, and MXNet's fused nn.BatchNorm, imperative and
hybridized; each ratio compares ours with the fused op run the same way. Then BN-LeNet training
steps (batch 256, SGD) with each BN, hybridized, scaled to seconds per Fashion-MNIST epoch.
"""
import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from ..nn import BatchNorm, HybridBatchNorm
from ..train import Recipe
from ..train.recipe import build
from .timing import interleaved, mxnet_contender

SHAPES = [(256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84), (32, 128, 28, 28)]
STEPS_PER_EPOCH = 235   # ceil(60000 / 256)


def bn_step(layer, shape, hybridize):
    """One forward and backward pass of a batch-norm layer on a fixed random batch."""
    layer.initialize()
    if hybridize:
        layer.hybridize(static_alloc=True, static_shape=True)
    X, dy = nd.random.normal(shape=shape), nd.random.normal(shape=shape)
    X.attach_grad()

    def step():
        with autograd.record():
            Y = layer(X)
        Y.backward(dy)
    return step


def lenet_step(bn):
    """One training step of BN-LeNet (the training recipe's network and trainer) on a fixed
    random batch of 256."""
    net, trainer = build(Recipe(bn=bn))
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    X = nd.random.uniform(shape=(256, 1, 28, 28))
    y = nd.random.randint(0, 10, shape=(256,)).astype('int32')

    def step():
        with autograd.record():
            l = loss(net(X), y).sum()
        l.backward()
        trainer.step(256)
    return step


def bench(reps=20, rounds=5):
    """Print both tables: each figure the median of `rounds` rounds of `reps` calls."""
    mx.random.seed(0)
    print('forward+backward, ms per call (ratio: ours / fused op run the same way)')
    print(f"{'shape':18} {'textbook':>9} {'fast Block':>11} {'fused':>7} {'ratio':>6} "
          f"{'Hybrid hyb.':>12} {'fused hyb.':>11} {'ratio':>6}")
    for shape in SHAPES:
        C, num_dims = shape[1], len(shape)
        big = shape[0] * C > 256 * 64 and len(shape) == 4
        calls = max(2, reps // 10) if big else reps
        t = interleaved({
            'textbook': mxnet_contender(bn_step(BatchNorm(C, num_dims, fast=False), shape, False),
                              max(2, calls // 4)),
            'fast': mxnet_contender(bn_step(BatchNorm(C, num_dims), shape, False)),
            'fused': mxnet_contender(bn_step(nn.BatchNorm(in_channels=C), shape, False)),
            'hybrid': mxnet_contender(bn_step(HybridBatchNorm(in_channels=C), shape, True)),
            'fused_hyb': mxnet_contender(bn_step(nn.BatchNorm(in_channels=C), shape, True)),
        }, rounds, calls)
        print(f"{str(shape):18} {t['textbook']:9.2f} {t['fast']:11.2f} {t['fused']:7.2f} "
              f"{t['fast'] / t['fused']:6.2f} {t['hybrid']:12.2f} {t['fused_hyb']:11.2f} "
              f"{t['hybrid'] / t['fused_hyb']:6.2f}", flush=True)

    print('\nBN-LeNet training step, batch 256, hybridized')
    print(f"{'bn':10} {'ms/step':>8} {'s/epoch':>8} {'vs gluon':>9}")
    steps = {bn: mxnet_contender(lenet_step(bn)) for bn in ('gluon', 'hybrid', 'scratch')}
    times = interleaved(steps, rounds, reps)
    for bn, ms in times.items():
        print(f"{bn:10} {ms:8.2f} {ms * STEPS_PER_EPOCH / 1000:8.2f} {ms / times['gluon']:9.2f}")
