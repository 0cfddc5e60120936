"""The older Gluon tutorial's batch norm from scratch ("批量归一化 --- 从0开始"), reproduced
offline and corrected.

    python scripts/tutorial_bn_nd.py [--epochs 5] [--data-dir DIR]

The tutorial's network, in bare NDArrays: conv 20@5x5 -> batch_norm2D -> relu -> maxpool,
conv 50@3x3 -> batch_norm2D -> relu -> maxpool, dense 128 -> relu, dense 10; lr 0.9, batch 256.

What was wrong, and what changed (each mistake is kept in gluon_bn.legacy, with a test):
- Its loop wrote a bare `trainer` where the SGD step belongs, so the weights never changed:
  its log shows loss 158 and test accuracy 0.100 for all five epochs. Here gluon_bn.tutorial.sgd
  updates them.
- Every weight was drawn with scale 1, so the first loss was in the hundreds; here 0.01.
- gamma and beta were drawn at random; here ones and zeros, so BN starts as a standardization.
- The moving variance started at 0; here at 1.
- It read the data through Gluon's FashionMNIST from a Windows path; here from local files.
"""
import argparse
import time

import gluon_bn  # first: on the GPU build it loads the CUDA libraries (gluon_bn.cuda)
from mxnet import autograd, gluon, nd

from gluon_bn import cli, tutorial


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_epochs(parser, 5)
    cli.add_data_dir(parser)
    args = parser.parse_args()
    ctx = gluon_bn.try_gpu()
    batch_size, learning_rate = 256, 0.9
    train_data, test_data = gluon_bn.load_data_fashion_mnist(batch_size, root=args.data_dir,
                                                             ctx=ctx)
    params = tutorial.init_params(ctx)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    print(('Start training on ', ctx))
    for epoch in range(args.epochs):
        train_loss, train_acc = nd.zeros(1, ctx, dtype='float64'), nd.zeros(1, ctx, dtype='float64')
        start = time.time()
        for data, label in train_data:
            with autograd.record():
                output = tutorial.net(data, params, is_training=True)
                L = loss(output, label)
            L.backward()
            tutorial.sgd(params, learning_rate, batch_size)
            train_loss += nd.mean(L).astype('float64')
            train_acc += nd.mean(output.argmax(axis=1) == label.astype('float32')).astype('float64')
        n = len(train_data)
        test_acc = gluon_bn.evaluate_accuracy(test_data, lambda X: tutorial.net(X, params), ctx)
        print("Epoch %d. Loss: %g, Train acc %g, Test acc %g, Time %g sec" % (
            epoch, train_loss.asscalar() / n, train_acc.asscalar() / n, test_acc,
            time.time() - start))


if __name__ == '__main__':
    main()
