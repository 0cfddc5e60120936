"""The batch-norm chapter's five exercises as experiments, plus the picture the chapter describes
but never shows (how a layer's inputs shift during training, with and without batch norm).

Each exercise is a function returning its measurements as plain data (lists, dicts, floats);
`report` (gluon_bn.teach.report) turns them into figures and a report whose answers follow from
the numbers, and `run_exercises` does both for the command line. Every training run is a seeded
gluon_bn.train.Recipe with HybridBatchNorm, described by a key; `Runs` keeps finished runs in a
JSON file, so an interrupted sweep starts again where it stopped.
"""
import dataclasses
import json
import math
import os
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from ..train import Recipe, Run, checkpoint, engine
from ..train.data import load_arrays
from ..train.models import PLACEMENTS
from ..utils import files
from ..utils.errors import Error

BATCH_SIZE = 256
EXERCISES = ('1', '2', '3', '4', '5', 'shift', 'precise')
SWEEP = 3   # seeds of the precise-statistics sweep: --seed and the next ones
RATES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


class Data:
    """The training subset and the test set as NumPy arrays, and the fixed test batch whose
    first-layer outputs the input-shift picture follows."""

    def __init__(self, data_dir=None, train_size=None):
        self.arrays = load_arrays(data_dir, train_size)
        test_images = self.arrays[1][0]
        self.probe = nd.array(test_images[:BATCH_SIZE, None], dtype='float32') / 255


def recipe(epochs, lr, seed, **network):
    """An exercise's run: BN-LeNet with HybridBatchNorm (or none), batch 256, SGD at `lr`;
    `network` is lenet_bn's placement, use_bias and bn_kwargs."""
    return Recipe(bn='hybrid', epochs=epochs, lr=lr, batch_size=BATCH_SIZE, seed=seed,
                  **network)


def fit(recipe, data, watch=None):
    """Train a recipe quietly on the CPU, calling `watch(net)` before the first epoch and after
    each. A loss that is no longer finite ends the run: it has diverged. Returns the run and its
    per-epoch history (loss, train_acc, test_acc)."""
    run = Run(recipe, data.arrays, mx.cpu())
    history = []
    if watch:
        watch(run.net)
    for record in run.epochs():
        history.append({k: float(record[k]) for k in ('loss', 'train_acc', 'test_acc',
                                                      'test_acc_moving') if k in record})
        if watch:
            watch(run.net)
        if not math.isfinite(record['loss']):
            break
    return run, history


def learned_count(net):
    """The parameters training changes (running statistics left out)."""
    return int(sum(np.prod(p.shape) for p in net.collect_params().values()
                   if 'running' not in p.name))


class Runs:
    """Finished runs by key, kept with the settings they ran with in a JSON file written
    atomically after each run: a sweep that is interrupted starts again at the first run it had
    not finished. A file from other settings is refused, not mixed in."""

    def __init__(self, path=None, settings=None, progress=None):
        self.path, self.settings, self.done = path, settings or {}, {}
        self.progress = progress or (lambda message: print(message, flush=True))
        if path and os.path.lexists(path):
            saved = self._read(path)
            if saved.get('settings') != self.settings:
                raise Error(f"{path} holds runs made with other settings "
                            f"({saved.get('settings')}): choose another folder, or delete "
                            f"it to start again")
            self.done = saved['runs']

    @staticmethod
    def _read(path):
        """The saved file, checked for what this class writes: {'settings': {...}, 'runs':
        {key: a run's result (an object or a list)}}; else an Error naming the file."""
        again = "delete it (or choose another --out) to measure those runs again"
        try:
            with open(path, encoding='utf-8') as f:
                saved = json.load(f)
        except IsADirectoryError:
            raise Error(f"{path} is a folder, where the exercises keep their runs file: "
                        f"move it away, or choose another --out") from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise Error(f"cannot read the runs file {path} ({error}): it was cut short or "
                        f"written by something else; {again}") from None
        runs = saved.get('runs') if isinstance(saved, dict) else None
        if not isinstance(runs, dict) or not all(isinstance(key, str) and
                                                 isinstance(run, (dict, list))
                                                 for key, run in runs.items()):
            raise Error(f"{path} is JSON but not a runs file (expected an object with "
                        f"'settings' and 'runs' by name): {again}")
        return saved

    def get(self, key, run):
        if key in self.done:
            self.progress(f"  {key}: done before, kept")
            return self.done[key]
        start = time.time()
        self.done[key] = run()
        if self.path:   # saved before it is said to be done: a run announced is a run kept
            text = json.dumps({'settings': self.settings, 'runs': self.done}, indent=1)
            files.write_atomically(self.path, (text + '\n').encode())
        self.progress(f"  {key}: {time.time() - start:.1f} s")
        return self.done[key]


