"""The speed settings: MXNet's synchronous engine for one CPU (gluon_bn.engine), the operator's
threads, and the peer benchmark's plumbing. Speed itself is measured by scripts/bench_peers.py,
not asserted here."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import checkout_env, run_script
from gluon_bn import engine
from gluon_bn.engine import USER_SETTINGS


def unset_env(**env):
    """This checkout's environment with none of the engine and thread settings a user may
    have, but for those in env."""
    return {**{name: value for name, value in checkout_env().items()
               if name not in USER_SETTINGS}, **env}


def python(code, **env):
    """code run in a fresh interpreter (MXNet's engine starts once per process)."""
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=unset_env(**env))


def test_the_synchronous_engine_starts_before_the_first_operator_and_only_then():
    ran = python('''
        import os
        from gluon_bn import engine
        from mxnet import nd
        print(engine.synchronous_cpu(2), os.environ['MXNET_ENGINE_TYPE'])
        print(engine.synchronous_cpu(2))   # running already: nothing changes
        print((nd.ones(3) * 2).sum().asscalar())
    ''')
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split('\n')[:3] == ['True NaiveEngine', 'False', '6.0']
    assert 'start using engine' not in ran.stderr   # MXNet's own line is kept quiet


def test_too_late_leaves_the_running_engine_and_the_environment_alone():
    ran = python('''
        import os
        from gluon_bn import engine
        from mxnet import nd
        nd.zeros(1).wait_to_read()
        print(engine.synchronous_cpu(), 'MXNET_ENGINE_TYPE' in os.environ)
    ''')
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ['False', 'False']


@pytest.mark.parametrize('ctxs, kvstore, env, chosen', [
    ('[mx.cpu()]', None, {}, True),
    ('[mx.cpu()]', None, {'OMP_NUM_THREADS': '1'}, False),            # the user's choice
    ('[mx.cpu()]', None, {'MXNET_ENGINE_TYPE': 'ThreadedEngine'}, False),
    ('[mx.cpu(0), mx.cpu(1)]', None, {}, False),                       # several devices
    ('[mx.cpu()]', "'dist_sync'", {}, False),                          # a distributed KVStore
])
def test_the_training_script_chooses_the_synchronous_engine_for_one_cpu_only(ctxs, kvstore, env,
                                                                           chosen):
    ran = python(f'''
        import mxnet as mx
        from gluon_bn import engine
        print(engine.default_settings({ctxs}, {kvstore}) is not None)
    ''', **env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[-1] == str(chosen)


@pytest.mark.parametrize('threads', [0, -1, 1.5, True, '2'])
def test_a_bad_thread_count_is_refused(threads):
    with pytest.raises(ValueError, match='threads must be a positive int'):
        engine.synchronous_cpu(threads)


BITS = '''
    import sys
    import numpy as np
    from mxnet import autograd, nd
    from gluon_bn import HybridBatchNorm
    from gluon_bn.conv import FirstConv2D
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


@pytest.mark.real_data
def test_bench_peers_runs_without_pytorch_and_prints_its_tables():
    ran = run_script('bench_peers.py', '--torch-python', 'none', '--rounds', '1', '--epochs', '1',
                     '--train-size', '512', env=unset_env())
    assert ran.returncode == 0, ran.stderr
    assert 'PyTorch: not measured' in ran.stdout
    assert 'synchronous engine' in ran.stdout
    for shape in ('(256, 6, 24, 24)', '(256, 16, 8, 8)', '(256, 120)', '(256, 84)'):
        row = next(line for line in ran.stdout.splitlines() if line.startswith(shape))
        assert len(row.split()) - shape.count(' ') == 1 + 5   # 4 timings + the floor ratio
    for name in ('gluon_bn hybrid', 'gluon_bn scratch', 'gluon_bn gluon'):
        row = next(line for line in ran.stdout.splitlines() if line.startswith(name))
        seconds, accuracy = map(float, row.split()[2:4])
        assert seconds > 0 and 0 <= accuracy <= 1


@pytest.mark.real_data
def test_bench_peers_names_a_pytorch_worker_that_fails(tmp_path):
    broken = tmp_path / 'python'
    broken.write_text('#!/bin/sh\nexit 3\n')
    broken.chmod(0o755)
    ran = run_script('bench_peers.py', '--torch-python', broken, '--rounds', '1',
                     '--skip-epochs', '--train-size', '256')
    assert ran.returncode == 1
    assert 'the PyTorch worker ended (exit status 3)' in ran.stderr
    assert 'Traceback' not in ran.stderr


@pytest.mark.real_data
def test_the_training_script_trains_on_the_synchronous_engine_quietly():
    """What `make train` runs: MXNet's synchronous engine (nothing in the environment says
    otherwise), the d2lzh lines, and no line of MXNet's about the engine."""
    ran = run_script('train_lenet_bn.py', '--bn', 'hybrid', '--epochs', '1', '--train-size',
                     '1024', '--ctx', 'cpu', env=unset_env())
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[0] == 'training on cpu(0)'
    assert ran.stdout.splitlines()[1].startswith('epoch 1, loss')
    assert 'engine' not in ran.stderr
