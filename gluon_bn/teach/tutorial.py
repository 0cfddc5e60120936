"""The older Gluon tutorial ("批量归一化 --- 从0开始"): its network of bare NDArrays, with
gluon_bn.batch_norm2D, reproduced offline and corrected.

The network: conv 20@5x5 -> batch_norm2D -> relu -> maxpool, conv 50@3x3 -> batch_norm2D -> relu
-> maxpool, dense 128 -> relu, dense 10; lr 0.9, batch 256. What was wrong, and what changed
(each mistake is kept in gluon_bn.teach.legacy, with a test):
- Its loop wrote a bare `trainer` where the SGD step belongs, so the weights never changed: its
  log shows loss 158 and test accuracy 0.100 for all five epochs. Here `sgd` updates them.
- Every weight was drawn with scale 1, so the first loss was in the hundreds; here 0.01.
- gamma and beta were drawn at random; here ones and zeros, so BN starts as a standardization.
- The moving variance started at 0; here at 1.
- It read the data through Gluon's FashionMNIST from a Windows path; here from local files.
"""
import time

import mxnet as mx
from mxnet import autograd, gluon, nd

from ..nn import batch_norm2D
from ..train import evaluate_accuracy, load_data_fashion_mnist, try_gpu

BATCH_SIZE, LEARNING_RATE = 256, 0.9

# The tutorial's network, written with bare NDArrays: conv 20@5x5 -> BN -> relu -> maxpool,
# conv 50@3x3 -> BN -> relu -> maxpool, dense 128 -> relu, dense 10.
LAYERS = {'conv1': (20, 1, 5, 5), 'conv2': (50, 20, 3, 3), 'dense1': (1250, 128),
          'dense2': (128, 10)}


def init_params(ctx=None, weight_scale=0.01):
    """The network's parameters and BN statistics, as the tutorial meant them: small random
    weights, zero biases, gamma ones and beta zeros, moving mean 0 and moving variance 1.

    Returns a dict: weights W1..W4 and biases b1..b4, gamma1/beta1 and gamma2/beta2 (trained),
    moving_mean1/moving_variance1 and moving_mean2/moving_variance2 (updated in place).
    """
    ctx = ctx or mx.cpu()
    params = {}
    for i, shape in enumerate(LAYERS.values(), 1):
        params[f'W{i}'] = nd.random.normal(scale=weight_scale, shape=shape, ctx=ctx)
        params[f'b{i}'] = nd.zeros(shape[0] if i <= 2 else shape[1], ctx=ctx)
    for i, channels in ((1, 20), (2, 50)):
        params[f'gamma{i}'] = nd.ones(channels, ctx=ctx)
        params[f'beta{i}'] = nd.zeros(channels, ctx=ctx)
        params[f'moving_mean{i}'] = nd.zeros(channels, ctx=ctx)
        params[f'moving_variance{i}'] = nd.ones(channels, ctx=ctx)
    for name in trained(params):
        params[name].attach_grad()
    return params


def trained(params):
    """Names of the parameters SGD updates: everything but the moving statistics."""
    return [name for name in params if not name.startswith('moving')]


def net(X, params, is_training=False):
    """The tutorial's forward pass; in training mode the moving statistics change in place."""
    p = params
    h = nd.Convolution(X, p['W1'], p['b1'], kernel=(5, 5), num_filter=20)
    h = batch_norm2D(h, p['gamma1'], p['beta1'], is_training, p['moving_mean1'],
                     p['moving_variance1'])
    h = nd.Pooling(nd.relu(h), pool_type='max', kernel=(2, 2), stride=(2, 2))
    h = nd.Convolution(h, p['W2'], p['b2'], kernel=(3, 3), num_filter=50)
    h = batch_norm2D(h, p['gamma2'], p['beta2'], is_training, p['moving_mean2'],
                     p['moving_variance2'])
    h = nd.Pooling(nd.relu(h), pool_type='max', kernel=(2, 2), stride=(2, 2))
    h = nd.relu(nd.dot(nd.flatten(h), p['W3']) + p['b3'])
    return nd.dot(h, p['W4']) + p['b4']


def sgd(params, lr, batch_size):
    """The update step the tutorial's loop left out: param -= lr * grad / batch_size."""
    for name in trained(params):
        params[name][:] = params[name] - lr * params[name].grad / batch_size


def train(epochs=5, data_dir=None, ctx=None):
    """The tutorial's training loop, with the update step it left out, printing its lines."""
    ctx = ctx or try_gpu()
    train_data, test_data = load_data_fashion_mnist(BATCH_SIZE, root=data_dir, ctx=ctx)
    params = init_params(ctx)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    print(('Start training on ', ctx))
    for epoch in range(epochs):
        train_loss = nd.zeros(1, ctx, dtype='float64')
        train_acc = nd.zeros(1, ctx, dtype='float64')
        start = time.time()
        for data, label in train_data:
            with autograd.record():
                output = net(data, params, is_training=True)
                L = loss(output, label)
            L.backward()
            sgd(params, LEARNING_RATE, BATCH_SIZE)
            train_loss += nd.mean(L).astype('float64')
            train_acc += nd.mean(output.argmax(axis=1) == label.astype('float32')).astype('float64')
        n = len(train_data)
        test_acc = evaluate_accuracy(test_data, lambda X: net(X, params), ctx)
        print("Epoch %d. Loss: %g, Train acc %g, Test acc %g, Time %g sec" % (
            epoch, train_loss.asscalar() / n, train_acc.asscalar() / n, test_acc,
            time.time() - start))
