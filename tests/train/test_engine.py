"""The speed settings: MXNet's synchronous engine for one CPU (gluon_bn.train.engine). Each
check needs an interpreter of its own (MXNet's engine starts once per process). Speed itself is
measured by `gluon-bn bench-peers`, not asserted here."""
import subprocess
import sys
import textwrap

import pytest

from gluon_bn.train import engine
from tests.helpers import gluon_bn, without_engine_settings


def python(code, **env):
    """code run in a fresh interpreter (MXNet's engine starts once per process)."""
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=without_engine_settings(**env))


@pytest.mark.slow
def test_the_synchronous_engine_starts_before_the_first_operator_and_only_then():
    ran = python('''
        import os
        from gluon_bn.train import engine
        from mxnet import nd
        print(engine.synchronous_cpu(2), os.environ['MXNET_ENGINE_TYPE'])
        print(engine.synchronous_cpu(2))   # running already: nothing changes
        print((nd.ones(3) * 2).sum().asscalar())
    ''')
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split('\n')[:3] == ['True NaiveEngine', 'False', '6.0']
    assert 'start using engine' not in ran.stderr   # MXNet's own line is kept quiet


@pytest.mark.slow
def test_too_late_leaves_the_running_engine_and_the_environment_alone():
    ran = python('''
        import os
        from gluon_bn.train import engine
        from mxnet import nd
        nd.zeros(1).wait_to_read()
        print(engine.synchronous_cpu(), 'MXNET_ENGINE_TYPE' in os.environ)
    ''')
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ['False', 'False']


@pytest.mark.slow
@pytest.mark.parametrize('ctxs, kvstore, env, chosen', [
    ('[mx.cpu()]', None, {}, True),
    ('[mx.cpu()]', None, {'OMP_NUM_THREADS': '1'}, False),            # the user's choice
    ('[mx.cpu()]', None, {'MXNET_ENGINE_TYPE': 'ThreadedEngine'}, False),
    ('[mx.cpu(0), mx.cpu(1)]', None, {}, False),                       # several devices
    ('[mx.cpu()]', "'dist_sync'", {}, False),                          # a distributed KVStore
])
def test_the_training_command_chooses_the_synchronous_engine_for_one_cpu_only(ctxs, kvstore, env,
                                                                           chosen):
    ran = python(f'''
        import mxnet as mx
        from gluon_bn.train import engine
        print(engine.default_settings({ctxs}, {kvstore}) is not None)
    ''', **env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[-1] == str(chosen)


@pytest.mark.parametrize('threads', [0, -1, 1.5, True, '2'])
def test_a_bad_thread_count_is_refused(threads):
    with pytest.raises(ValueError, match='threads must be a positive int'):
        engine.synchronous_cpu(threads)


@pytest.mark.slow
@pytest.mark.real_data
def test_the_training_command_trains_on_the_synchronous_engine_quietly():
    """What `make train` runs: MXNet's synchronous engine (nothing in the environment says
    otherwise), the d2lzh lines, and no line of MXNet's about the engine."""
    ran = gluon_bn('train', '--bn', 'hybrid', '--epochs', '1', '--train-size', '1024', '--ctx',
                   'cpu', env=without_engine_settings())
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[0] == 'training on cpu(0)'
    assert ran.stdout.splitlines()[1].startswith('epoch 1, loss')
    assert 'engine' not in ran.stderr


@pytest.mark.slow
def test_a_busy_machine_keeps_mxnets_own_engine_and_says_so():
    ran = python('''
        import os
        import mxnet as mx
        from gluon_bn.train import engine
        print(engine.default_settings([mx.cpu()]), os.environ.get('MXNET_ENGINE_TYPE'))
    ''', **{engine.LOAD_VARIABLE: '1'})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ['None', 'None']   # MXNet's ThreadedEnginePerDevice
    assert 'other work takes 1.0 of the' in ran.stderr and "MXNet's own engine" in ran.stderr


def test_the_load_is_measured_from_the_kernels_counters():
    if engine.processors() < 2:
        pytest.skip('needs two processors')
    busy = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try:
        import time
        time.sleep(0.3)
        assert engine.busy_processors(0.5) >= 0.6
    finally:
        busy.kill()
        busy.wait()
    assert engine.busy_processors(0.01, stat='/no/such/stat') == 0.0


def test_an_assumed_load_that_is_not_a_number_is_refused(monkeypatch):
    import mxnet as mx
    monkeypatch.setenv(engine.LOAD_VARIABLE, 'high')
    for name in engine.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match='GLUON_BN_ASSUME_LOAD must be a number'):
        engine.default_settings([mx.cpu()])
