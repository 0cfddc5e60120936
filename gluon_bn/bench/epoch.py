"""One epoch of BN-LeNet: the book's pipeline against this project's, same batch-norm layer
(`gluon-bn bench-epoch`).

The book's pipeline is d2lzh's own train_ch5 (which prints its lines) over a DataLoader of
per-sample ToTensor with 4 worker processes (d2lzh.load_data_fashion_mnist, fed the verified
local files), the network not hybridized. Ours is the training recipe as `gluon-bn train` runs
it: the whole data set preloaded as one NDArray, the network hybridized. Both train with SGD at
lr 1.0, batch 256, and evaluate on the test set; an epoch's time covers both.
"""
import time

import d2lzh
import mxnet as mx

from ..book import compat
from ..train import Recipe, Run
from ..train.data import load_arrays
from ..train.recipe import build

BATCH_SIZE = 256


def book_seconds(bn, loaders, epochs, ctx):
    """Seconds per epoch of d2lzh's own train_ch5 on the book's loaders."""
    mx.random.seed(0)
    net, trainer = build(Recipe(bn=bn), [ctx], hybridize_net=False)
    start = time.time()
    d2lzh.train_ch5(net, *loaders, BATCH_SIZE, trainer, ctx, epochs)
    return (time.time() - start) / epochs


def our_seconds(bn, arrays, epochs, ctx):
    """Seconds per epoch of the training recipe."""
    run = Run(Recipe(bn=bn, epochs=epochs, seed=0), arrays, ctx)
    start = time.time()
    run.fit(quiet=True)
    return (time.time() - start) / epochs


def bench(bns=('scratch', 'gluon', 'hybrid'), epochs=1, data_dir=None):
    """Time both pipelines for each batch-norm kind; print a table, with d2lzh's own lines
    before each row."""
    ctx = mx.cpu()
    with compat.offline(data_dir):   # d2lzh's own loader over the local files
        book = d2lzh.load_data_fashion_mnist(BATCH_SIZE)
    arrays = load_arrays(data_dir)
    rows = []
    for bn in bns:
        book_time, our_time = book_seconds(bn, book, epochs, ctx), our_seconds(bn, arrays,
                                                                              epochs, ctx)
        rows.append(f"{bn:8} {book_time:13.1f} {our_time:13.1f} {our_time / book_time:10.2f}")
    print(f"{'bn':8} {'book s/epoch':>13} {'ours s/epoch':>13} {'ours/book':>10}")
    print('\n'.join(rows))
