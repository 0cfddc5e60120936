"""The book's batch-norm chapter (d2lzh), reproduced offline and corrected.

    python scripts/book_chapter_bn.py [--epochs 5] [--data-dir DIR]

Trains the chapter's LeNet with the from-scratch BatchNorm, then with nn.BatchNorm: lr 1.0,
batch 256, SGD, Xavier, 5 epochs, printing d2lzh's lines.

What was wrong in the copy of the chapter that circulates, and what changed:
- `if not autograd.is_training:` never calls the function, which is always truthy, so
  prediction normalized with the statistics of the batch at hand (a single sample after a dense
  layer comes out as beta). gluon_bn.batch_norm calls it.
- `self.param.get(...)` raises AttributeError: the layer has `self.params`.
- `BatchNorm(6, nums_dims=4)` misspells num_dims (accepted here, with a DeprecationWarning).
- The moving statistics were plain NDArrays starting at 0: save_parameters lost them, and the
  zero variance scaled early predictions by sqrt(10). Here they are Parameters starting at 0
  and 1, like nn.BatchNorm's.
- d2lzh.load_data_fashion_mnist cannot find the data offline; gluon_bn's loader reads the
  local, verified files, and trains from one preloaded NDArray instead of per-sample ToTensor.
"""
import argparse

import gluon_bn  # first: on the GPU build it loads the CUDA libraries (gluon_bn.cuda)
from gluon_bn import cli
from mxnet import gluon, init


def train(bn, epochs, data_dir, ctx):
    net = gluon_bn.lenet_bn(bn)
    net.initialize(ctx=ctx, init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    train_iter, test_iter = gluon_bn.load_data_fashion_mnist(256, root=data_dir, ctx=ctx)
    return gluon_bn.train_ch5(net, train_iter, test_iter, 256, trainer, ctx, epochs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_epochs(parser, 5)
    cli.add_data_dir(parser)
    args = parser.parse_args()
    ctx = gluon_bn.try_gpu()
    for bn, title in (('scratch', 'from-scratch BatchNorm'), ('gluon', 'nn.BatchNorm')):
        print(f'# LeNet with {title}')
        history = train(bn, args.epochs, args.data_dir, ctx)
        accuracies = ', '.join(f"{r['test_acc']:.3f}" for r in history)
        print(f'# test acc per epoch: {accuracies}')


if __name__ == '__main__':
    main()
