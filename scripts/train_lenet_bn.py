"""Train the batch-norm chapter's LeNet on Fashion-MNIST, offline, d2l-style.

    python scripts/train_lenet_bn.py                       # from-scratch BN, 5 epochs, lr 1.0
    python scripts/train_lenet_bn.py --bn gluon --out metrics.json --plot curves.png
    python scripts/train_lenet_bn.py --checkpoint-dir runs/a            # then, if interrupted:
    python scripts/train_lenet_bn.py --checkpoint-dir runs/a --resume

Prints d2lzh's lines (`training on cpu(0)`, `epoch 1, loss ..., time ... sec`) and a summary.
The metrics file holds the settings and the per-epoch loss and accuracies, not the timings, so
that the same --seed on the CPU writes the same file, also when the run was interrupted and
resumed from its checkpoints (gluon_bn.checkpoint).
"""
import argparse
import contextlib
import io
import json
import os
import sys
import time

import gluon_bn  # noqa: F401  first: on the GPU build it loads the CUDA libraries (gluon_bn.cuda)
import mxnet as mx
from mxnet import gluon, init, nd

from gluon_bn import checkpoint, cli, engine, files, ops
from gluon_bn.context import try_gpu, works
from gluon_bn.data import ArrayLoader, DataError, load_fashion_mnist
from gluon_bn.model import BN_CHOICES, lenet_bn
from gluon_bn.train import hybridize, train_ch5


PROG = 'train_lenet_bn.py'


class Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def gpus(text):
    """'0,1' -> [gpu(0), gpu(1)]."""
    return cli.contexts(','.join(f'gpu:{index}' for index in text.split(',')))


def parse_args(argv):
    p = Parser(prog=PROG, description="Train the batch-norm chapter's LeNet on Fashion-MNIST.")
    p.add_argument('--bn', choices=BN_CHOICES, default='scratch',
                   help="batch norm: the book's from-scratch BatchNorm (default), nn.BatchNorm, "
                        "HybridBatchNorm (the from-scratch drop-in for nn.BatchNorm), "
                        "SyncBatchNorm (statistics over the batch of all --ctx devices), or none")
    cli.add_epochs(p, 5)
    p.add_argument('--lr', type=cli.learning_rate, default=1.0)
    p.add_argument('--batch-size', type=cli.positive(int), default=256)
    devices = p.add_mutually_exclusive_group()
    devices.add_argument('--ctx', type=cli.contexts, default=None,
                         help='cpu, gpu, cpu:N or gpu:N, or several separated by commas for '
                              'data parallelism (default: gpu(0) if one works, else cpu)')
    devices.add_argument('--gpus', type=gpus, default=None, metavar='0,1',
                         help='train on these GPUs, splitting each batch between them')
    p.add_argument('--kvstore', choices=['dist_sync', 'dist_device_sync', 'dist_async'],
                   help="train as one worker of MXNet's distributed KVStore, on its own shard "
                        "of the data (start the workers with scripts/launch_dist.py)")
    cli.add_data_dir(p)
    p.add_argument('--train-size', type=cli.positive(int), default=None,
                   help='train on the first N training images only (a quick check)')
    cli.add_seed(p)
    p.add_argument('--checkpoint-dir', metavar='DIR',
                   help='after every epoch, save all that is needed to continue the run in DIR '
                        '(created if missing; it must not hold another run\'s checkpoints)')
    p.add_argument('--resume', action='store_true',
                   help='continue from the last checkpoint in --checkpoint-dir, if there is one')
    p.add_argument('--out', metavar='metrics.json', help='write settings and per-epoch metrics')
    p.add_argument('--plot', metavar='curves.png', help='plot loss and accuracies per epoch')
    p.add_argument('--no-progress', dest='progress', action='store_false',
                   help='no progress bar (default: shown when stderr is a terminal)')
    args = p.parse_args(argv)
    if args.resume and not args.checkpoint_dir:
        p.error("--resume needs --checkpoint-dir")
    if args.checkpoint_dir and args.kvstore:
        p.error("--checkpoint-dir is not supported with --kvstore")
    if args.checkpoint_dir and os.path.exists(args.checkpoint_dir) \
            and not os.path.isdir(args.checkpoint_dir):
        p.error(f"--checkpoint-dir: {args.checkpoint_dir} is a file")
    for option, path in (('--out', args.out), ('--plot', args.plot)):
        if path:
            problem = files.unwritable(path)
            if problem:   # now, not after the whole run
                p.error(f"{option}: {problem}")
    if args.plot:
        from matplotlib.backend_bases import FigureCanvasBase
        kinds = FigureCanvasBase.get_supported_filetypes()
        if plot_format(args.plot) not in kinds:
            p.error(f"--plot: matplotlib cannot write .{plot_format(args.plot)} files; use one "
                    f"of .{', .'.join(sorted(kinds))}")
    return args


def progress_bar(epoch, done, total, width=30):
    filled = width * done // total
    end = '\n' if done == total else ''
    print(f"\repoch {epoch} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
          end=end, file=sys.stderr, flush=True)


