"""gluon_bn's C++ operators themselves: built once into a cache named after what the build
depends on, rebuilt when damaged, refused with the way out when they cannot be built, and the
same bits on any number of threads."""
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from gluon_bn import ops
from tests.helpers import checkout_env, gluon_bn

C = 3


def test_a_missing_compiler_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv('CXX', 'no-such-compiler')
    with pytest.raises(RuntimeError, match="no-such-compiler.*apt-get install g\\+\\+"):
        ops.build(str(tmp_path / 'lib.so'))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('cxx, words', [
    ('false', 'with false failed (exit status 1), and said nothing; set CXX to a C++17'),
    ('sh -c "echo \'x.cc:1: error: no such thing\' >&2; exit 3" --',
     'failed (exit status 3): x.cc:1: error: no such thing; set CXX'),
    ('true', 'the compiler (true) said it built the batch-norm operator but wrote no library'),
])
def test_a_compiler_that_fails_or_writes_nothing_is_named_in_one_line(tmp_path, monkeypatch,
                                                                      cxx, words):
    monkeypatch.setenv('CXX', cxx)
    path = str(tmp_path / 'lib.so')
    with pytest.raises(ops.BuildError) as raised:
        ops.build(path)
    assert words in str(raised.value) and '\n' not in str(raised.value)
    assert os.listdir(tmp_path) == []   # no empty library left to be trusted later


def test_an_empty_library_with_a_matching_checksum_is_not_trusted(tmp_path):
    library = tmp_path / 'lib.so'
    library.write_bytes(b'')
    (tmp_path / 'lib.so.sha256').write_text(f"{ops.library.sha256_of(str(library))}  lib.so\n")
    assert not ops.intact(str(library))


@pytest.mark.slow
def test_flags_in_cxx_are_taken_as_make_takes_them(tmp_path, monkeypatch):
    monkeypatch.setenv('CXX', 'g++ -O2')
    monkeypatch.setenv('GLUON_BN_CACHE', str(tmp_path / 'cache'))
    path = ops.library_path()
    ops.build(path)
    assert ops.intact(path)


