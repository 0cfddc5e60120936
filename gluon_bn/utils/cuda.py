"""Load MXNet's GPU build with the CUDA libraries of PyPI's nvidia-*-cu11 packages.

mxnet-cu112 links the CUDA 11 runtime, cuBLAS, cuDNN 8 and friends but bundles none of them, so
on a machine with only the NVIDIA driver `import mxnet` fails. requirements-gpu.txt installs them
as wheels (site-packages/nvidia/*/lib), where the system's loader does not look. Before mxnet is
imported, `preload()` loads every library that libmxnet.so needs and the system cannot provide
from those folders, as PyTorch does for its own wheels. Once a library is loaded under its soname,
the loader reuses it for libmxnet.so. When libmxnet.so loads as it is (the CPU build, or a system
CUDA), nothing is touched.

When it still cannot load, `import gluon_bn` raises CudaLibraryError, which names the missing
library and the two ways out, followed by where each library was found.
"""
import ctypes
import glob
import importlib.util
import os
import struct

from .errors import Error

DRIVER = 'libcuda.so.1'
# Where requirements-gpu.txt gets each library that mxnet-cu112 1.9.1 links, for the error message.
PACKAGES = {'libcudart.so.11.0': 'nvidia-cuda-runtime-cu11',
            'libcublas.so.11': 'nvidia-cublas-cu11', 'libcufft.so.10': 'nvidia-cufft-cu11',
            'libcurand.so.10': 'nvidia-curand-cu11', 'libcusolver.so.11': 'nvidia-cusolver-cu11',
            'libnvrtc.so.11.2': 'nvidia-cuda-nvrtc-cu11', 'libnccl.so.2': 'nvidia-nccl-cu11',
            'libnvToolsExt.so.1': 'nvidia-nvtx-cu11', 'libcudnn.so.8': 'nvidia-cudnn-cu11'}

# soname -> path of each library preload() took from a wheel, for anyone who asks
loaded = {}


class CudaLibraryError(Error, ImportError):
    """MXNet's shared library cannot load: a CUDA library or the NVIDIA driver is missing."""


def needed(path):
    """The sonames a 64-bit little-endian ELF shared library lists as DT_NEEDED, in order."""
    with open(path, 'rb') as f:
        header = f.read(64)
        if header[:4] != b'\x7fELF' or header[4] != 2 or header[5] != 1:
            raise ValueError(f"{path} is not a 64-bit little-endian ELF file")
        section_offset, = struct.unpack_from('<Q', header, 0x28)
        entry_size, count = struct.unpack_from('<HH', header, 0x3A)
        f.seek(section_offset)
        table = f.read(entry_size * count)
        sections = [struct.unpack_from('<IIQQQQII', table, i * entry_size) for i in range(count)]

        def read(section):
            f.seek(section[4])
            return f.read(section[5])

        SHT_DYNAMIC, DT_NEEDED = 6, 1
        names = []
        for section in sections:
            if section[1] == SHT_DYNAMIC:
                strings = read(sections[section[6]])   # sh_link: the dynamic string table
                entries = read(section)
                for i in range(0, len(entries), 16):
                    tag, value = struct.unpack_from('<qQ', entries, i)
                    if tag == DT_NEEDED:
                        names.append(strings[value:strings.index(b'\0', value)].decode())
        return names


def mxnet_library():
    """Path of the libmxnet.so that `import mxnet` will load, found without importing it."""
    from_env = os.environ.get('MXNET_LIBRARY_PATH')
    if from_env and os.path.isfile(from_env):
        return from_env
    spec = importlib.util.find_spec('mxnet')
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, 'libmxnet.so')
        if os.path.isfile(path):
            return path
    return None


def wheel_folders():
    """The nvidia namespace package's folders (site-packages/nvidia), wherever pip put them."""
    spec = importlib.util.find_spec('nvidia')
    return list(spec.submodule_search_locations or []) if spec else []


def loads(path_or_soname, mode=ctypes.RTLD_LOCAL):
    """Whether the loader can load it (a soname is looked up where the system looks)."""
    try:
        ctypes.CDLL(path_or_soname, mode)
        return True
    except OSError:
        return False


def preload(library=None, folders=None):
    """Make `library` (default: mxnet's libmxnet.so) loadable, taking the libraries it needs and
    the system lacks from `folders`/*/lib (default: the nvidia-*-cu11 wheels).

    Returns a list of (soname, where) for every library it needs; raises CudaLibraryError if
    some are still missing.
    """
    library = library or mxnet_library()
    if library is None or loads(library):
        return []   # no mxnet (its import will say so), or nothing to do
    folders = wheel_folders() if folders is None else folders
    own_folder = os.path.dirname(os.path.abspath(library))
    found = []
    for soname in needed(library):
        wheel = [p for folder in folders for p in sorted(glob.glob(os.path.join(folder, '*', 'lib',
                                                                                 soname)))]
        if os.path.exists(os.path.join(own_folder, soname)):
            found.append((soname, 'beside ' + os.path.basename(library)))
        elif loads(soname):
            found.append((soname, 'system'))
        elif wheel and loads(wheel[0], ctypes.RTLD_GLOBAL):
            loaded[soname] = wheel[0]
            found.append((soname, wheel[0]))
        else:
            found.append((soname, None))
    try:
        ctypes.CDLL(library, ctypes.RTLD_LOCAL)
    except OSError as error:
        raise CudaLibraryError(explain(library, found, error)) from None
    return found


def explain(library, found, error):
    """The message for a library that does not load even with the wheels' libraries."""
    missing = [soname for soname, where in found if where is None]
    lines = []
    if missing == [DRIVER]:
        lines += [f"MXNet's GPU build cannot load: {DRIVER}, the NVIDIA driver's library, is not "
                  f"on this machine. Two ways out:",
                  "  1. on a machine with an NVIDIA GPU, install its driver (any driver for CUDA "
                  "11: version 450.80 or newer); nothing else is needed",
                  "  2. or use the CPU build: in a fresh virtual environment, "
                  "pip install -r requirements.txt"]
    elif missing:
        packages = sorted({PACKAGES[s] for s in missing if s in PACKAGES})
        lines += [f"MXNet's GPU build cannot load: {', '.join(missing)} "
                  f"{'is' if len(missing) == 1 else 'are'} missing. Two ways out:",
                  "  1. pip install -r requirements-gpu.txt"
                  + (f" (it brings {', '.join(packages)})" if packages else "")
                  + (f", and install the NVIDIA driver ({DRIVER})" if DRIVER in missing else ""),
                  "  2. or use the CPU build: in a fresh virtual environment, "
                  "pip install -r requirements.txt"]
    else:   # every library is there, yet the load fails: say what the loader said
        lines += [f"MXNet's library cannot load: {error}"]
    lines.append(f"What {library} needs, and where it was found:")
    width = max(len(soname) for soname, _ in found) if found else 0
    for soname, where in found:
        lines.append(f"  {soname:<{width}}  {where or 'MISSING'}")
    return '\n'.join(lines)


def library_path_line():
    """The shell line that lets any Python program import MXNet's GPU build directly: code that
    imports mxnet before gluon_bn (the book's, as readers type it) needs the wheels' library
    folders on the loader's path (`eval "$(gluon-bn cuda-env)"`)."""
    folders = sorted({os.path.dirname(path) for path in loaded.values()})
    if not folders:
        return "# libmxnet.so loads as it is (CPU build, or a system CUDA): nothing to add"
    return f"export LD_LIBRARY_PATH={':'.join(folders)}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