# ---- the exercises -----------------------------------------------------------------------------

def bias_before_bn(data, runs, epochs, lr=1.0, seed=0):
    """1. The conv/dense layers before batch norm, with and without their bias: accuracy curves,
    parameter counts, and each layer's bias gradient against its weight gradient (max |db| /
    max |dW| on one batch): batch norm subtracts the batch mean, so a bias before it has no
    effect, and its gradient is zero up to rounding; without batch norm it is not."""
    def run(use_bias):
        trained, history = fit(recipe(epochs, lr, seed, use_bias=use_bias), data)
        return {'history': history, 'parameters': learned_count(trained.net)}

    result = {f"1/bias={b}": runs.get(f"1/bias={b}", lambda: run(b)) for b in (True, False)}
    result['gradient ratio'] = {name: bias_gradient_ratio(recipe(1, lr, seed, placement=p), data)
                                for name, p in (('with BN', 'after_affine'),
                                                ('without BN', 'none'))}
    return result


def bias_gradient_ratio(recipe, data):
    """max |d loss / d bias| / max |d loss / d weight| of the four conv/dense layers that feed a
    sigmoid (or a batch norm), on the first training batch of the freshly built network."""
    run = Run(recipe, data.arrays, mx.cpu())
    X, y = next(iter(run.train_iter))
    with autograd.record():
        total = gluon.loss.SoftmaxCrossEntropyLoss()(run.net(X), y).sum()
    total.backward()
    layers = [layer for layer in run.net if isinstance(layer, (nn.Conv2D, nn.Dense))][:4]
    return [float(np.abs(layer.bias.grad().asnumpy()).max()
                  / np.abs(layer.weight.grad().asnumpy()).max()) for layer in layers]


def learning_rates(data, runs, epochs, rates, seed=0):
    """2. Final test accuracy against the learning rate, LeNet without and with batch norm."""
    return {f"2/{p}/lr={lr:g}": runs.get(f"2/{p}/lr={lr:g}",
                                         lambda: fit(recipe(epochs, lr, seed, placement=p),
                                                     data)[1])
            for p in ('none', 'after_affine') for lr in rates}


def placements(data, runs, epochs, lr=1.0, seed=0):
    """3. Where batch norm goes: accuracy curves of every placement."""
    return {p: runs.get(f"3/{p}", lambda: fit(recipe(epochs, lr, seed, placement=p), data)[1])
            for p in PLACEMENTS}


def frozen_gamma_beta(data, runs, epochs, lr=1.0, seed=0):
    """4. gamma and beta learned, or frozen at 1 and 0 (scale=False, center=False: the layer
    then neither learns nor uses them): accuracy curves, and where gamma and beta end."""
    def run(frozen):
        frozen_kwargs = {'scale': False, 'center': False} if frozen else {}
        trained, history = fit(recipe(epochs, lr, seed, bn_kwargs=frozen_kwargs), data)
        params = trained.net.collect_params().items()
        moved = {kind: [float(np.abs(p.data().asnumpy() - start).max())
                        for name, p in params if name.endswith(kind)]
                 for kind, start in (('gamma', 1.0), ('beta', 0.0))}
        return {'history': history, 'moved': moved}

    return {f"4/frozen={f}": runs.get(f"4/frozen={f}", lambda: run(f)) for f in (False, True)}


def global_statistics(data, runs, epochs, lr=1.0, seed=0):
    """5. use_global_stats=True while training: every batch is normalized with the running
    statistics, which then never change (MXNet updates them only from batch statistics), so
    the layers stay the affine map they started as. Accuracy curves against the usual
    batch norm and against none, and how far the running statistics moved."""
    def run(network):
        trained, history = fit(recipe(epochs, lr, seed, **network), data)
        moved = [float(np.abs(p.data().asnumpy() - (1.0 if 'var' in k else 0.0)).max())
                 for k, p in trained.net.collect_params().items() if 'running' in k]
        return {'history': history, 'running statistics moved': max(moved, default=0.0)}

    kinds = (('batch statistics', {}),
             ('global statistics', {'bn_kwargs': {'use_global_stats': True}}),
             ('no batch norm', {'placement': 'none'}))
    return {f"5/{name}": runs.get(f"5/{name}", lambda: run(network)) for name, network in kinds}