def plot(history, path):
    """The figure of loss and accuracies per epoch, as the bytes of an image file."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    epochs = [r['epoch'] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [r['loss'] for r in history], 'o-')
    ax_loss.set(xlabel='epoch', ylabel='training loss')
    ax_acc.plot(epochs, [r['train_acc'] for r in history], 'o-', label='train')
    ax_acc.plot(epochs, [r['test_acc'] for r in history], 's--', label='test')
    ax_acc.set(xlabel='epoch', ylabel='accuracy')
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=120, format=plot_format(path))
    plt.close(fig)
    return image.getvalue()


def plot_format(path):
    return os.path.splitext(path)[1][1:].lower() or 'png'


def fail(message):
    sys.exit(f"{PROG}: error: {message}")


def main(argv=None):
    args = parse_args(argv)
    with contextlib.ExitStack() as held:   # the checkpoint folder's lock, for the whole run
        run(args, held)


def run(args, held):
    ctxs = args.gpus or args.ctx or [try_gpu()]
    # Before any operator runs: on one CPU, MXNet's fastest settings (gluon_bn.engine).
    engine.default_settings(ctxs, args.kvstore)
    for ctx in ctxs:
        if not works(ctx):
            fail(f"{ctx} is not available (no such device, or this MXNet build has no GPU "
                 f"support)")
    ctx = ctxs[0] if len(ctxs) == 1 else ctxs
    resume_from, seed = None, args.seed
    if args.checkpoint_dir:
        try:
            resume_from, seed = checkpoint.start_or_resume(
                args.checkpoint_dir, args.resume, args.epochs, args.seed, held)
            if resume_from is None and args.resume:
                print(f"no checkpoint in {args.checkpoint_dir} yet: training from epoch 1")
        except checkpoint.CheckpointError as error:
            fail(error)
    if seed is not None:
        checkpoint.seed_everything(seed)
    try:
        train_images, train_labels = load_fashion_mnist(True, args.data_dir)
        test_images, test_labels = load_fashion_mnist(False, args.data_dir)
    except DataError as error:
        fail(error)
    if args.train_size:
        train_images, train_labels = train_images[:args.train_size], train_labels[:args.train_size]
    kvstore, rank, workers = 'device', 0, 1
    if args.kvstore:   # every worker trains on its own shard; the servers add up the gradients
        kvstore = mx.kv.create(args.kvstore)
        rank, workers = kvstore.rank, kvstore.num_workers
        train_images = train_images[rank::kvstore.num_workers]
        train_labels = train_labels[rank::kvstore.num_workers]
    train_iter = ArrayLoader(train_images, train_labels, args.batch_size, True, ctx=ctxs[0])
    test_iter = ArrayLoader(test_images, test_labels, args.batch_size, False, ctx=ctxs[0])

    try:
        net = lenet_bn(args.bn, num_devices=len(ctxs))   # builds the C++ operator if needed
    except ops.BuildError as error:
        fail(error)
    net.initialize(ctx=ctxs, init=init.Xavier())
    hybridize(net, len(ctxs))
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': args.lr},
                            kvstore=kvstore)
    settings = {k: getattr(args, k) for k in ('bn', 'lr', 'batch_size', 'train_size')}
    settings['seed'] = seed
    done, past = 0, []
    if resume_from:
        net(nd.zeros((1,) + train_iter.images.shape[1:], ctx=ctxs[0]))   # shapes (predicting)
        try:
            done, past = checkpoint.restore(resume_from, net, trainer, settings)
        except checkpoint.CheckpointError as error:
            fail(error)
        print(f"resuming from {resume_from.path}: {done} of {args.epochs} epochs done")

    def before_epoch(epoch):
        if seed is not None:   # MXNet's generator state cannot be saved: derive it instead
            mx.random.seed(checkpoint.epoch_seed(seed, epoch))

    def after_epoch(history):
        if args.checkpoint_dir:
            try:
                checkpoint.save(args.checkpoint_dir, done + len(history), net, trainer,
                                settings, past + history)
            except checkpoint.CheckpointError as error:
                fail(error)

    show_progress = args.progress and sys.stderr.isatty()
    start = time.time()
    # The gradients of all workers' batches are added up, so a step covers all of them.
    history = past + train_ch5(net, train_iter, test_iter, args.batch_size * workers, trainer,
                               ctx, args.epochs, progress=progress_bar if show_progress else None,
                               start_epoch=done, before_epoch=before_epoch,
                               after_epoch=after_epoch)
    seconds = time.time() - start

    lost = []   # outputs that could not be written where asked, and where they are instead
    if args.out and rank == 0:
        metrics = [{k: r[k] for k in ('epoch', 'loss', 'train_acc', 'test_acc')} for r in history]
        text = json.dumps({'settings': {**settings, 'epochs': args.epochs}, 'epochs': metrics},
                          indent=2) + '\n'
        lost.append(('metrics', args.out, *files.write_or_keep(args.out, text.encode())))
    if args.plot and rank == 0:
        lost.append(('plot', args.plot, *files.write_or_keep(args.plot, plot(history, args.plot))))
    best = max(history, key=lambda r: r['test_acc'])
    print(f"done: bn={args.bn}, {args.epochs} epochs on {ctx}, test acc "
          f"{history[-1]['test_acc']:.3f} (best {best['test_acc']:.3f} at epoch {best['epoch']}), "
          f"{seconds:.1f} sec")
    lost = [f"could not write the {what} to {path} ({error.strerror or error}); they are in "
            f"{kept} instead" for what, path, kept, error in lost if error]
    if lost:
        fail('; '.join(lost))


if __name__ == '__main__':
    main()
