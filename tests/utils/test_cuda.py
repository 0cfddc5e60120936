"""gluon_bn.utils.cuda on real shared libraries built here: a stand-in for libmxnet.so that needs
libraries found only in a stand-in for site-packages/nvidia, on the system, or nowhere.

Each case runs in a fresh interpreter: a loaded library stays loaded, and LD_LIBRARY_PATH is
read once, at start."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from gluon_bn.utils import cuda

pytestmark = pytest.mark.skipif(shutil.which('g++') is None, reason='needs g++')


def build(folder, soname, value, needs=(), link_from=()):
    """A shared library with this soname whose value() returns `value` plus its needs' values."""
    folder.mkdir(parents=True, exist_ok=True)
    symbol = 'value_' + soname.split('.')[0]
    calls = ''.join(f' + value_{need.split(".")[0]}()' for need in needs)
    externs = ''.join(f'extern "C" int value_{need.split(".")[0]}();\n' for need in needs)
    source = folder / f'{soname}.cc'
    source.write_text(f'{externs}extern "C" int {symbol}() {{ return {value}{calls}; }}\n')
    path = folder / soname
    subprocess.run(['g++', '-shared', '-fPIC', '-o', str(path), f'-Wl,-soname,{soname}',
                    str(source), '-Wl,--no-as-needed', f'-L{folder}',
                    *[f'-L{d}' for d in link_from],
                    *[f'-l:{need}' for need in needs]], check=True)
    return path


def run(code, **env):
    """Run `code` in a fresh interpreter; its last line of output, as JSON."""
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                            text=True, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture
def libs(tmp_path):
    """libgbt_user.so needs libgbt_dep.so.1, which lies only in a wheel-like folder."""
    wheels = tmp_path / 'site-packages' / 'nvidia'
    dep = build(wheels / 'dep' / 'lib', 'libgbt_dep.so.1', 40)
    user = build(tmp_path, 'libgbt_user.so', 2, needs=['libgbt_dep.so.1'], link_from=[dep.parent])
    return tmp_path, wheels, user


def test_needed_lists_the_sonames_the_linker_recorded(libs):
    _, _, user = libs
    names = cuda.needed(str(user))
    assert names[0] == 'libgbt_dep.so.1' and 'libc.so.6' in names
    if shutil.which('readelf'):
        dynamic = subprocess.run(['readelf', '-d', str(user)], capture_output=True, text=True)
        recorded = [line.split('[')[1].rstrip(']') for line in dynamic.stdout.splitlines()
                    if '(NEEDED)' in line]
        assert names == recorded


def test_needed_reads_mxnets_own_library():
    library = cuda.mxnet_library()
    names = cuda.needed(library)
    assert 'libopenblas.so.0' in names or 'libcudart.so.11.0' in names
    with pytest.raises(ValueError, match='not a 64-bit little-endian ELF'):
        cuda.needed(__file__)


@pytest.mark.slow
def test_preload_takes_what_the_system_lacks_from_the_wheel_folders(libs):
    _, wheels, user = libs
    found = run(f"""
        import ctypes, json
        from gluon_bn.utils import cuda
        before = cuda.loads({str(user)!r})
        found = dict(cuda.preload({str(user)!r}, [{str(wheels)!r}]))
        print(json.dumps([before, found, ctypes.CDLL({str(user)!r}).value_libgbt_user(),
                          cuda.loaded]))
    """)
    before, where, value, loaded = found
    wheel_copy = str(wheels / 'dep' / 'lib' / 'libgbt_dep.so.1')
    assert before is False   # the loader alone cannot load it
    assert where['libgbt_dep.so.1'] == wheel_copy and where['libc.so.6'] == 'system'
    assert value == 42 and loaded == {'libgbt_dep.so.1': wheel_copy}


@pytest.mark.slow
def test_a_system_that_has_the_libraries_is_left_alone(libs, tmp_path):
    _, wheels, user = libs
    system = tmp_path / 'system'
    build(system, 'libgbt_dep.so.1', 10)
    result = run(f"""
        import ctypes, json
        from gluon_bn.utils import cuda
        found = cuda.preload({str(user)!r}, [{str(wheels)!r}])
        print(json.dumps([found, ctypes.CDLL({str(user)!r}).value_libgbt_user(), cuda.loaded]))
    """, LD_LIBRARY_PATH=str(system))
    assert result == [[], 12, {}]   # the system's copy (10), not the wheel's (40)


def test_a_missing_library_is_named_with_both_ways_out(tmp_path):
    build(tmp_path, 'libgbt_gone.so.1', 1)
    user = build(tmp_path, 'libgbt_user.so', 2, needs=['libgbt_gone.so.1'])
    os.remove(tmp_path / 'libgbt_gone.so.1')
    with pytest.raises(cuda.CudaLibraryError) as caught:
        cuda.preload(str(user), [str(tmp_path / 'nowhere')])
    message = str(caught.value)
    assert isinstance(caught.value, ImportError)
    assert message.startswith("MXNet's GPU build cannot load: libgbt_gone.so.1 is missing")
    assert 'pip install -r requirements-gpu.txt' in message
    assert 'pip install -r requirements.txt' in message
    assert re.search(r'\n  libgbt_gone\.so\.1 +MISSING\n', message)


@pytest.mark.slow
@pytest.mark.skipif(cuda.loads(cuda.DRIVER), reason='this machine has an NVIDIA driver')
def test_importing_gluon_bn_without_a_driver_says_so(tmp_path):
    build(tmp_path, cuda.DRIVER, 1)
    fake_mxnet = build(tmp_path, 'libfake_mxnet.so', 2, needs=[cuda.DRIVER])
    os.remove(tmp_path / cuda.DRIVER)
    result = subprocess.run([sys.executable, '-c', 'import gluon_bn'], capture_output=True,
                            text=True, env={**os.environ, 'MXNET_LIBRARY_PATH': str(fake_mxnet)})
    assert result.returncode == 1
    message = result.stderr.split('gluon_bn.utils.cuda.CudaLibraryError: ')[1]
    assert message.startswith(f"MXNet's GPU build cannot load: {cuda.DRIVER}, the NVIDIA "
                              f"driver's library, is not on this machine. Two ways out:")
    assert 'install its driver' in message and 'pip install -r requirements.txt' in message
    assert re.search(rf'\n  {re.escape(cuda.DRIVER)} +MISSING\n', message)
