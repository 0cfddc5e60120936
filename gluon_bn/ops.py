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
import platform
import subprocess
import tempfile
import warnings

import mxnet as mx
from mxnet import autograd, nd

from . import files

OP_NAME = 'gluon_bn_batch_norm'
_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')
SOURCES = [os.path.join(_CSRC, name) for name in ('batch_norm.cc', 'sync_batch_norm.cc',
                                                   'conv.cc')]
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


# -march=native: the vector instructions of the processor it runs on (the library is built where
# it runs, and the processor is part of its name): BN's forward pass on LeNet's first batch norm
# takes 0.29 ms with AVX-512 here, 0.68 ms with x86-64's baseline SSE2.
# -fopenmp: the operators' threads come from the OpenMP runtime MXNet links itself (libgomp).
# -ffp-contract=off: no fused multiply-adds, which some targets would otherwise form where
# others do not; with sums in a fixed order, the operators give the same bits on every machine.
# -Wall and no more: -Wextra only repeats MXNet's own header at us.
FLAGS = ('-shared', '-fPIC', '-std=c++17', '-O3', '-march=native', '-fopenmp', '-ffp-contract=off',
         '-Wall')


def compiler():
    return os.environ.get('CXX', 'g++')


def _compiler_identity():
    """What the build depends on besides the sources: the compiler's own account of itself
    (`--version`), or its name if it cannot give one (build() then says what is wrong)."""
    try:
        return subprocess.run([compiler(), '--version'], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return compiler()


def _processor_identity():
    """The processor -march=native builds for: its model and features, as the kernel lists
    them (a home folder shared between machines then keeps a library for each kind)."""
    keys = ('vendor_id', 'model name', 'flags', 'CPU implementer', 'CPU part', 'Features')
    try:
        with open('/proc/cpuinfo') as f:
            return ''.join(sorted({line for line in f if line.split(':')[0].strip() in keys}))
    except OSError:
        return platform.machine() + platform.processor()


def library_path():
    """The library's path, named after everything it is built from: the sources, MXNet's
    version, the compiler, the flags and the processor."""
    digest = hashlib.sha256()
    for path in SOURCES + HEADERS + [_LIB_API]:
        with open(path, 'rb') as f:
            digest.update(f.read())
    for part in (mx.__version__, compiler(), _compiler_identity(), *FLAGS,
                 _processor_identity()):
        digest.update(part.encode() + b'\0')
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
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix='.so', dir=folder)
    except OSError as error:
        raise BuildError(f"gluon_bn builds its batch-norm operator once into {folder} and "
                         f"cannot write there ({error.strerror or error}): set GLUON_BN_CACHE "
                         f"to a folder it can write") from None
    os.close(fd)
    command = [compiler(), *FLAGS, '-I', os.path.join(_MXNET_DIR, 'include'), *SOURCES,
               _LIB_API, '-o', tmp]
    try:
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        if result.stderr.strip():   # shown, not discarded
            warnings.warn(f"gluon_bn: the compiler warned while building the batch-norm "
                          f"operator:\n{result.stderr}", RuntimeWarning)
        files.write_atomically(path + '.sha256', f"{sha256_of(tmp)}  {os.path.basename(path)}\n"
                               .encode())
        os.replace(tmp, path)
    except FileNotFoundError:
        raise BuildError(f"gluon_bn builds its batch-norm operator once with a C++ compiler "
                         f"and found none ({compiler()!r}): install one (Debian, Ubuntu: "
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


# --- calling the operators: the one place that does ---------------------------------------

def _constant_flag(ctx, training):
    """A known mode as the operator's `training` input, 1 or 0: two constant arrays per device,
    so a call allocates nothing."""
    key = (ctx, bool(training))
    if key not in _flags:
        _flags[key] = nd.full((1,), float(training), ctx=ctx)
    return _flags[key]


# The probe's rows: -PROBE_ROW, 0, PROBE_ROW in every channel (exact in float16 and float32).
PROBE_ROW = 32768.0


def mode_flag(F, gamma, running_mean, running_var):
    """The operator's `training` input in a graph: a probe of the mode, read as the graph runs.

    MXNet tells library operators nothing about the mode, and a hybridized graph is traced once.
    BatchNorm is the one built-in operator that reads the mode without drawing random numbers
    (Dropout draws one, which shifted every later draw of a seeded run; a Python operator can
    hang the process at exit). The probe is MXNet's BatchNorm of the rows -K, 0, K (K = 2^15) in
    every channel, with the layer's own running statistics as its own (BatchNorm's running
    statistics must be graph variables) and momentum 1, which leaves every bit of them as it
    is (a test). Training, it normalizes the rows by their own statistics; predicting, by the
    running ones: the operator (attribute probe=2) computes both and takes the nearer. Six
    small operators: the rows, BatchNorm, BlockGrad.
    """
    zeros = F.zeros_like(gamma)
    rows = F.stack(zeros - PROBE_ROW, zeros, zeros + PROBE_ROW)
    probe = F.BatchNorm(rows, zeros, zeros, running_mean, running_var, eps=1e-5, momentum=1.0,
                        fix_gamma=True, use_global_stats=False, cudnn_off=True)
    return F.BlockGrad(probe)


def _through_identity(F, array):
    """The operators only ever write their gradients; an input whose gradient may have to be
    added up (grad_req='add') reaches them through identity, whose backward honours that.
    Imperatively, that is an array with a gradient buffer of its own. In a graph, it is a
    variable (the graph's input, a parameter), or any input where MXNet may add gradients in
    place (MXNET_EXEC_ENABLE_ADDTO); another operator's output otherwise gets its gradient in a
    buffer of its own, written once, and each identity costs an operator call for nothing."""
    if F is nd:
        needed = array.grad is not None
    else:
        needed = array.get_children() is None or _addto_enabled()
    return F.identity(array) if needed else array


def _addto_enabled():
    return os.environ.get('MXNET_EXEC_ENABLE_ADDTO', '0').strip() not in ('', '0')


def batch_norm(F, x, gamma, beta, running_mean, running_var, *, training=None, axis=1,
               eps=1e-5, momentum=0.9, fix_gamma=False, use_global_stats=False, name=None):
    """gluon_bn_batch_norm's output, for F = mx.nd or mx.sym (Gluon's F).

    The running statistics (one value per channel, any shape) are updated in place when
    training. `training`: the mode if the caller knows it; None: autograd's mode imperatively,
    read from the graph as it runs in a graph (mode_flag).
    """
    if training is None and F is nd:   # imperatively the mode is known now
        training = autograd.is_training()
    probe = 2 if training is None else 0
    flag = (mode_flag(F, gamma, running_mean, running_var) if probe
            else _constant_flag(x.context, training))
    return F.gluon_bn_batch_norm(
        _through_identity(F, x), _through_identity(F, gamma), _through_identity(F, beta),
        running_mean, running_var, flag, axis=axis, eps=eps, momentum=momentum,
        fix_gamma=fix_gamma, use_global_stats=use_global_stats, probe=probe, name=name)[0]


def conv(F, x, weight, bias):
    """gluon_bn_conv: one input channel, 5x5 windows, stride 1, no padding (FirstConv2D)."""
    return F.gluon_bn_conv(_through_identity(F, x), _through_identity(F, weight),
                           _through_identity(F, bias))


def moments(F, x, axis=1):
    """SyncBatchNorm's per-device moments: (3, C) float64 rows count, mean, M2."""
    return F.gluon_bn_moments(_through_identity(F, x), axis=axis)


def combine(F, moments_of_every_device):
    """The whole batch's (2, C) mean and biased variance, the same bits on every device."""
    return F.gluon_bn_combine(*moments_of_every_device,
                              num_devices=len(moments_of_every_device))


def normalize(F, x, gamma, beta, stats, running_mean, running_var, *, axis=1, eps=1e-5,
              momentum=0.9, fix_gamma=False):
    """SyncBatchNorm's output from the combined statistics; the running ones updated in place."""
    return F.gluon_bn_normalize(
        _through_identity(F, x), _through_identity(F, gamma), _through_identity(F, beta), stats,
        running_mean, running_var, axis=axis, eps=eps, momentum=momentum, fix_gamma=fix_gamma)
