"""Time batch norm, forward and backward, and BN-LeNet training steps, in one run.

    python scripts/bench_bn.py [--reps 20]

Per shape (BN-LeNet's four at batch 256, and one ResNet-sized): the book's textbook BN, the book's
Block on its fast path, HybridBatchNorm hybridized, and MXNet's fused nn.BatchNorm, imperative and
hybridized; each ratio compares ours with the fused op run the same way. Then BN-LeNet training
steps (batch 256, SGD) with each BN, hybridized, scaled to seconds per Fashion-MNIST epoch.
"""
import argparse
import statistics
import time

import gluon_bn  # noqa: F401  first: on the GPU build it loads the CUDA libraries (gluon_bn.cuda)
import mxnet as mx
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from gluon_bn import BatchNorm, HybridBatchNorm, lenet_bn

SHAPES = [(256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84), (32, 128, 28, 28)]
STEPS_PER_EPOCH = 235   # ceil(60000 / 256)


def milliseconds(step, reps):
    """Median time of one call of step, over 5 rounds of reps calls, after a warm-up."""
    for _ in range(3):
        step()
    nd.waitall()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            step()
        nd.waitall()
        rounds.append((time.perf_counter() - start) / reps * 1000)
    return statistics.median(rounds)


def bn_step(layer, shape, hybridize):
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
    net = lenet_bn(bn)
    net.initialize(init=init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    X = nd.random.uniform(shape=(256, 1, 28, 28))
    y = nd.random.randint(0, 10, shape=(256,)).astype('int32')

    def step():
        with autograd.record():
            l = loss(net(X), y).sum()
        l.backward()
        trainer.step(256)
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reps', type=int, default=20, help='calls per timing round')
    args = parser.parse_args()
    mx.random.seed(0)

    print('forward+backward, ms per call (ratio: ours / fused op run the same way)')
    print(f"{'shape':18} {'textbook':>9} {'fast Block':>11} {'fused':>7} {'ratio':>6} "
          f"{'Hybrid hyb.':>12} {'fused hyb.':>11} {'ratio':>6}")
    for shape in SHAPES:
        C, num_dims = shape[1], len(shape)
        reps = max(2, args.reps // 10) if shape[0] * C > 256 * 64 and len(shape) == 4 else args.reps
        t = {
            'textbook': milliseconds(bn_step(BatchNorm(C, num_dims, fast=False), shape, False),
                                     max(2, reps // 4)),
            'fast': milliseconds(bn_step(BatchNorm(C, num_dims), shape, False), reps),
            'fused': milliseconds(bn_step(nn.BatchNorm(in_channels=C), shape, False), reps),
            'hybrid': milliseconds(bn_step(HybridBatchNorm(in_channels=C), shape, True), reps),
            'fused_hyb': milliseconds(bn_step(nn.BatchNorm(in_channels=C), shape, True), reps),
        }
        print(f"{str(shape):18} {t['textbook']:9.2f} {t['fast']:11.2f} {t['fused']:7.2f} "
              f"{t['fast'] / t['fused']:6.2f} {t['hybrid']:12.2f} {t['fused_hyb']:11.2f} "
              f"{t['hybrid'] / t['fused_hyb']:6.2f}", flush=True)

    print('\nBN-LeNet training step, batch 256, hybridized')
    print(f"{'bn':10} {'ms/step':>8} {'s/epoch':>8} {'vs gluon':>9}")
    times = {bn: milliseconds(lenet_step(bn), args.reps) for bn in ('gluon', 'hybrid', 'scratch')}
    for bn, ms in times.items():
        print(f"{bn:10} {ms:8.2f} {ms * STEPS_PER_EPOCH / 1000:8.2f} {ms / times['gluon']:9.2f}")


if __name__ == '__main__':
    main()
