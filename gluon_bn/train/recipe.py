"""The one training recipe: BN-LeNet on Fashion-MNIST, d2l-style (Xavier, SGD, train_ch5).

- Recipe: the settings that decide a run's numbers.
- build: the recipe's network, initialized and hybridized, and its Trainer.
- Run: a recipe on its devices with its data, trained all at once (`fit`, printing d2lzh's lines
  or nothing) or an epoch at a time (`epochs`); it saves and restores checkpoints.
- train: the whole run as `gluon-bn train` does it, top to bottom.

The command line, the exercises, the benchmarks and the book's programs all train through Run.
"""
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from typing import Optional

import mxnet as mx
from mxnet import gluon, init, nd

from ..nn import update_bn_stats
from ..utils import figures, files
from ..utils.errors import Error
from . import checkpoint, engine
from .data import array_loaders, load_arrays
from .devices import try_gpu, works
from .loop import epochs, evaluate_accuracy, hybridize, train_ch5
from .models import lenet_bn


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a BN-LeNet training run is made of. The defaults are the chapter's."""
    bn: str = 'scratch'                # gluon_bn.train.models.BN_CHOICES
    epochs: int = 5
    lr: float = 1.0
    batch_size: int = 256
    train_size: Optional[int] = None   # the first N training images only
    seed: Optional[int] = None         # None: not seeded
    optimizer: str = 'sgd'
    placement: str = 'after_affine'    # where batch norm goes (train.models.lenet_bn)
    use_bias: bool = True              # for the layers before a batch norm
    bn_kwargs: dict = dataclasses.field(default_factory=dict)   # for every batch-norm layer
    precise_bn: Optional[int] = None   # exact statistics over N training batches before each test

    def checkpoint_settings(self):
        """What a checkpoint records of the run, and a resumed run must match."""
        return {'bn': self.bn, 'lr': self.lr, 'batch_size': self.batch_size,
                'train_size': self.train_size, 'seed': self.seed}


def build(recipe, ctxs=None, kvstore='device', hybridize_net=True):
    """The recipe's network, initialized with Xavier on `ctxs` (default: cpu(0)) and
    hybridized (gluon_bn.train.loop.hybridize), and a Trainer for it."""
    ctxs = list(ctxs or [mx.cpu()])
    net = lenet_bn(recipe.bn, len(ctxs), recipe.placement, recipe.use_bias, **recipe.bn_kwargs)
    net.initialize(ctx=ctxs, init=init.Xavier())
    if hybridize_net:
        hybridize(net, len(ctxs))
    trainer = gluon.Trainer(net.collect_params(), recipe.optimizer,
                            {'learning_rate': recipe.lr}, kvstore=kvstore)
    return net, trainer


