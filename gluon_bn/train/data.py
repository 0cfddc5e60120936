"""Fashion-MNIST without a network: find the four IDX files, verify what they hold, load them.

Gluon's own FashionMNIST checks the SHA-1 of the *gzip* files, so it rejects copies compressed
by another tool (Debian's package, for one) and then tries to download. Here the decompressed
content is verified instead: IDX magic number, count, image size, label range and SHA-256.
"""
import functools
import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from ..utils.errors import Error
from .devices import try_gpu

ENV_VAR = 'FASHION_MNIST_DIR'
DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
DOWNLOAD_URL = 'https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/gluon/dataset/fashion-mnist/'
HOW_TO_GET = (f"get a good copy with `sudo apt-get install dataset-fashion-mnist` "
              f"(Debian, Ubuntu), "
              f"or put the four files from https://github.com/zalandoresearch/fashion-mnist in a "
              f"folder and pass it as root / --data-dir, or set {ENV_VAR}")


class DataError(Error):
    """A Fashion-MNIST file is missing, unreadable, or not what it should be."""


@dataclass(frozen=True)
class IdxSpec:
    """What an IDX file must hold: magic number, item count, item shape, digest of the content."""
    magic: int
    count: int
    item_shape: tuple
    sha256: str = None      # None: do not check (for small files written by tests)


IMAGES, LABELS = 2051, 2049   # IDX magic numbers: unsigned bytes, 3 and 1 dimensions
FILES = {   # SHA-256 of the decompressed files, as Debian's dataset-fashion-mnist ships them
    'train': {
        'train-images-idx3-ubyte.gz': IdxSpec(IMAGES, 60000, (28, 28),
            'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888'),
        'train-labels-idx1-ubyte.gz': IdxSpec(LABELS, 60000, (),
            'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9'),
    },
    'test': {
        't10k-images-idx3-ubyte.gz': IdxSpec(IMAGES, 10000, (28, 28),
            '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b'),
        't10k-labels-idx1-ubyte.gz': IdxSpec(LABELS, 10000, (),
            '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34'),
    },
}
NUM_CLASSES = 10


def mxnet_cache_dir():
    home = os.environ.get('MXNET_HOME', os.path.join('~', '.mxnet'))
    return os.path.expanduser(os.path.join(home, 'datasets', 'fashion-mnist'))


def has_all_files(folder):
    return all(os.path.isfile(os.path.join(folder, name))
               for split in FILES.values() for name in split)


def find_data_dir(root=None, download=True):
    """The folder that holds the four files: `root` if given, else $FASHION_MNIST_DIR (which
    must then hold them), else Debian's package, else MXNet's cache, downloading into the cache
    only if none has them (with `download=False`, a DataError instead)."""
    if root is not None:
        return os.path.expanduser(root)   # read_idx names any file that is missing
    chosen = os.environ.get(ENV_VAR)
    if chosen:   # a setting the user made: obeyed, or refused, never passed over
        missing = [name for split in FILES.values() for name in split
                   if not os.path.isfile(os.path.join(chosen, name))]
        if missing:
            raise DataError(f"${ENV_VAR} is {chosen}, which does not hold {', '.join(missing)}; "
                            f"point it to the folder of the four files, or unset it")
        return chosen
    candidates = [DEBIAN_DIR, mxnet_cache_dir()]
    for folder in filter(None, candidates):
        if has_all_files(folder):
            return folder
    searched = [c for c in candidates if c]
    if not download:
        raise DataError(f"Fashion-MNIST is not in {', '.join(searched)}; {HOW_TO_GET}")
    return _download(mxnet_cache_dir(), searched)


def _download(folder, searched):
    try:
        for split in FILES.values():
            for name in split:
                path = os.path.join(folder, name)
                if not os.path.isfile(path):
                    gluon.utils.download(DOWNLOAD_URL + name, path=path)
    except Exception as error:   # requests' connection errors, HTTP errors, a full disk, ...
        raise DataError(f"Fashion-MNIST is not in {', '.join(searched)} and downloading it into "
                        f"{folder} failed ({type(error).__name__}); {HOW_TO_GET}") from None
    return folder


