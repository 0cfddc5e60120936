"""The benchmarks' plumbing, on tiny settings: each prints its tables with figures of the right
kind. Speed itself is measured by running them, not asserted here."""
import re

import pytest

from gluon_bn.book import rerun
from tests.helpers import gluon_bn, without_engine_settings

pytestmark = pytest.mark.real_data


def row(stdout, start):
    return next(line for line in stdout.splitlines() if line.startswith(start))


@pytest.mark.slow
def test_bench_peers_runs_without_pytorch_and_prints_its_tables():
    """In a process of its own, with none of the user's engine settings: the one that chooses
    the training command's engine and checks the cores first."""
    ran = gluon_bn('bench-peers', '--torch-python', 'none', '--rounds', '1', '--epochs', '1',
                   '--train-size', '512', env=without_engine_settings())
    assert ran.returncode == 0, ran.stderr
    assert 'PyTorch: not measured' in ran.stdout
    assert 'synchronous engine' in ran.stdout and 'as fast as one here' in ran.stdout
    for shape in ('(256, 6, 24, 24)', '(256, 16, 8, 8)', '(256, 120)', '(256, 84)'):
        cells = row(ran.stdout, shape)[len(shape):].split()
        assert len(cells) == 5 and all(float(cell) > 0 for cell in cells)   # 4 timings, ratio
    for name in ('gluon_bn hybrid', 'gluon_bn scratch', 'gluon_bn gluon'):
        seconds, accuracy = map(float, row(ran.stdout, name).split()[2:4])
        assert seconds > 0 and 0 <= accuracy <= 1
    predicting = [line.split() for line in ran.stdout.split('Prediction, ms per batch')[1]
                  .split('\n\n')[0].splitlines()[2:]]
    assert [(r[0], r[1], r[2]) for r in predicting] == [
        (network, memory, batch) for network in ('BN-LeNet', 'cifar_resnet20_v1')
        for memory in ('plain', 'static') for batch in ('1', '32', '128')]
    for r in predicting:   # nn.BatchNorm, gluon_bn, and the ratio of the two
        builtin, ours, ratio = map(float, r[3:6])
        assert ratio == pytest.approx(ours / builtin, abs=0.01)
    steps = ran.stdout.split('Training steps, ms per step')[1].split('\n\n')[0].splitlines()[2:]
    assert [line.split()[:2] for line in steps] == [['BN-LeNet', '256'],
                                                    ['cifar_resnet20_v1', '32'],
                                                    ['cifar_resnet20_v1', '128']]


def test_bench_peers_names_a_pytorch_worker_that_fails(tmp_path, cli):
    broken = tmp_path / 'python'
    broken.write_text('#!/bin/sh\nexit 3\n')
    broken.chmod(0o755)
    ran = cli('bench-peers', '--torch-python', broken, '--rounds', '1', '--skip-epochs',
              '--train-size', '256')
    assert ran.returncode == 1
    assert ran.stderr == "gluon-bn bench-peers: error: the PyTorch worker ended (exit status 3)\n"


def test_bench_peers_refuses_a_python_that_is_not_there(cli):
    ran = cli('bench-peers', '--torch-python', '/no/such/python')
    assert ran.returncode == 2
    assert ran.stderr == "gluon-bn bench-peers: error: --torch-python: /no/such/python does " \
                         "not exist\n"


@pytest.mark.slow
def test_bench_bn_times_every_path_and_the_lenet_steps(cli):
    ran = cli('bench-bn', '--reps', 1, '--rounds', 1)
    assert ran.returncode == 0, ran.stderr
    for shape in ('(256, 6, 24, 24)', '(256, 120)', '(32, 128, 28, 28)'):
        cells = row(ran.stdout, shape)[len(shape):].split()
        assert len(cells) == 7 and all(float(cell) > 0 for cell in cells)
    for bn in ('gluon', 'hybrid', 'scratch'):
        ms, seconds, ratio = map(float, row(ran.stdout, bn + ' ').split()[1:])
        assert ms > 0 and seconds == pytest.approx(ms * 235 / 1000, abs=0.01)
    assert float(row(ran.stdout, 'gluon ').split()[3]) == 1.0


@pytest.mark.slow
def test_bench_epoch_times_the_books_pipeline_and_ours(cli):
    with rerun.limit_batches(2):   # both pipelines: two batches a pass
        ran = cli('bench-epoch', '--bn', 'hybrid')
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert 'training on cpu(0)' in lines   # d2lzh's own train_ch5, printing its lines
    assert re.fullmatch(r'hybrid +\d+\.\d +\d+\.\d +\d+\.\d\d', lines[-1]), lines[-1]
    assert lines[-2].split() == ['bn', 'book', 's/epoch', 'ours', 's/epoch', 'ours/book']


@pytest.mark.slow
def test_accuracy_prints_every_path_on_every_shape(cli):
    ran = cli('accuracy', '--dtype', 'float64', '--steps', 1)
    assert ran.returncode == 0, ran.stderr
    header, *lines = ran.stdout.splitlines()
    fields = header.split()[-8:]
    assert fields[4:6] == ['running_mean', 'running_var'] and len(lines) == 4 * 8   # 4 shapes
    for line in lines:
        errors = dict(zip(fields, map(float, line.split()[-8:])))
        if ' nn.BatchNorm ' in line:   # its momentum is a C float: float32-accurate statistics
            predicting = ('running_mean', 'running_var', 'y_predict', 'y_predict_one')
            assert min(errors.pop(name) for name in predicting) > 1e-9, line
        assert max(errors.values()) < 1e-9, line   # float64 everywhere else


@pytest.mark.slow
@pytest.mark.real_data
def test_bench_load_times_each_setting_quiet_and_busy(cli):
    ran = cli('bench-load', '--epochs', 2, '--train-size', 512)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[1].split() == ['setting', 'quiet', 'ratio', 'busy', 'ratio']
    rows = {line[:30].strip(): line[30:].split() for line in lines[2:]}
    assert set(rows) == {'gluon_bn now', 'synchronous always (before)', "MXNet's defaults"}
    assert rows["MXNet's defaults"][1] == rows["MXNet's defaults"][3] == '1.00'
    assert all(float(cell) > 0 for cells in rows.values() for cell in cells)


@pytest.mark.slow
def test_bench_fold_times_every_contender_with_one_thread_and_all(cli):
    ran = cli('bench-fold', '--rounds', 1)
    assert ran.returncode == 0, ran.stderr
    rows = [line.split() for line in ran.stdout.splitlines() if line.startswith(('BN-', 'cifar'))]
    threads = sorted({1, len(__import__('os').sched_getaffinity(0))})
    assert [(row[0], row[1], int(row[2])) for row in rows] == [
        (name, layer, n) for name in ('BN-LeNet', 'cifar_resnet20_v1')
        for layer in ('nn.BatchNorm', 'HybridBatchNorm') for n in threads]
    for row in rows:
        times = [float(cell) for cell in row[3:9]]
        assert all(t > 0 for t in times)
        assert float(row[9]) == pytest.approx(times[1] / times[2], abs=0.006)