class Run:
    """A recipe trained on its devices.

    Parameters
    ----------
    recipe : Recipe
    arrays : the data as gluon_bn.train.data.load_arrays returns it (cut to recipe.train_size
        here too), held on the first device.
    ctx : a context or a list of them (data parallelism); default try_gpu().
    kvstore, workers : the Trainer's store, and how many workers' batches each step adds up
        (a distributed KVStore); a step then covers batch_size * workers samples.

    A seeded recipe seeds Python, NumPy and MXNet before the network is built, and MXNet again
    before every epoch from (seed, epoch) (MXNet cannot hand out its generator's state), so that
    a run resumed from a checkpoint draws what the uninterrupted run drew.
    """

    def __init__(self, recipe, arrays, ctx=None, kvstore='device', workers=1):
        self.recipe = recipe
        self.ctx = ctx or try_gpu()
        ctxs = list(self.ctx) if isinstance(self.ctx, (list, tuple)) else [self.ctx]
        (train_x, train_y), test = arrays
        train = train_x[:recipe.train_size], train_y[:recipe.train_size]
        self.train_iter, self.test_iter = array_loaders((train, test), recipe.batch_size,
                                                        ctx=ctxs[0])
        if recipe.seed is not None:
            checkpoint.seed_everything(recipe.seed)
        self.net, self.trainer = build(recipe, ctxs, kvstore)
        if recipe.precise_bn and recipe.precise_bn > len(self.train_iter):
            raise Error(f"--precise-bn {recipe.precise_bn}: an epoch has {len(self.train_iter)} "
                        f"batches of {recipe.batch_size}; give --precise-bn "
                        f"{len(self.train_iter)} or less")
        self.step_size = recipe.batch_size * workers
        self.history = []

    def _precise(self):
        """After an epoch's training (recipe.precise_bn): the test accuracy from the moving
        averages, then every batch norm's statistics set exactly over that many batches."""
        moving = evaluate_accuracy(self.test_iter, self.net, self.ctx)
        ctx = self.ctx[0] if isinstance(self.ctx, (list, tuple)) else self.ctx
        done = update_bn_stats(self.net, self.train_iter, self.recipe.precise_bn, ctx=ctx)
        return {'test_acc_moving': moving, 'precise_batches': done.batches}

    def _reseed(self, epoch):
        if self.recipe.seed is not None:
            mx.random.seed(checkpoint.epoch_seed(self.recipe.seed, epoch))

    def epochs(self, progress=None):
        """Train the epochs not done yet, one per step of the iteration, printing nothing:
        yields each epoch's record (epoch, loss, train_acc, test_acc, seconds)."""
        for record in epochs(self.net, self.train_iter, self.test_iter, self.step_size,
                             self.trainer, self.ctx, self.recipe.epochs, progress,
                             start_epoch=len(self.history), before_epoch=self._reseed,
                             before_test=self._before_test()):
            self.history.append(record)
            yield record

    def fit(self, quiet=False, progress=None, after_epoch=None):
        """Train the epochs not done yet, printing d2lzh's lines unless `quiet`;
        `after_epoch(run)` after each. Returns the history of the whole run."""
        if quiet:
            for _ in self.epochs(progress):
                if after_epoch:
                    after_epoch(self)
        else:
            train_ch5(self.net, self.train_iter, self.test_iter, self.step_size, self.trainer,
                      self.ctx, self.recipe.epochs, progress, start_epoch=len(self.history),
                      before_epoch=self._reseed, before_test=self._before_test(),
                      after_epoch=lambda done: self._after(done[-1], after_epoch))
        return self.history

    def _before_test(self):
        return self._precise if self.recipe.precise_bn else None

    def _after(self, record, after_epoch):
        self.history.append(record)
        if after_epoch:
            after_epoch(self)

    def save(self, folder):
        """This run's checkpoint after its last epoch, in folder (gluon_bn.train.checkpoint)."""
        return checkpoint.save(folder, len(self.history), self.net, self.trainer,
                               self.recipe.checkpoint_settings(), self.history)

    def restore(self, saved):
        """Continue from a checkpoint as checkpoint.read returns it: parameters, optimizer
        states, history and random states. CheckpointError if it is another run's."""
        shape = (1,) + self.train_iter.images.shape[1:]
        self.net(nd.zeros(shape, ctx=self.train_iter.images.context))   # shapes, predicting
        _, self.history = checkpoint.restore(saved, self.net, self.trainer,
                                             self.recipe.checkpoint_settings())


# --- the command line's run -------------------------------------------------------------------

def progress_bar(epoch, done, total, width=30):
    filled = width * done // total
    end = '\n' if done == total else ''
    print(f"\repoch {epoch} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
          end=end, file=sys.stderr, flush=True)