def read_idx(path, spec):
    """Decompress and verify one IDX file; returns its items as a uint8 array."""
    def bad(problem):
        return DataError(f"{path}: {problem}; {HOW_TO_GET}")

    try:
        with gzip.open(path, 'rb') as f:
            content = f.read()
    except FileNotFoundError:
        raise bad("no such file") from None
    except (OSError, EOFError, zlib.error) as error:
        raise bad(f"not a complete gzip file ({error})") from None

    header_size = 4 * (2 + len(spec.item_shape))
    if len(content) < header_size:
        raise bad(f"only {len(content)} bytes, shorter than an IDX header")
    magic, count, *item_shape = struct.unpack(f'>{2 + len(spec.item_shape)}I',
                                              content[:header_size])
    if magic != spec.magic:
        raise bad(f"IDX magic number {magic}, expected {spec.magic}")
    if count != spec.count:
        raise bad(f"{count} items, expected {spec.count}")
    if tuple(item_shape) != spec.item_shape:
        raise bad(f"items of shape {tuple(item_shape)}, expected {spec.item_shape}")
    expected_size = header_size + count * int(np.prod(spec.item_shape, dtype=np.int64))
    if len(content) != expected_size:
        raise bad(f"{len(content)} bytes after decompression, expected {expected_size}")
    items = np.frombuffer(content, np.uint8, offset=header_size).reshape((count,) + spec.item_shape)
    if spec.magic == LABELS and items.max(initial=0) >= NUM_CLASSES:
        raise bad(f"label {items.max()} out of range 0..{NUM_CLASSES - 1}")
    if spec.sha256 and hashlib.sha256(content).hexdigest() != spec.sha256:
        raise bad("content differs from Fashion-MNIST's (SHA-256 mismatch)")
    return items


@functools.lru_cache(maxsize=4)
def _load_split(folder, split, stamp):
    (image_file, image_spec), (label_file, label_spec) = FILES[split].items()
    images = read_idx(os.path.join(folder, image_file), image_spec)
    labels = read_idx(os.path.join(folder, label_file), label_spec)
    return images, labels.astype(np.int32)


def load_fashion_mnist(train=True, root=None):
    """Verified (images uint8 (N, 28, 28), labels int32 (N,)) of the training or test split."""
    folder = find_data_dir(root)
    split = 'train' if train else 'test'
    # Keyed on the files' sizes and times, so a replaced file is read again.
    stamp = []
    for name in FILES[split]:
        path = os.path.join(folder, name)
        stamp.append((os.stat(path).st_size, os.stat(path).st_mtime_ns)
                     if os.path.exists(path) else None)
    stamp = tuple(stamp)
    return _load_split(folder, split, stamp)


class ArrayLoader:
    """Batches of a whole data set held as one NDArray on one device, reshuffled there each epoch.

    Yields (X, y): X float32 (n, 1, 28, 28) in [0, 1] (or resized), y int32 (n,), as d2lzh's
    DataLoader does, but without per-sample transforms or worker processes.
    """

    def __init__(self, images, labels, batch_size, shuffle, resize=None, ctx=None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        ctx = ctx or mx.cpu()
        # ToTensor's conversion, once for the whole set: HWC uint8 -> CHW float32 / 255.
        self.images = nd.array(images[:, None], ctx=ctx, dtype='float32') / 255
        self.labels = nd.array(labels, ctx=ctx, dtype='int32')
        self.batch_size, self.shuffle, self.resize = batch_size, shuffle, resize

    def __len__(self):
        return -(-self.images.shape[0] // self.batch_size)

    def __iter__(self):
        n = self.images.shape[0]
        order = nd.random.shuffle(nd.arange(n, ctx=self.images.context)) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if order is None:
                X, y = self.images[start:stop], self.labels[start:stop]
            else:
                index = order[start:stop]
                X, y = nd.take(self.images, index), nd.take(self.labels, index)
            if self.resize:
                X = nd.contrib.BilinearResize2D(X, height=self.resize, width=self.resize)
            yield X, y


def load_arrays(root=None, train_size=None, rank=0, workers=1):
    """Both splits, verified, as NumPy arrays: ((train images, labels), (test images, labels)).
    The training set is cut to its first `train_size` images (a DataError if it has fewer),
    then to every `workers`-th image from `rank` (a distributed worker's shard)."""
    images, labels = load_fashion_mnist(True, root)
    if train_size is not None and train_size > len(images):
        raise DataError(f"a training set of {train_size:,} images was asked for; Fashion-MNIST "
                        f"has {len(images):,}: give --train-size {len(images)} or less")
    train = images[:train_size][rank::workers], labels[:train_size][rank::workers]
    return train, load_fashion_mnist(False, root)


def array_loaders(arrays, batch_size, resize=None, ctx=None):
    """(train_iter, test_iter) over arrays as load_arrays returns them: the training set
    reshuffled every epoch, the test set in order."""
    (train_x, train_y), (test_x, test_y) = arrays
    return (ArrayLoader(train_x, train_y, batch_size, True, resize, ctx),
            ArrayLoader(test_x, test_y, batch_size, False, resize, ctx))


def load_data_fashion_mnist(batch_size, resize=None, root=None, ctx=None):
    """d2lzh's loader, offline and fast: (train_iter, test_iter) over verified Fashion-MNIST.

    Parameters
    ----------
    batch_size : int
    resize : int, optional
        Side of the square images to produce (bilinear), as d2lzh's `resize`.
    root : str, optional
        Folder of the four .gz files; default: $FASHION_MNIST_DIR, Debian's
        /usr/share/datasets/fashion-mnist, then MXNet's cache (downloading only there).
    ctx : Context, optional
        Where the data sets live and batches are made; default try_gpu().
    """
    return array_loaders(load_arrays(root), batch_size, resize, ctx or try_gpu())
