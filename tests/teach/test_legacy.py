"""The bug zoo: each original mistake shows its symptom, and its correction does not."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from gluon_bn import BatchNorm, batch_norm, batch_norm2D
from gluon_bn.teach import legacy, tutorial


def book_arrays(C):
    return nd.ones((1, C)), nd.full((1, C), 0.7), nd.full((1, C), 0.5), nd.full((1, C), 2.0)


@pytest.mark.parametrize('function', [legacy.batch_norm_uncalled_is_training, batch_norm],
                         ids=['uncalled', 'corrected'])
def test_uncalled_is_training_normalizes_predictions_by_the_batch(function):
    X = nd.array(np.random.default_rng(0).normal(size=(8, 5)) * 3 + 1)
    gamma, beta, mm, mv = book_arrays(5)
    alone = function(X[0:1], gamma, beta, mm, mv, 1e-5, 0.9)[0].asnumpy()
    in_batch = function(X, gamma, beta, mm, mv, 1e-5, 0.9)[0].asnumpy()[0:1]
    if function is legacy.batch_norm_uncalled_is_training:
        np.testing.assert_allclose(alone, 0.7)              # a single sample comes out as beta
        assert np.abs(alone - in_batch).max() > 0.1         # and depends on its batch
    else:
        np.testing.assert_allclose(alone, in_batch, rtol=1e-6)
        assert np.abs(alone - 0.7).min() > 1e-3


def test_self_param_raises_attribute_error():
    with pytest.raises(AttributeError, match="param"):
        legacy.BatchNormParamTypo(6, 4)
    BatchNorm(6, num_dims=4)


def test_moving_variance_starting_at_zero_scales_predictions_by_sqrt_10():
    X = nd.array(np.random.default_rng(1).normal(size=(4096, 4)))   # mean 0, variance 1
    outputs = []
    for layer in (legacy.BatchNormZeroMovingVar(4, 2), BatchNorm(4, num_dims=2)):
        layer.initialize()
        with autograd.record():
            layer(X)                                  # one training batch
        outputs.append(layer(X).asnumpy())            # then a prediction
    wrong, corrected = (o.std(axis=0) for o in outputs)
    np.testing.assert_allclose(wrong / corrected, np.sqrt(10), rtol=0.03)
    np.testing.assert_allclose(corrected, 1, rtol=0.05)


def blob_batches(n, seed, batch=64):
    """Fashion-MNIST-shaped batches of a learnable toy task: the label is where a bar is."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.uniform(0, 0.3, (n, 1, 28, 28)).astype(np.float32)
    for i, label in enumerate(labels):
        images[i, 0, 2 * label:2 * label + 6, 4:24] += 0.7
    return [(nd.array(images[s:s + batch]), nd.array(labels[s:s + batch]))
            for s in range(0, n, batch)]


def train(params, update, batches, lr=0.9):
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for X, y in batches:
        with autograd.record():
            l = loss(tutorial.net(X, params, is_training=True), y)
        l.backward()
        update(params, lr, X.shape[0])


def accuracy(params, batches):
    correct = sum(float((tutorial.net(X, params).argmax(axis=1) == y).sum().asscalar())
                  for X, y in batches)
    return correct / sum(X.shape[0] for X, _ in batches)


@pytest.mark.slow
def test_missing_update_step_leaves_the_weights_and_accuracy_at_chance():
    batches, test = blob_batches(1280, seed=2), blob_batches(640, seed=3)
    for update, expect_learning in ((legacy.tutorial_update_step, False), (tutorial.sgd, True)):
        mx.random.seed(0)
        params = tutorial.init_params()
        before = {k: v.asnumpy() for k, v in params.items() if k.startswith('W')}
        for epoch in range(6):
            train(params, update, batches)
        changed = any(np.abs(params[k].asnumpy() - v).max() > 0 for k, v in before.items())
        assert changed == expect_learning
        if expect_learning:
            assert accuracy(params, test) > 0.5      # five times chance
        else:
            assert accuracy(params, test) < 0.2      # chance is 0.1


def test_weight_scale_1_makes_the_loss_explode():
    X, y = blob_batches(256, seed=4, batch=256)[0]
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    with autograd.record():   # training mode, as the tutorial's first batch
        wrong = loss(tutorial.net(X, legacy.tutorial_init_params(), True), y).mean().asscalar()
        right = loss(tutorial.net(X, tutorial.init_params(), True), y).mean().asscalar()
    assert wrong > 20          # the tutorial's log: loss 158
    assert right < 3           # about ln(10) = 2.3 for an untrained 10-class classifier


def test_random_gamma_and_beta_break_the_standardized_output():
    h = nd.array(np.random.default_rng(5).normal(size=(64, 20, 24, 24)) * 2 + 3)
    for params, standardized in ((legacy.tutorial_init_params(), False),
                                 (tutorial.init_params(), True)):
        out = batch_norm2D(h, params['gamma1'], params['beta1'], True, params['moving_mean1'],
                           params['moving_variance1']).asnumpy()
        means, stds = out.mean(axis=(0, 2, 3)), out.std(axis=(0, 2, 3))
        ok = np.abs(means).max() < 1e-3 and np.abs(stds - 1).max() < 1e-3
        assert ok == standardized
