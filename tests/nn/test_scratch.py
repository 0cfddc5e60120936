"""Behaviour of the three from-scratch APIs beyond their numbers: mode, state, persistence."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from gluon_bn import BatchNorm, batch_norm, batch_norm2D, reference


def pre_activations(shape, seed=0):
    rng = np.random.default_rng(seed)
    return nd.array(rng.normal(size=shape) * 3 + 2)


def book_params(C, ndim):
    shape = (1, C) if ndim == 2 else (1, C, 1, 1)
    return (nd.ones(shape), nd.zeros(shape), nd.full(shape, 0.5), nd.full(shape, 4.0))


@pytest.mark.parametrize('shape', [(8, 5), (4, 3, 6, 6)])
def test_batch_norm_mode_comes_from_is_training_called(shape):
    X = pre_activations(shape)
    gamma, beta, mm, mv = book_params(shape[1], len(shape))
    predicted, mm_out, mv_out = batch_norm(X, gamma, beta, mm, mv, 1e-5, 0.9)
    assert mm_out is mm and mv_out is mv
    np.testing.assert_allclose(predicted.asnumpy(), ((X - 0.5) / np.sqrt(4 + 1e-5)).asnumpy(),
                               rtol=1e-6)
    for scope in (autograd.record, autograd.train_mode):
        with scope():
            trained, mm_new, mv_new = batch_norm(X, gamma, beta, mm, mv, 1e-5, 0.9)
        y, mean, var = reference.train_forward(X.asnumpy(), np.ones(shape[1]),
                                               np.zeros(shape[1]), 1e-5)
        np.testing.assert_allclose(trained.asnumpy(), y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(mm_new.asnumpy().ravel(), 0.9 * 0.5 + 0.1 * mean, rtol=1e-6)
        np.testing.assert_allclose(mv_new.asnumpy().ravel(), 0.9 * 4 + 0.1 * var, rtol=1e-6)


def test_batch_norm_never_writes_the_callers_arrays():
    X = pre_activations((8, 3, 4, 4))
    arrays = book_params(3, 4)
    before = [a.asnumpy() for a in arrays]
    with autograd.record():
        batch_norm(X, *arrays, eps=1e-5, momentum=0.9)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a.asnumpy(), b)


def trained_block(num_features, num_dims, shape, steps=3):
    block = BatchNorm(num_features, num_dims=num_dims)
    block.initialize()
    for step in range(steps):
        with autograd.record():
            block(pre_activations(shape, seed=step))
    return block


def test_prediction_of_one_sample_does_not_depend_on_its_batch():
    block = trained_block(6, 2, (32, 6))
    batch = pre_activations((10, 6), seed=9)
    together = block(batch).asnumpy()
    alone = np.concatenate([block(batch[i:i + 1]).asnumpy() for i in range(10)])
    np.testing.assert_allclose(alone, together, rtol=1e-6)
    # The uncalled is_training bug normalized a single sample by its own statistics: out = beta.
    assert np.abs(alone - block.beta.data().asnumpy()).min() > 1e-3


def test_block_updates_its_statistics_only_when_training():
    block = trained_block(4, 4, (8, 4, 5, 5), steps=1)
    X = pre_activations((8, 4, 5, 5), seed=5)
    def stats():
        return block.moving_mean.data().asnumpy(), block.moving_var.data().asnumpy()

    before = stats()
    block(X)                                  # prediction
    with autograd.record(train_mode=False):
        block(X)                              # recorded, but prediction mode
    for a, b in zip(stats(), before):
        np.testing.assert_array_equal(a, b)
    with autograd.record():
        block(X)
    _, mean, var = reference.train_forward(X.asnumpy(), np.ones(4), np.zeros(4), 1e-5)
    np.testing.assert_allclose(stats()[0].ravel(), 0.9 * before[0].ravel() + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(stats()[1].ravel(), 0.9 * before[1].ravel() + 0.1 * var, rtol=1e-5)


def test_block_initialises_like_nn_batchnorm_whatever_the_global_initializer():
    block = BatchNorm(3, num_dims=4)
    block.initialize(init=init.Xavier())
    builtin = nn.BatchNorm(in_channels=3)
    builtin.initialize(init=init.Xavier())
    for ours, theirs in (('gamma', 'gamma'), ('beta', 'beta'),
                         ('moving_mean', 'running_mean'), ('moving_var', 'running_var')):
        np.testing.assert_array_equal(getattr(block, ours).data().asnumpy().ravel(),
                                      getattr(builtin, theirs).data().asnumpy())


def test_block_save_load_round_trips_the_moving_statistics(tmp_path):
    block = trained_block(5, 4, (6, 5, 3, 3))
    path = str(tmp_path / 'bn.params')
    block.save_parameters(path)
    loaded = BatchNorm(5, num_dims=4)
    loaded.load_parameters(path)
    assert sorted(nd.load(path)) == ['beta', 'gamma', 'moving_mean', 'moving_var']
    X = pre_activations((2, 5, 3, 3), seed=7)
    np.testing.assert_array_equal(loaded(X).asnumpy(), block(X).asnumpy())
    np.testing.assert_array_equal(loaded.moving_var.data().asnumpy(),
                                  block.moving_var.data().asnumpy())


def test_trainer_leaves_the_moving_statistics_to_the_forward_pass():
    block = BatchNorm(3, num_dims=2)
    block.initialize()
    trainer = gluon.Trainer(block.collect_params(), 'sgd', {'learning_rate': 1.0})
    X = pre_activations((16, 3))
    with autograd.record():
        loss = (block(X) ** 3).sum()
    after_forward = block.moving_mean.data().asnumpy()
    loss.backward()
    trainer.step(16)
    np.testing.assert_array_equal(block.moving_mean.data().asnumpy(), after_forward)
    assert np.abs(block.gamma.data().asnumpy() - 1).max() > 0


def test_block_statistics_follow_the_inputs_context():
    contexts = [mx.cpu(0), mx.cpu(1)]
    block = BatchNorm(3, num_dims=2)
    block.initialize(ctx=contexts)
    with autograd.record():
        block(pre_activations((16, 3)).as_in_context(contexts[1]))
    np.testing.assert_array_equal(block.moving_mean.data(contexts[0]).asnumpy(), 0)
    assert np.abs(block.moving_mean.data(contexts[1]).asnumpy()).min() > 0


def test_misspelt_nums_dims_is_accepted_with_a_warning():
    with pytest.warns(DeprecationWarning, match='nums_dims'):
        block = BatchNorm(6, nums_dims=4)
    assert repr(block) == 'BatchNorm(6, num_dims=4, eps=1e-05, momentum=0.9, fast=True)'
    with pytest.raises(TypeError, match='both num_dims and its misspelling'):
        BatchNorm(6, num_dims=4, nums_dims=4)
    with pytest.raises(TypeError, match="missing required argument 'num_dims'"):
        BatchNorm(6)


@pytest.mark.parametrize('shape', [(8, 5), (4, 3, 6, 6)])
def test_batch_norm2D_updates_the_callers_statistics_in_place(shape):
    C = shape[1]
    X = pre_activations(shape)
    gamma, beta = nd.ones(C), nd.zeros(C)
    moving_mean, moving_var = nd.zeros(C), nd.ones(C)
    with autograd.record():
        batch_norm2D(X, gamma, beta, True, moving_mean, moving_var)
    _, mean, var = reference.train_forward(X.asnumpy(), np.ones(C), np.zeros(C), 1e-5)
    np.testing.assert_allclose(moving_mean.asnumpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(moving_var.asnumpy(), 0.9 + 0.1 * var, rtol=1e-5)
    kept = moving_mean.asnumpy(), moving_var.asnumpy()
    predicted = batch_norm2D(X, gamma, beta, False, moving_mean, moving_var)
    np.testing.assert_array_equal(moving_mean.asnumpy(), kept[0])
    np.testing.assert_array_equal(moving_var.asnumpy(), kept[1])
    expected = reference.predict(X.asnumpy(), np.ones(C), np.zeros(C), *kept, 1e-5)
    np.testing.assert_allclose(predicted.asnumpy(), expected, rtol=1e-5, atol=1e-6)
