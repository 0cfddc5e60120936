"""The operator library: gluon_bn's C++ sources (csrc/) compiled once with the system's C++
compiler into a cache folder, named after everything the build depends on, and loaded into MXNet
(mx.library.load), which then offers each operator as nd.gluon_bn_* and sym.gluon_bn_*.
"""
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import warnings

import mxnet as mx

from ..utils import files
from ..utils.errors import Error

_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')
SOURCES = [os.path.join(_CSRC, name) for name in ('batch_norm.cc', 'sync_batch_norm.cc',
                                                   'conv.cc')]
HEADERS = [os.path.join(_CSRC, 'common.h')]
_MXNET_DIR = os.path.dirname(os.path.abspath(mx.__file__))
_LIB_API = os.path.join(_MXNET_DIR, 'src', 'lib_api.cc')
_loaded = False


class BuildError(Error, RuntimeError):
    """The operator library could not be built: no compiler, a compile error, no cache folder."""


def cache_dir():
    """Where the built library lives: $GLUON_BN_CACHE, else ~/.cache/gluon_bn."""
    return os.environ.get('GLUON_BN_CACHE') or os.path.join(os.path.expanduser('~'), '.cache',
                                                            'gluon_bn')


# -march=native: the vector instructions of the processor it runs on (the library is built where
# it runs, and the processor is part of its name): on LeNet's first batch norm the forward pass
# takes less than half the time of x86-64's baseline SSE2 build (README, Speed).
# -fopenmp: the operators' threads come from the OpenMP runtime MXNet links itself (libgomp).
# -ffp-contract=off: no fused multiply-adds, which some targets would otherwise form where
# others do not; with sums in a fixed order, the operators give the same bits on every machine.
# -Wall and no more: -Wextra only repeats MXNet's own header at us.
FLAGS = ('-shared', '-fPIC', '-std=c++17', '-O3', '-march=native', '-fopenmp', '-ffp-contract=off',
         '-Wall')


def compiler():
    """The compiler command as a list: $CXX split as a shell would (make users write flags in
    it: CXX="g++ -O2"), else g++."""
    command = shlex.split(os.environ.get('CXX', '').strip() or 'g++')
    return command


def _compiler_identity():
    """What the build depends on besides the sources: the compiler's own account of itself
    (`--version`), or its name if it cannot give one (build() then says what is wrong)."""
    try:
        return subprocess.run([*compiler(), '--version'], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ' '.join(compiler())


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
    for part in (mx.__version__, ' '.join(compiler()), _compiler_identity(), *FLAGS,
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
            return f.read().split()[0] == sha256_of(path) and _is_library(path)
    except (OSError, IndexError):
        return False


def _is_library(path):
    """An ELF shared object, not an empty file (a compiler that exits 0 and writes nothing)."""
    with open(path, 'rb') as f:
        return f.read(4) == b'\x7fELF'


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
    command = [*compiler(), *FLAGS, '-I', os.path.join(_MXNET_DIR, 'include'), *SOURCES,
               _LIB_API, '-o', tmp]
    named = ' '.join(compiler())
    way_out = ("set CXX to a C++17 compiler (g++ or clang++, flags allowed: CXX='g++ -O2'), "
               "or install g++ (Debian, Ubuntu: sudo apt-get install g++); "
               "BatchNorm(fast=False) needs none")
    try:
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        if result.stderr.strip():   # shown, not discarded
            warnings.warn(f"gluon_bn: the compiler warned while building the batch-norm "
                          f"operator:\n{result.stderr}", RuntimeWarning)
        if not _is_library(tmp):
            raise BuildError(f"the compiler ({named}) said it built the batch-norm operator "
                             f"but wrote no library: {way_out}")
        files.write_atomically(path + '.sha256', f"{sha256_of(tmp)}  {os.path.basename(path)}\n"
                               .encode())
        os.replace(tmp, path)
    except (FileNotFoundError, PermissionError):
        raise BuildError(f"gluon_bn builds its batch-norm operator once with a C++ compiler "
                         f"and found none ({named!r}): {way_out}") from None
    except subprocess.CalledProcessError as error:
        said = [line for line in error.stderr.splitlines() if 'error' in line.lower()] or \
            error.stderr.strip().splitlines()
        what = f": {said[0].strip()}" if said else ", and said nothing"
        raise BuildError(f"building the batch-norm operator with {named} failed (exit status "
                         f"{error.returncode}){what}; {way_out}") from None
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
