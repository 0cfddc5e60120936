"""Time one epoch of BN-LeNet: the book's pipeline against this project's, same BN class.

    python scripts/bench_epoch.py [--bn scratch gluon hybrid] [--epochs 1]

The book's pipeline is d2lzh's own train_ch5 over a DataLoader of per-sample ToTensor with
4 worker processes (d2lzh.load_data_fashion_mnist, fed the verified local files). Ours is
gluon_bn's train_ch5 over the whole data set preloaded as one NDArray, with the network
hybridized where it can be, as scripts/train_lenet_bn.py runs it. Both train with SGD at lr 1.0,
batch 256, and evaluate on the test set; an epoch's time covers both.
"""
import argparse
import contextlib
import io
import time

import gluon_bn  # noqa: F401  first: on the GPU build it loads the CUDA libraries (gluon_bn.cuda)
import d2lzh
import mxnet as mx
from mxnet import gluon, init

from gluon_bn import cli, compat
from gluon_bn.data import load_data_fashion_mnist
from gluon_bn.model import BN_CHOICES, lenet_bn
from gluon_bn.train import train_ch5

BATCH_SIZE, LR = 256, 1.0


def seconds_per_epoch(train, loaders, bn, hybridize, epochs, ctx):
    mx.random.seed(0)
    net = lenet_bn(bn)
    net.initialize(ctx=ctx, init=init.Xavier())
    if hybridize:
        net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': LR})
    with contextlib.redirect_stdout(io.StringIO()):   # the epoch lines; the table says it all
        start = time.time()
        train(net, *loaders, BATCH_SIZE, trainer, ctx, epochs)
    return (time.time() - start) / epochs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--bn', nargs='+', default=['scratch', 'gluon', 'hybrid'],
                        choices=BN_CHOICES)
    cli.add_epochs(parser, 1, help='epochs per contender')
    cli.add_data_dir(parser)
    args = parser.parse_args()
    ctx = mx.cpu()
    with compat.offline(args.data_dir):   # d2lzh's own loader over the local files
        book = d2lzh.load_data_fashion_mnist(BATCH_SIZE)
    ours = load_data_fashion_mnist(BATCH_SIZE, root=args.data_dir, ctx=ctx)
    print(f"{'bn':8} {'book s/epoch':>13} {'ours s/epoch':>13} {'ours/book':>10}")
    for bn in args.bn:
        book_time = seconds_per_epoch(d2lzh.train_ch5, book, bn, False, args.epochs, ctx)
        our_time = seconds_per_epoch(train_ch5, ours, bn, True, args.epochs, ctx)
        print(f"{bn:8} {book_time:13.1f} {our_time:13.1f} {our_time / book_time:10.2f}",
              flush=True)


if __name__ == '__main__':
    main()
