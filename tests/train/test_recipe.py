"""The one training recipe (gluon_bn.train.Recipe and Run) and the one LeNet builder: what the
command line, the exercises, the benchmarks and the book's programs rely on."""
import re

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd
from mxnet.gluon import nn

from gluon_bn import HybridBatchNorm
from gluon_bn.train import PLACEMENTS, Recipe, Run, lenet_bn
from gluon_bn.train import checkpoint


def arrays(n_train=384, n_test=128, seed=0):
    """Fashion-MNIST-shaped uint8 images with class-dependent blobs, so that a net can learn."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 10, n).astype(np.int32)
        images = rng.integers(0, 80, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label:2 * label + 8, 4:24] += 170
        return images, labels
    return split(n_train), split(n_test)


DATA = arrays()
RECIPE = Recipe(bn='hybrid', epochs=3, batch_size=64, seed=5)


def untimed(history):
    return [{k: v for k, v in r.items() if k != 'seconds'} for r in history]


def parameters(net):
    return {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}


def test_quiet_and_printing_runs_train_the_same_and_only_one_speaks(capsys):
    quiet = Run(RECIPE, DATA, mx.cpu()).fit(quiet=True)
    assert capsys.readouterr().out == ''
    loud = Run(RECIPE, DATA, mx.cpu()).fit()
    lines = capsys.readouterr().out.splitlines()
    assert untimed(quiet) == untimed(loud) and len(quiet) == 3
    assert lines[0] == 'training on cpu(0)' and len(lines) == 4
    assert re.fullmatch(r'epoch 3, loss \d\.\d{4}, train acc \d\.\d{3}, test acc \d\.\d{3}, '
                        r'time \d+\.\d sec', lines[3])
    assert loud[-1]['test_acc'] > 0.5   # it learned (chance is 0.1)


def test_runs_taken_an_epoch_at_a_time_in_turns_train_as_alone():
    """What the benchmarks do: each run reseeds MXNet from (seed, epoch) before every epoch, so
    another run's draws in between change nothing."""
    alone = Run(RECIPE, DATA, mx.cpu())
    alone.fit(quiet=True)
    first, second = Run(RECIPE, DATA, mx.cpu()), Run(RECIPE, DATA, mx.cpu())
    turns = [first.epochs(), second.epochs()]
    for _ in range(RECIPE.epochs):
        for run in turns:
            next(run)
    for run in (first, second):
        assert untimed(run.history) == untimed(alone.history)
        for name, value in parameters(run.net).items():
            assert value.tobytes() == parameters(alone.net)[name].tobytes(), name


def test_a_run_saved_after_an_epoch_and_restored_ends_as_the_uninterrupted_one(tmp_path):
    whole = Run(RECIPE, DATA, mx.cpu())
    whole.fit(quiet=True)
    cut = Run(RECIPE, DATA, mx.cpu())
    next(cut.epochs())
    path = cut.save(str(tmp_path))
    resumed = Run(RECIPE, DATA, mx.cpu())
    resumed.restore(checkpoint.read(path))
    assert len(resumed.history) == 1
    resumed.fit(quiet=True, after_epoch=lambda run: run.save(str(tmp_path)))
    assert untimed(resumed.history) == untimed(whole.history)
    for name, value in parameters(resumed.net).items():
        assert value.tobytes() == parameters(whole.net)[name].tobytes(), name
    assert checkpoint.latest(str(tmp_path)).endswith('epoch-0003.ckpt')


def test_a_recipe_trains_on_its_train_size_only():
    run = Run(Recipe(bn='gluon', epochs=1, batch_size=64, train_size=100), DATA, mx.cpu())
    assert run.train_iter.images.shape[0] == 100 and len(run.train_iter) == 2


def layer_kinds(net):
    """'conv', 'dense', 'bn' and 'sigmoid' for the layers that matter, in order."""
    names = []
    for layer in net:
        if isinstance(layer, nn.Conv2D):
            names.append('conv')
        elif isinstance(layer, nn.Dense):
            names.append('dense')
        elif isinstance(layer, nn.BatchNorm):
            names.append('bn')
        elif isinstance(layer, nn.Activation):
            names.append('sigmoid')
    return ' '.join(names)


@pytest.mark.parametrize('placement, kinds', [
    ('after_affine', 'conv bn sigmoid conv bn sigmoid dense bn sigmoid dense bn sigmoid dense'),
    ('after_activation', 'conv sigmoid bn conv sigmoid bn dense sigmoid bn dense sigmoid bn '
                         'dense'),
    ('conv_only', 'conv bn sigmoid conv bn sigmoid dense sigmoid dense sigmoid dense'),
    ('dense_only', 'conv sigmoid conv sigmoid dense bn sigmoid dense bn sigmoid dense'),
    ('none', 'conv sigmoid conv sigmoid dense sigmoid dense sigmoid dense'),
])
def test_the_builder_puts_batch_norm_where_the_placement_says(placement, kinds):
    assert set(PLACEMENTS) == {'after_affine', 'after_activation', 'conv_only', 'dense_only',
                               'none'}
    net = lenet_bn('hybrid', placement=placement)
    assert layer_kinds(net) == kinds
    net.initialize()
    assert net(nd.zeros((2, 1, 28, 28))).shape == (2, 10)


def test_without_bias_only_the_layers_before_a_batch_norm_lose_it():
    net = lenet_bn('hybrid', placement='conv_only', use_bias=False, use_global_stats=True)
    affine = [layer for layer in net if isinstance(layer, (nn.Conv2D, nn.Dense))]
    assert [layer.bias is None for layer in affine] == [True, True, False, False, False]
    assert all(layer._kwargs['use_global_stats'] for layer in net
               if isinstance(layer, HybridBatchNorm))


def test_a_placement_or_kind_it_does_not_know_is_refused():
    with pytest.raises(ValueError, match='placement must be one of'):
        lenet_bn('hybrid', placement='before_everything')
    with pytest.raises(ValueError, match="one of scratch, gluon, hybrid, sync, none; got 'batch'"):
        lenet_bn('batch')


def test_a_diverged_run_writes_strict_json_and_says_why_null():
    import json

    from gluon_bn.train.recipe import metrics
    history = [{'epoch': 1, 'loss': 2.3, 'train_acc': 0.1, 'test_acc': 0.1},
               {'epoch': 2, 'loss': float('nan'), 'train_acc': 0.1, 'test_acc': float('inf')}]

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    written = json.loads(metrics(Recipe(epochs=2), history), parse_constant=refuse)
    assert written['epochs'][1] == {'epoch': 2, 'loss': None, 'train_acc': 0.1, 'test_acc': None}
    assert written['epochs'][0]['loss'] == 2.3 and 'null' in written['notes']
    assert 'notes' not in json.loads(metrics(Recipe(epochs=1), history[:1]))
