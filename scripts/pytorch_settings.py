"""The PyTorch ports' settings, in Gluon: how BN-LeNet's test accuracy moves from epoch to epoch.

    python scripts/pytorch_settings.py [--data-dir DIR]

1. The from-scratch BatchNorm (moving variance starting at 1, as the ports do) with SGD at
   lr 1.0 for 10 epochs.
2. nn.BatchNorm with Adam at lr 0.001 for 5 epochs, as the PyTorch log (whose test accuracy
   swings between 0.69 and 0.86 while the training accuracy climbs).
Test accuracy uses the moving averages, so it swings more than the training accuracy; the
summary line gives the range and the number of epochs where it fell.
"""
import argparse

import gluon_bn  # first: on the GPU build it loads the CUDA libraries (gluon_bn.cuda)
from gluon_bn import cli
from mxnet import gluon, init


RUNS = [('from-scratch BatchNorm, SGD lr 1.0, 10 epochs', 'scratch', 'sgd', 1.0, 10),
        ('nn.BatchNorm, Adam lr 0.001, 5 epochs', 'gluon', 'adam', 0.001, 5)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_data_dir(parser)
    args = parser.parse_args()
    ctx = gluon_bn.try_gpu()
    train_iter, test_iter = gluon_bn.load_data_fashion_mnist(256, root=args.data_dir, ctx=ctx)
    for title, bn, optimizer, lr, epochs in RUNS:
        print(f'# {title}')
        net = gluon_bn.lenet_bn(bn)
        net.initialize(ctx=ctx, init=init.Xavier())
        trainer = gluon.Trainer(net.collect_params(), optimizer, {'learning_rate': lr})
        history = gluon_bn.train_ch5(net, train_iter, test_iter, 256, trainer, ctx, epochs)
        test = [r['test_acc'] for r in history]
        drops = sum(b < a for a, b in zip(test, test[1:]))
        print(f"# test acc {min(test):.3f} to {max(test):.3f}, fell in {drops} of "
              f"{len(test) - 1} epochs: {', '.join(f'{a:.3f}' for a in test)}")


if __name__ == '__main__':
    main()
