"""Run d2lzh's own code offline, changing nothing else.

d2lzh.load_data_fashion_mnist asks Gluon's FashionMNIST for the data, which checks the SHA-1 of
the gzip files, rejects copies compressed by another tool (Debian's) and then tries to download.
Installed, this module makes it read the local, verified files through gluon_bn.data, with the
book's own pipeline (per-sample ToTensor, worker processes); try_gpu, train_ch5 and the rest stay
d2lzh's own.

    with gluon_bn.compat.offline():
        train_iter, test_iter = d2lzh.load_data_fashion_mnist(256)
"""
import contextlib
import os

import d2lzh
import d2lzh.utils

from . import data

_originals = {}


def load_data_fashion_mnist(batch_size, resize=None, root=None, *, data_dir=None):
    """d2lzh's loader over local files: `data_dir` (given when installing) wins, then the
    caller's `root` if it holds the files, then gluon_bn.data's search order."""
    folder = data_dir
    if folder is None and root is not None and data.has_all_files(os.path.expanduser(root)):
        folder = root
    return data.book_data_loaders(batch_size, resize, root=folder)


def install(data_dir=None, ctx=None):
    """Replace d2lzh's loader (and, if `ctx` is given, its try_gpu) until uninstall()."""
    if _originals:
        raise RuntimeError("gluon_bn.compat is installed already; uninstall() it first")
    patched = {'load_data_fashion_mnist':
               lambda batch_size, resize=None, root=None: load_data_fashion_mnist(
                   batch_size, resize, root, data_dir=data_dir)}
    if ctx is not None:
        patched['try_gpu'] = lambda: ctx
    for module in (d2lzh, d2lzh.utils):
        for name, replacement in patched.items():
            _originals[(module, name)] = getattr(module, name)
            setattr(module, name, replacement)


def uninstall():
    """Put d2lzh's own functions back."""
    for (module, name), original in _originals.items():
        setattr(module, name, original)
    _originals.clear()


@contextlib.contextmanager
def offline(data_dir=None, ctx=None):
    """install() for the duration of a with-block."""
    install(data_dir, ctx)
    try:
        yield
    finally:
        uninstall()
