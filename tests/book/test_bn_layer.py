"""gluon-bn run-chapter --bn-layer: every nn.BatchNorm a chapter builds is gluon_bn's
HybridBatchNorm, in NumPy mode (second edition) and in the legacy API (first edition); with
`both`, a chapter that built one runs again, and the table puts the two side by side."""
import json
import re

import nbformat
import pytest

from gluon_bn.book import rerun
from tests.book.test_run_chapter import markdown
from tests.helpers import gluon_bn

# The same small training in each API: 30 SGD steps of a network with a batch norm after a
# convolution and one after a dense layer, on fixed data, seeded, so the two layers' runs print
# the same accuracy (computed with the running statistics) unless one of them computes
# something else.
TRAIN = """
mx.random.seed(0)
net = nn.Sequential()
net.add(nn.Conv2D(4, kernel_size=3), nn.BatchNorm(), nn.Activation('relu'),
        nn.Dense(16), nn.BatchNorm(), nn.Activation('relu'), nn.Dense(3))
net.initialize(mx.init.Xavier())
X = {array}.random.normal(0, 1, (256, 1, 6, 6))
y = ((X[:, 0, 0, 0] > 0).astype('float32') + (X[:, 0, 1, 1] > 0.5).astype('float32'))
trainer = gluon.Trainer(net.collect_params(), 'sgd', {{'learning_rate': 0.5}})
loss = gluon.loss.SoftmaxCrossEntropyLoss()
for step in range(30):
    with autograd.record():
        l = loss(net(X), y)
    l.backward()
    trainer.step(256)
acc = (net(X).argmax(axis=1).astype('float32') == y).astype('float32').mean().asnumpy().item()
print(type(net[1]).__name__, f'test acc {{acc:.3f}}')
"""
CHAPTERS = {
    'numpy-mode.md': ["import mxnet as mx\nfrom mxnet import autograd, gluon, np, npx\n"
                      "from mxnet.gluon import nn\nnpx.set_np()",
                      TRAIN.format(array='np')],
    'legacy.md': ["import mxnet as mx\nfrom mxnet import autograd, gluon, nd\n"
                  "from mxnet.gluon import nn", TRAIN.format(array='nd')],
    'no-bn.md': ["print('test acc 0.500')"],
}

@pytest.fixture(scope='module')
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp('bn')
    for name, cells in CHAPTERS.items():
        (root / name).write_text(markdown(cells))
    out = root / 'out'
    run = gluon_bn('run-chapter', root, '--bn-layer', 'both', '--report', out / 'report.json',
                   '--notebook', out / 'nbs')
    report = json.loads((out / 'report.json').read_text())
    return run, {r['chapter']: r for r in report['results']}, out


@pytest.mark.slow
def test_each_chapter_that_builds_a_batch_norm_runs_again_on_gluon_bns(both):
    run, results, _ = both
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ('numpy-mode.md', 'legacy.md'):
        first, twin = results[name], results[name]['with_gluon_bn']
        assert first['passed'] and twin['passed'] and first['batch_norms'] == 2
        assert (first['bn_layer'], twin['bn_layer']) == ('mxnet', 'gluon_bn')
        text = run.stdout.split(f'=== {name}\n')[1].split('\n===')[0]
        twin_text = run.stdout.split(f'=== {name} [gluon_bn]\n')[1].split('\n===')[0]
        assert 'BatchNorm test acc' in text and 'HybridBatchNorm test acc' in twin_text
        assert "--bn-layer gluon_bn: nn.BatchNorm is gluon_bn's HybridBatchNorm here" in \
            twin_text
        # the regression test: the same training, the same printed accuracy
        assert first['accuracy'] == twin['accuracy'] and first['accuracy'] > 0.8
    assert results['no-bn.md']['batch_norms'] == 0 and results['no-bn.md']['with_gluon_bn'] is None
    assert '=== no-bn.md [gluon_bn]' not in run.stdout


@pytest.mark.slow
def test_the_table_shows_both_runs_side_by_side(both):
    run, results, _ = both
    table = run.stdout[run.stdout.index('\nchapter '):]
    assert 'gluon_bn: result' in table.splitlines()[1]
    acc = results['legacy.md']['accuracy']
    assert re.search(rf'\nlegacy.md +passed +{acc:.3f} .* passed +{acc:.3f} +\d+\n', table)
    assert re.search(r'\nno-bn.md +passed +0.500 .* no nn.BatchNorm', table)
    assert "with gluon_bn's HybridBatchNorm for nn.BatchNorm: 2 of the 2 that build one " \
           "passed" in table


@pytest.mark.slow
def test_each_run_keeps_its_own_notebook(both):
    _, _, out = both
    first = nbformat.read(out / 'nbs' / 'legacy.ipynb', as_version=4)
    twin = nbformat.read(out / 'nbs' / 'legacy.gluon_bn.ipynb', as_version=4)
    assert '--bn-layer gluon_bn' not in first.cells[0].source
    assert "`--bn-layer gluon_bn`: every `nn.BatchNorm` is gluon_bn's" in twin.cells[0].source


def test_the_swap_comes_off_again():
    from mxnet.gluon import nn

    from gluon_bn import HybridBatchNorm
    before = nn.BatchNorm
    with rerun.counting_batch_norms('gluon_bn'):
        assert nn.BatchNorm is HybridBatchNorm
        layer = nn.BatchNorm(in_channels=3)
        assert isinstance(layer, HybridBatchNorm) and rerun.stats()['batch_norms'] >= 1
    assert nn.BatchNorm is before and type(nn.BatchNorm()) is before
    with pytest.raises(ValueError, match='bn_layer must be one of mxnet, gluon_bn'):
        with rerun.counting_batch_norms('torch'):
            pass
