"""Run the books' own code offline, changing nothing else.

Both editions read Fashion-MNIST through Gluon's `FashionMNIST` dataset, directly (the chapters
on the data set and on AlexNet), through their packages' `load_data_fashion_mnist`, or through
the English book's `d2l.FashionMNIST` class, with the default `root` (under ~/.mxnet) or their
own. That class checks the
SHA-1 of the *gzip* files, rejects copies compressed by another tool (Debian's) and then tries
to download, creating its `root` folder first. Installed, this module makes `FashionMNIST` read
the local files that gluon_bn.train.data verifies, whatever `root` the caller passes, without
creating any folder or touching the network; everything else, d2lzh's per-sample `ToTensor`
and worker processes included, stays the book's own.

It also gives IPython 9 back `IPython.display.set_matplotlib_formats`, which d2lzh's
`use_svg_display()` calls: IPython 8 kept it as a deprecated alias of matplotlib-inline's
function, IPython 9 removed it.

    with gluon_bn.book.compat.offline():
        train_iter, test_iter = d2lzh.load_data_fashion_mnist(256)
"""
import contextlib
import os

import mxnet as mx
from mxnet.gluon.data.vision import datasets
from mxnet.util import is_np_array

from ..train import data
from ..utils.patch import Patches

_patches = Patches()


def _local_folder(root, data_dir):
    """Where the verified files are: `data_dir` (given when installing) wins, then the caller's
    `root` if it holds the four files, then gluon_bn.train.data's search order, never
    downloading."""
    if data_dir is not None:
        return os.path.expanduser(data_dir)
    if root is not None and data.has_all_files(os.path.expanduser(root)):
        return os.path.expanduser(root)
    return data.find_data_dir(download=False)


def _offline_fashion_mnist(data_dir):
    """FashionMNIST's __init__ and _get_data, reading the verified local files."""
    original_init = datasets.FashionMNIST.__init__

    def __init__(self, root=None, train=True, transform=None):
        # The folder exists, so Gluon's base class creates none; _get_data below reads it.
        original_init(self, _local_folder(root, data_dir), train, transform)

    def _get_data(self):
        images, labels = data.load_fashion_mnist(self._train, self._root)
        array = mx.np.array if is_np_array() else mx.nd.array
        self._data = array(images[..., None], dtype=images.dtype)   # (N, 28, 28, 1) uint8
        self._label = array(labels, dtype=labels.dtype) if is_np_array() else labels

    __init__.__doc__ = original_init.__doc__
    return __init__, _get_data


def _set_matplotlib_formats(*formats, **kwargs):
    """IPython 8's deprecated alias, for d2lzh.use_svg_display()."""
    from matplotlib_inline.backend_inline import set_matplotlib_formats
    set_matplotlib_formats(*formats, **kwargs)


def install(data_dir=None):
    """Make Gluon's FashionMNIST (and so the books' loaders) read local files and give IPython 9
    back `set_matplotlib_formats`; until uninstall()."""
    if _patches:
        raise RuntimeError("gluon_bn.book.compat is installed already; uninstall() it first")
    init, get_data = _offline_fashion_mnist(data_dir)
    _patches.set(datasets.FashionMNIST, '__init__', init)
    _patches.set(datasets.FashionMNIST, '_get_data', get_data)
    from IPython import display
    if not hasattr(display, 'set_matplotlib_formats'):
        _patches.set(display, 'set_matplotlib_formats', _set_matplotlib_formats)


def uninstall():
    """Put everything back as it was."""
    _patches.undo()


@contextlib.contextmanager
def offline(data_dir=None):
    """install() for the duration of a with-block."""
    install(data_dir)
    try:
        yield
    finally:
        uninstall()
