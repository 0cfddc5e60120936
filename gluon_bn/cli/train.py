"""gluon-bn train, launch-dist and cuda-env: training BN-LeNet on devices, processes and GPUs."""
import argparse
import sys

from . import options
from .command import UsageError

TRAIN = """Train the batch-norm chapter's LeNet on Fashion-MNIST, offline, d2l-style.

  gluon-bn train                                  # from-scratch BN, 5 epochs, lr 1.0
  gluon-bn train --bn gluon --out metrics.json --plot curves.png
  gluon-bn train --checkpoint-dir runs/a          # then, if interrupted:
  gluon-bn train --checkpoint-dir runs/a --resume

Prints d2lzh's lines (`training on cpu(0)`, `epoch 1, loss ..., time ... sec`) and a summary.
The metrics file holds the settings and the per-epoch loss and accuracies, not the timings, so
that the same --seed on the CPU writes the same file, also when the run was interrupted and
resumed from its checkpoints."""


def gpus(text):
    """'0,1' -> [gpu(0), gpu(1)]."""
    return options.contexts(','.join(f'gpu:{index}' for index in text.split(',')))


def train_arguments(p):
    from ..train.models import BN_CHOICES
    p.add_argument('--bn', choices=BN_CHOICES, default='scratch',
                   help="batch norm: the book's from-scratch BatchNorm (default), nn.BatchNorm, "
                        "HybridBatchNorm (the from-scratch drop-in for nn.BatchNorm), "
                        "SyncBatchNorm (statistics over the batch of all --ctx devices), or none")
    options.add_epochs(p, 5)
    p.add_argument('--lr', type=options.learning_rate, default=1.0)
    p.add_argument('--batch-size', type=options.positive(int), default=256)
    devices = p.add_mutually_exclusive_group()
    devices.add_argument('--ctx', type=options.contexts, default=None,
                         help='cpu, gpu, cpu:N or gpu:N, or several separated by commas for '
                              'data parallelism (default: gpu(0) if one works, else cpu)')
    devices.add_argument('--gpus', type=gpus, default=None, metavar='0,1',
                         help='train on these GPUs, splitting each batch between them')
    p.add_argument('--kvstore', choices=['dist_sync', 'dist_device_sync', 'dist_async'],
                   help="train as one worker of MXNet's distributed KVStore, on its own shard "
                        "of the data (start the workers with gluon-bn launch-dist)")
    options.add_data_dir(p)
    p.add_argument('--train-size', type=options.positive(int), default=None,
                   help='train on the first N training images only (a quick check)')
    options.add_seed(p)
    p.add_argument('--precise-bn', type=options.positive(int), metavar='N', default=None,
                   help='after each epoch\'s training, set every batch norm\'s running '
                        'statistics to the exact mean and variance of its input over N '
                        'training batches (gluon_bn.update_bn_stats), then test; the test '
                        'accuracy from the moving averages is printed beside it')
    p.add_argument('--checkpoint-dir', metavar='DIR',
                   help='after every epoch, save all that is needed to continue the run in DIR '
                        '(created if missing; it must not hold another run\'s checkpoints)')
    p.add_argument('--resume', action='store_true',
                   help='continue from the last checkpoint in --checkpoint-dir, if there is one')
    p.add_argument('--out', metavar='metrics.json', help='write settings and per-epoch metrics')
    p.add_argument('--plot', metavar='curves.png', help='plot loss and accuracies per epoch')
    p.add_argument('--no-progress', dest='progress', action='store_false',
                   help='no progress bar (default: shown when stderr is a terminal)')


def check_train(args):
    """What the options cannot say alone, and the output files: refused now, not after the
    run."""
    from ..utils import figures
    if args.resume and not args.checkpoint_dir:
        raise UsageError("--resume needs --checkpoint-dir")
    if args.checkpoint_dir and args.kvstore:
        raise UsageError("--checkpoint-dir is not supported with --kvstore")
    options.check_outputs(('--checkpoint-dir', args.checkpoint_dir, True))
    from ..utils import files
    for option, path in (('--out', args.out), ('--plot', args.plot)):   # into a folder there is
        problem = path and files.unwritable(path)
        if problem:
            raise UsageError(f"{option}: {problem}")
    if args.plot and figures.format_of(args.plot) not in figures.formats():
        raise UsageError(f"--plot: matplotlib cannot write .{figures.format_of(args.plot)} "
                         f"files; use one of .{', .'.join(figures.formats())}")


def run_train(args):
    from ..train import Recipe
    from ..train.recipe import train
    check_train(args)
    recipe = Recipe(bn=args.bn, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                    train_size=args.train_size, seed=args.seed, precise_bn=args.precise_bn)
    train(recipe, ctx=args.gpus or args.ctx, kvstore=args.kvstore, data_dir=args.data_dir,
          checkpoint_dir=args.checkpoint_dir, resume=args.resume, out=args.out,
          plot_path=args.plot, progress=args.progress and sys.stderr.isatty())


LAUNCH = """Run a training program on MXNet's distributed KVStore, all on this machine.

  gluon-bn launch-dist --workers 2 --servers 1 -- gluon-bn train --kvstore dist_sync

Starts one scheduler, the servers and the workers as separate processes on loopback and watches
them: when the workers are done it stops the rest; when any process dies first it names it,
stops all the others within seconds and exits non-zero; Ctrl-C stops them all too."""


def launch_arguments(p):
    p.add_argument('--workers', type=options.positive(int), default=2)
    p.add_argument('--servers', type=options.positive(int), default=1)
    p.add_argument('--port', type=int, help="the scheduler's port (default: a free one)")
    p.add_argument('command', nargs=argparse.REMAINDER, help="the workers' command, after --")


def run_launch(args):
    from ..train.dist import launch
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command:
        raise UsageError('give the workers\' command after --')
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}")
    return launch(command, args.workers, args.servers, args.port,
                  say=lambda line: print(f"{args._prog}: {line}", file=sys.stderr, flush=True))


CUDA_ENV = """Print the shell line that lets any Python program import MXNet's GPU build directly.

`import gluon_bn` finds the CUDA libraries of the nvidia-*-cu11 wheels by itself; code that
imports mxnet first (the book's chapter code, as readers type it) needs them on the loader's
path instead:

  eval "$(gluon-bn cuda-env)"
  python my_chapter_copy.py"""


def run_cuda_env(args):
    from ..utils import cuda
    print(cuda.library_path_line())

