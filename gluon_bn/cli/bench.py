"""gluon-bn bench-bn, bench-epoch, bench-peers and accuracy: gluon_bn measured."""
import os

from . import options
from .command import UsageError

BENCH_BN = """Time batch norm, forward and backward, and BN-LeNet training steps, in one run.

Per shape (BN-LeNet's four at batch 256, and one ResNet-sized): the book's textbook BN, the book's
Block on its fast path, HybridBatchNorm hybridized, and MXNet's fused nn.BatchNorm, imperative and
hybridized; each ratio compares ours with the fused op run the same way. Then BN-LeNet training
steps (batch 256, SGD) with each BN, hybridized, scaled to seconds per Fashion-MNIST epoch.
MXNet runs with its own engine and threads."""


def bench_bn_arguments(p):
    p.add_argument('--reps', type=options.positive(int), default=20,
                   help='calls per timing round (default 20; fewer on the large shapes)')
    p.add_argument('--rounds', type=options.positive(int), default=5,
                   help='timing rounds, contenders taking turns (default 5)')


def run_bench_bn(args):
    from ..bench import bn
    bn.bench(args.reps, args.rounds)


BENCH_EPOCH = """Time one epoch of BN-LeNet: the book's pipeline against this project's, same
batch norm.

The book's pipeline is d2lzh's own train_ch5 over a DataLoader of per-sample ToTensor with 4
worker processes (d2lzh.load_data_fashion_mnist, fed the verified local files). Ours is the
training recipe as `gluon-bn train` runs it. Both train with SGD at lr 1.0, batch 256, and
evaluate on the test set; an epoch's time covers both."""


def bench_epoch_arguments(p):
    from ..train.models import BN_CHOICES
    p.add_argument('--bn', nargs='+', default=['scratch', 'gluon', 'hybrid'], choices=BN_CHOICES)
    options.add_epochs(p, 1, help='epochs per contender')
    options.add_data_dir(p)


def run_bench_epoch(args):
    from ..bench import epoch
    epoch.bench(args.bn, args.epochs, args.data_dir)


BENCH_PEERS = """gluon_bn against its peers in one run: batch norm alone, whole networks predicting
and taking training steps (BN-LeNet, GluonCV's cifar_resnet20_v1), then BN-LeNet epochs, against
MXNet's nn.BatchNorm and PyTorch (set up by `make peers` in .venv-peers).

Contenders take turns, round by round (epoch by epoch), and each ratio compares two medians of
this run. PyTorch's threads spin while they wait: measure on a quiet machine (the run checks the
cores first). Details: gluon_bn.bench.peers."""


def bench_peers_arguments(p):
    from ..bench.peers import PEERS_PYTHON
    p.add_argument('--rounds', type=options.positive(int), default=7,
                   help='timing rounds per batch-norm contender (default 7)')
    options.add_epochs(p, 3, help='epochs per BN-LeNet contender (default 3)')
    p.add_argument('--skip-epochs', action='store_true', help='leave out BN-LeNet epochs')
    p.add_argument('--skip-networks', action='store_true',
                   help='leave out whole networks predicting and taking training steps')
    p.add_argument('--torch-python', metavar='PY', default=None,
                   help=f'a Python with torch installed (default: {PEERS_PYTHON} if it '
                        f'exists); "none" leaves PyTorch out')
    p.add_argument('--train-size', type=options.positive(int), default=None,
                   help='train on the first N images only (a quick try)')
    options.add_data_dir(p)


def run_bench_peers(args):
    from ..bench import peers
    python = peers.torch_python(args.torch_python)
    if python != 'none' and not os.path.exists(python):
        raise UsageError(f"--torch-python: {python} does not exist")
    peers.bench(args.rounds, args.epochs, args.skip_epochs, python, args.train_size,
                args.data_dir, args.skip_networks)


ACCURACY = """Print the largest errors of every batch-norm path against the reference, per LeNet
shape.

Each case trains for a few steps (forward, backward) and then predicts, as the regression suite
does; the reference runs in extended precision. Columns are absolute errors."""


def accuracy_arguments(p):
    p.add_argument('--dtype', nargs='+', default=['float32', 'float64'],
                   choices=['float32', 'float64'])
    p.add_argument('--steps', type=options.positive(int), default=3)


def run_accuracy(args):
    from ..bench import accuracy
    accuracy.report(args.dtype, args.steps)



BENCH_LOAD = """BN-LeNet epochs on a quiet machine and beside one busy process, for the engine
`gluon-bn train` chooses now, the synchronous engine it always chose before, and MXNet's own
defaults; each setting trains in a process of its own, in turns. The busy process is
python3 -c "while True: pass".

On a quiet machine the synchronous engine with every core is the fastest; beside a busy process
its spinning OpenMP threads lose their core and epochs take 3x as long, so `gluon-bn train`
measures the load first and then keeps MXNet's own engine. Details: gluon_bn.bench.load."""


def bench_load_arguments(p):
    options.add_epochs(p, 4, help='epochs per run (the first is not timed)')
    p.add_argument('--train-size', type=options.positive(int), default=60000)
    p.add_argument('--rounds', type=options.positive(int), default=1)
    options.add_data_dir(p)


def run_bench_load(args):
    from ..bench import load
    if args.epochs < 2:
        raise UsageError("--epochs: at least 2 (the first epoch is not timed)")
    load.bench(args.epochs, args.train_size, args.rounds, args.data_dir)


BENCH_FOLD = """Time prediction with batch norms folded into the layer before them.

BN-LeNet (batch 256) and GluonCV's cifar_resnet20_v1 (batch 128): with their batch norms, folded
by gluon_bn.fold, built without batch norm, and each of these after MXNet's own fusion,
optimize_for(backend='MKLDNN'); all hybridized with static memory, each with one thread and with
every processor, all in turns in one run. Details: gluon_bn.bench.fold."""


def bench_fold_arguments(p):
    p.add_argument('--rounds', type=options.positive(int), default=7,
                   help='timing rounds, contenders taking turns (default 7)')


def run_bench_fold(args):
    from ..bench import fold
    fold.bench(args.rounds)