@pytest.mark.slow
def test_the_compiler_is_part_of_the_build_key_and_its_warnings_are_shown(tmp_path, monkeypatch):
    default = ops.library_path()
    wrapper = tmp_path / 'cxx'
    wrapper.write_text('#!/bin/sh\necho "warning: a word from the compiler" >&2\nexec g++ "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv('CXX', str(wrapper))
    monkeypatch.setenv('GLUON_BN_CACHE', str(tmp_path / 'cache'))
    path = ops.library_path()
    assert os.path.basename(path) != os.path.basename(default)   # another compiler, another build
    with pytest.warns(RuntimeWarning, match='(?s)compiler warned.*a word from the compiler'):
        ops.build(path)
    assert ops.intact(path)


def test_the_operator_says_each_error_once_and_keeps_an_empty_batchs_statistics():
    """MXNet's extension API showed every earlier error of the process with each new one."""
    ops.load()
    X, p, training = nd.ones((2, C, 4, 4)), nd.ones(C), nd.ones(1)
    for _ in range(3):
        with pytest.raises(mx.base.MXNetError) as raised:
            nd.gluon_bn_batch_norm(X, nd.ones(C + 1), p, nd.zeros(C), nd.ones(C), training)
        message = str(raised.value)
        assert message.count('need one value per channel') == 1 and '[1]' not in message
    mean, var = nd.zeros(C), nd.ones(C)
    with mx.util.np_shape(True):
        out = nd.gluon_bn_batch_norm(nd.ones((0, C)), p, p, mean, var, training)[0]
        assert out.shape == (0, C)
    np.testing.assert_array_equal(mean.asnumpy(), 0)
    np.testing.assert_array_equal(var.asnumpy(), 1)


def load_in_a_fresh_process(cache):
    return subprocess.run([sys.executable, '-c', 'import gluon_bn; gluon_bn.ops.load()'],
                          env=checkout_env(GLUON_BN_CACHE=str(cache)), capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_a_damaged_operator_library_is_built_again_instead_of_crashing(tmp_path):
    ops.load()   # built already in this process's cache: copied, then damaged
    built = pathlib.Path(ops.library_path())
    library = tmp_path / built.name
    for suffix in ('', '.sha256'):
        shutil.copyfile(str(built) + suffix, str(library) + suffix)
    whole = library.read_bytes()
    with open(library, 'r+b') as f:
        f.truncate(len(whole) // 2)   # loading this killed the process with SIGBUS
    again = load_in_a_fresh_process(tmp_path)
    assert again.returncode == 0, again.stderr
    assert 'is damaged (its checksum does not match); building it again' in again.stderr
    assert ops.intact(str(library)) and os.path.getsize(library) > len(whole) // 2


@pytest.mark.slow
def test_an_unwritable_operator_cache_is_named_with_the_way_out():
    result = load_in_a_fresh_process('/proc/gluon_bn-cache')
    assert result.returncode != 0
    assert ('BuildError: gluon_bn builds its batch-norm operator once into '
            '/proc/gluon_bn-cache and cannot write there') in result.stderr
    assert 'set GLUON_BN_CACHE to a folder it can write' in result.stderr


@pytest.mark.slow
@pytest.mark.real_data
def test_the_command_line_says_so_in_one_line():
    ran = gluon_bn('train', '--bn', 'hybrid', '--epochs', 1, '--train-size', 256,
                   env=checkout_env(GLUON_BN_CACHE='/proc/gluon_bn-cache'))
    assert ran.returncode == 1 and 'Traceback' not in ran.stderr
    assert ran.stderr.startswith('gluon-bn train: error: gluon_bn builds its batch-norm')


@pytest.mark.parametrize('value, training', [(0.0, True), (1.49, True), (1.51, False),
                                             (40.0, False)])
def test_graphs_exported_with_the_earlier_probe_keep_their_meaning(value, training):
    """Graphs exported before the probe of rows -K, 0, K carry probe=1: the last value of
    their probe below 1.5 means training."""
    ops.load()
    x = nd.array(np.random.default_rng(4).normal(3, 2, size=(8, 3)))
    stats = [nd.zeros(3), nd.ones(3)]
    y = nd.gluon_bn_batch_norm(x, nd.ones(3), nd.zeros(3), *stats, nd.array([5.0, value]),
                               probe=1)[0].asnumpy()
    batch = (x.asnumpy() - x.asnumpy().mean(0)) / np.sqrt(x.asnumpy().var(0) + 1e-5)
    np.testing.assert_allclose(y, batch if training else x.asnumpy() / np.sqrt(1 + 1e-5),
                               rtol=1e-5, atol=1e-5)


BITS = '''
    import sys
    import numpy as np
    from mxnet import autograd, nd
    from gluon_bn import HybridBatchNorm
    from gluon_bn import FirstConv2D
    out = []
    for shape in [(256, 6, 24, 24), (512, 120)]:
        rng = np.random.default_rng(0)
        layer = HybridBatchNorm(in_channels=shape[1])
        layer.initialize()
        X = nd.array(rng.standard_normal(shape) * 3 + 1)
        X.attach_grad()
        with autograd.record():
            Y = layer(X)
        Y.backward(nd.array(rng.standard_normal(shape)))
        out += [Y.asnumpy(), X.grad.asnumpy(), layer.gamma.grad().asnumpy(),
                layer.running_var.data().asnumpy()]
    conv = FirstConv2D(6)
    conv.initialize()
    rng = np.random.default_rng(1)
    conv.weight.set_data(nd.array(rng.standard_normal((6, 1, 5, 5))))
    X = nd.array(rng.standard_normal((256, 1, 28, 28)))
    X.attach_grad()
    with autograd.record():
        Y = conv(X)
    Y.backward(nd.array(rng.standard_normal(Y.shape)))
    out += [Y.asnumpy(), X.grad.asnumpy(), conv.weight.grad().asnumpy(), conv.bias.grad().asnumpy()]
    np.savez(sys.argv[1], *out)
'''


@pytest.mark.slow
def test_the_operator_gives_the_same_bits_on_one_thread_or_several(tmp_path):
    """Each channel's sums run in an order fixed by the layout, whatever the threads; so do the
    first convolution's (FirstConv2D)."""
    results = []
    for threads in ('1', '2', '3'):
        path = tmp_path / f'{threads}.npz'
        ran = subprocess.run([sys.executable, '-c', textwrap.dedent(BITS), str(path)],
                             capture_output=True, text=True, timeout=300,
                             env=checkout_env(OMP_NUM_THREADS=threads))
        assert ran.returncode == 0, ran.stderr
        results.append(np.load(path))
    for other in results[1:]:
        for key in results[0].files:
            assert results[0][key].tobytes() == other[key].tobytes(), key