QUANTILES = (5, 25, 50, 75, 95)


def input_shift(data, runs, epochs, lr=1.0, seed=0):
    """The picture the chapter talks about: quantiles of the values entering the first sigmoid
    (a fixed test batch), before training and after each epoch, with and without batch norm."""
    def run(placement):
        shown = 2 if placement == 'after_affine' else 1   # conv (+ BN) before the sigmoid
        bands = []
        _, history = fit(recipe(epochs, lr, seed, placement=placement), data,
                         lambda net: bands.append(quantiles(net, data.probe, shown)))
        return {'history': history, 'quantiles': bands}

    return {f"shift/{p}": runs.get(f"shift/{p}", lambda: run(p))
            for p in ('after_affine', 'none')}


def quantiles(net, X, layers):
    """The QUANTILES of the first `layers` layers' output on X, as in prediction."""
    h = X
    for layer in list(net)[:layers]:
        h = layer(h)
    return [float(q) for q in np.percentile(h.asnumpy(), QUANTILES)]


def precise_statistics(data, runs, epochs, lr=1.0, seeds=tuple(range(SWEEP))):
    """Beyond the chapter: test accuracy after each epoch from the moving averages the layers
    keep, and from exact statistics over the whole training set (gluon_bn.update_bn_stats, the
    --precise-bn of gluon-bn train), in the same run, for several seeds."""
    def run(seed):
        batches = -(-len(data.arrays[0][0]) // BATCH_SIZE)
        return fit(dataclasses.replace(recipe(epochs, lr, seed), precise_bn=batches), data)[1]

    return {f"precise/seed={seed}": runs.get(f"precise/seed={seed}", lambda: run(seed))
            for seed in seeds}


# ---- the command line's run --------------------------------------------------------------------

def run_exercises(out, which=EXERCISES, epochs=5, train_size=20000, lr=1.0, seed=0,
                  data_dir=None):
    """Measure the exercises in `which`, then write their figures and report.md to the folder
    `out`, keeping finished runs in out/runs.json (so that the same call after an interruption
    goes on from the first unfinished run). One call at a time per folder (a lock); other
    settings in the same folder are refused. Returns the files written."""
    from . import report as reporting     # matplotlib: loaded when there is something to draw
    engine.default_settings([mx.cpu()])   # MXNet's fastest settings on one CPU, as for training
    os.makedirs(out, exist_ok=True)
    settings = {'epochs': epochs, 'train_size': train_size, 'lr': lr, 'seed': seed,
                'rates': list(RATES)}
    with checkpoint.FolderLock(out):
        files.remove_leftovers(out)   # a run killed while saving left its temporary file
        runs = Runs(os.path.join(out, 'runs.json'), settings)
        data = Data(data_dir, train_size)
        start = time.time()
        common = dict(data=data, runs=runs, epochs=epochs, seed=seed)
        results = {}
        try:
            for exercise in [e for e in EXERCISES if e in which]:
                print(f"exercise {exercise}", flush=True)
                if exercise == '2':
                    results[exercise] = learning_rates(rates=RATES, **common)
                elif exercise == 'precise':
                    results[exercise] = precise_statistics(data, runs, epochs, lr,
                                                           range(seed, seed + SWEEP))
                else:
                    measure = {'1': bias_before_bn, '3': placements, '4': frozen_gamma_beta,
                               '5': global_statistics, 'shift': input_shift}[exercise]
                    results[exercise] = measure(lr=lr, **common)
        except KeyboardInterrupt as stop:   # Ctrl-C, SIGTERM, SIGHUP: the finished runs stay
            stop.kept = (f"{len(runs.done)} finished run(s) are kept in {runs.path}: the same "
                         f"command goes on from the first unfinished one")
            raise
        images = reporting.figures(results, settings)
        for name, image in images.items():
            files.write_atomically(os.path.join(out, name), image)
        text = reporting.report(results, settings, sorted(images), time.time() - start)
        files.write_atomically(os.path.join(out, 'report.md'), text.encode())
    written = sorted(images) + ['report.md']
    print(f"wrote {', '.join(sorted(images))} and report.md to {out} "
          f"({time.time() - start:.0f} s)")
    return written
