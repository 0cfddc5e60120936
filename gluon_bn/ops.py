"""gluon_bn's C++ operators: built once with the system's C++ compiler, then loaded into MXNet
(mx.library.load), which makes them available as nd.gluon_bn_batch_norm and
sym.gluon_bn_batch_norm, imperatively, in hybridized graphs and in exported models (and, for
SyncBatchNorm, nd.gluon_bn_moments, nd.gluon_bn_combine and nd.gluon_bn_normalize).

Why C++: MXNet's Python CustomOp calls back into Python on every use (0.4 ms, as much as the whole
fused op at LeNet's sizes) and, with oneDNN, can be handed inputs in a layout it then misreads;
a library operator runs like a built-in one, and MXNet gives it plain-layout inputs.
"""
import hashlib
import os
import subprocess
import tempfile
import warnings

import mxnet as mx
from mxnet import nd

from . import files

OP_NAME = 'gluon_bn_batch_norm'
_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')
SOURCES = [os.path.join(_CSRC, name) for name in ('batch_norm.cc', 'sync_batch_norm.cc')]
HEADERS = [os.path.join(_CSRC, 'common.h')]
_MXNET_DIR = os.path.dirname(os.path.abspath(mx.__file__))
_LIB_API = os.path.join(_MXNET_DIR, 'src', 'lib_api.cc')
_loaded = False
_flags = {}


class BuildError(RuntimeError):
    """The operator library could not be built: no compiler, a compile error, no cache folder."""


def cache_dir():
    """Where the built library lives: $GLUON_BN_CACHE, else ~/.cache/gluon_bn."""
    return os.environ.get('GLUON_BN_CACHE') or os.path.join(os.path.expanduser('~'), '.cache',
                                                            'gluon_bn')


def library_path():
    """The library's path, named after everything it is built from."""
    digest = hashlib.sha256()
    for path in SOURCES + HEADERS + [_LIB_API]:
        with open(path, 'rb') as f:
            digest.update(f.read())
    digest.update(mx.__version__.encode())
    return os.path.join(cache_dir(), f'libgluon_bn_ops-{digest.hexdigest()[:16]}.so')


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def intact(path):
    """Whether the library at `path` is whole: its SHA-256 matches the one written beside it
    when it was built. (Loading a truncated library kills the process with SIGBUS.)"""
    try:
        with open(path + '.sha256') as f:
            return f.read().split()[0] == sha256_of(path)
    except (OSError, IndexError):
        return False


def build(path):
    """Compile the operators into `path` (written to a temporary file, then renamed), with its
    checksum beside it."""
    compiler = os.environ.get('CXX', 'g++')
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix='.so', dir=folder)
    except OSError as error:
        raise BuildError(f"gluon_bn builds its batch-norm operator once into {folder} and "
                         f"cannot write there ({error.strerror or error}): set GLUON_BN_CACHE "
                         f"to a folder it can write") from None
    os.close(fd)
    command = [compiler, '-shared', '-fPIC', '-std=c++17', '-O3',
               '-I', os.path.join(_MXNET_DIR, 'include'), *SOURCES, _LIB_API, '-o', tmp]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
        files.write_atomically(path + '.sha256', f"{sha256_of(tmp)}  {os.path.basename(path)}\n"
                               .encode())
        os.replace(tmp, path)
    except FileNotFoundError:
        raise BuildError(f"gluon_bn builds its batch-norm operator once with a C++ compiler "
                         f"and found none ({compiler!r}): install one (Debian, Ubuntu: "
                         f"sudo apt-get install g++) or set CXX; BatchNorm(fast=False) "
                         f"needs none") from None
    except subprocess.CalledProcessError as error:
        raise BuildError(f"building {', '.join(SOURCES)} failed:\n{error.stderr}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load():
    """Build the operators if needed and load them into MXNet, once per process."""
    global _loaded
    if not _loaded:
        path = library_path()
        if not intact(path):
            if os.path.exists(path + '.sha256'):   # else: not built yet, or by an older gluon_bn
                warnings.warn(f"gluon_bn: the operator library {path} is damaged (its checksum "
                              f"does not match); building it again", RuntimeWarning)
            build(path)
        mx.library.load(path, verbose=False)
        _loaded = True


def training_flag(ctx, training):
    """The operator's `training` input: two constant arrays per device, so a call allocates
    nothing."""
    key = (ctx, bool(training))
    if key not in _flags:
        _flags[key] = nd.full((1,), float(training), ctx=ctx)
    return _flags[key]


def batch_norm(X, gamma, beta, running_mean, running_var, training, eps, momentum):
    """Imperative call of the operator on NCHW (or (N, C)) input: the output. The running
    statistics (one value per channel, any shape) are updated in place when training.

    The operator only ever writes its gradients: arrays whose gradient may be added up
    (grad_req='add') reach it through identity, whose backward honours that. Only an array with
    a gradient buffer of its own (attach_grad) can ask for it; copying any other X would cost a
    pass for nothing.
    """
    if X.grad is not None:
        X = nd.identity(X)
    return nd.gluon_bn_batch_norm(X, nd.identity(gamma), nd.identity(beta), running_mean,
                                  running_var, training_flag(X.context, training), axis=1,
                                  eps=eps, momentum=momentum)[0]