def plot(history, format='png'):
    """Loss and accuracies per epoch, as the bytes of an image file."""
    fig = figures.figure(figsize=(9, 3.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epoch_numbers = [r['epoch'] for r in history]
    ax_loss.plot(epoch_numbers, [r['loss'] for r in history], 'o-')
    ax_loss.set(xlabel='epoch', ylabel='training loss')
    ax_acc.plot(epoch_numbers, [r['train_acc'] for r in history], 'o-', label='train')
    ax_acc.plot(epoch_numbers, [r['test_acc'] for r in history], 's--', label='test')
    ax_acc.set(xlabel='epoch', ylabel='accuracy')
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.set_xticks(epoch_numbers)
        ax.grid(alpha=0.3)
    return figures.image(fig, format, dpi=120)


def metrics(recipe, history):
    """The metrics file: the settings and each epoch's loss and accuracies, not the timings, so
    that the same seed on the CPU writes the same bytes, also after an interruption. Strict
    JSON: a value that is not finite (a diverged run's NaN) is null, and a note says so."""
    names = ('epoch', 'loss', 'train_acc', 'test_acc', 'test_acc_moving')   # the last: only
    per_epoch = [{k: _finite(r[k]) for k in names if k in r}                # epochs trained
                 for r in history]                                          # with --precise-bn
    settings = {**recipe.checkpoint_settings(), 'epochs': recipe.epochs}
    if recipe.precise_bn:
        settings['precise_bn'] = recipe.precise_bn
    content = {'settings': settings, 'epochs': per_epoch}
    if any(v is None for r in per_epoch for v in r.values()):
        content['notes'] = ("null: the value was not a finite number (the run diverged: NaN or "
                            "infinity), written as null so that strict JSON readers take the file")
    return json.dumps(content, indent=2, allow_nan=False) + '\n'


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


# What MXNet's distributed KVStore reads to find its scheduler (gluon_bn.train.dist sets it).
DIST_ENVIRONMENT = ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_SERVER',
                    'DMLC_NUM_WORKER')


def train(recipe, *, ctx=None, kvstore=None, data_dir=None, checkpoint_dir=None, resume=False,
          out=None, plot_path=None, progress=False):
    """Train BN-LeNet as `gluon-bn train` does: choose MXNet's engine, take the checkpoint
    folder (resuming from it with `resume`), train, print d2lzh's lines and a summary, then
    write the metrics file `out` and the figure `plot_path`. Returns the history.

    ctx: a list of contexts (default [try_gpu()]); kvstore: 'dist_sync' and the like, to train
    as one worker of a distributed KVStore (on its shard of the data). gluon_bn.Error says what
    stopped the run; results that cannot be written where asked are kept in the temporary folder
    and named in the error.
    """
    if kvstore and kvstore.startswith('dist'):
        missing = [name for name in DIST_ENVIRONMENT if name not in os.environ]
        if missing:
            raise Error(f"--kvstore {kvstore} needs the environment a launcher gives each "
                        f"process ({', '.join(missing)} unset): run it as `gluon-bn launch-dist "
                        f"-- gluon-bn train --kvstore {kvstore}`")
    ctxs = ctx or [try_gpu()]
    engine.default_settings(ctxs, kvstore)   # before any operator runs: MXNet's fastest settings
    for c in ctxs:
        if not works(c):
            raise Error(f"{c} is not available (no such device, or this MXNet build has no GPU "
                        f"support)")
    with contextlib.ExitStack() as held:     # the checkpoint folder's lock, for the whole run
        resume_from = None
        if checkpoint_dir:
            resume_from, seed = checkpoint.start_or_resume(checkpoint_dir, resume, recipe.epochs,
                                                           recipe.seed, held)
            recipe = dataclasses.replace(recipe, seed=seed)   # always seeded, to resume exactly
            if resume_from is None and resume:
                print(f"no checkpoint in {checkpoint_dir} yet: training from epoch 1")
        store, rank, workers = 'device', 0, 1
        if kvstore:   # every worker trains on its own shard; the servers add up the gradients
            store = mx.kv.create(kvstore)
            rank, workers = store.rank, store.num_workers
        arrays = load_arrays(data_dir, recipe.train_size, rank, workers)
        run = Run(recipe, arrays, ctxs[0] if len(ctxs) == 1 else ctxs, store, workers)
        if resume_from:
            run.restore(resume_from)
            print(f"resuming from {resume_from.path}: {len(run.history)} of {recipe.epochs} "
                  f"epochs done")
        start = time.time()
        try:
            history = run.fit(progress=progress_bar if progress else None,
                              after_epoch=(lambda r: r.save(checkpoint_dir)) if checkpoint_dir
                              else None)
        except KeyboardInterrupt as stop:   # Ctrl-C, SIGTERM, SIGHUP: say what is kept
            done = len(run.history)
            stop.kept = (f"{done} of {recipe.epochs} epochs are in the checkpoint in "
                         f"{checkpoint_dir}: the same command with --resume goes on from there"
                         if checkpoint_dir and done else
                         "no file was written (--checkpoint-dir keeps each finished epoch)")
            raise
        seconds = time.time() - start

        lost = []   # outputs that could not be written where asked, and where they are instead
        if out and rank == 0:
            lost.append(('metrics', out, *files.write_or_keep(out, metrics(recipe, history)
                                                              .encode())))
        if plot_path and rank == 0:
            image = plot(history, figures.format_of(plot_path))
            lost.append(('plot', plot_path, *files.write_or_keep(plot_path, image)))
        best = max(history, key=lambda r: r['test_acc'])
        print(f"done: bn={recipe.bn}, {recipe.epochs} epochs on {run.ctx}, test acc "
              f"{history[-1]['test_acc']:.3f} (best {best['test_acc']:.3f} at epoch "
              f"{best['epoch']}), {seconds:.1f} sec")
        lost = [f"could not write the {what} to {path} ({error.strerror or error}); they are in "
                f"{kept} instead" for what, path, kept, error in lost if error]
        if lost:
            raise Error('; '.join(lost))
        return history
