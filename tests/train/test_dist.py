"""gluon-bn launch-dist: a dist_sync KVStore on loopback, 1 scheduler, 1 server, 2 workers, each
a process of its own."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from tests.helpers import checkout_env, command

HERE = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.slow


def launch(worker_command, marker):
    env = checkout_env(GLUON_BN_TEST_MARKER=marker)
    return subprocess.Popen(command('launch-dist', '--workers', '2', '--servers', '1', '--',
                                    *worker_command), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


SLEEPER = [sys.executable, '-c',
           "import time, mxnet as mx; kv = mx.kv.create('dist_sync'); time.sleep(300)"]


def processes_with(marker):
    """Processes on this machine whose environment carries the marker."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_workers_hold_identical_parameters_after_every_step():
    marker = uuid.uuid4().hex
    launcher = launch([sys.executable, os.path.join(HERE, 'dist_worker.py')], marker)
    out, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err
    digests = {}
    for rank, step, digest in re.findall(r'rank (\d) step (\d) ([0-9a-f]{64})', out):
        digests.setdefault(int(step), {})[int(rank)] = digest
    assert sorted(digests) == [0, 1, 2]
    for step, by_rank in digests.items():
        assert sorted(by_rank) == [0, 1] and by_rank[0] == by_rank[1], step
    assert digests[0][0] != digests[2][0]   # and they trained
    assert processes_with(marker) == []


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_sigterm_and_sighup_stop_every_process(signum):
    marker = uuid.uuid4().hex
    launcher = launch(SLEEPER, marker)
    deadline = time.time() + 60
    while len(processes_with(marker)) < 5 and time.time() < deadline:   # launcher + 4
        time.sleep(0.2)
    assert len(processes_with(marker)) == 5
    launcher.send_signal(signum)
    launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + signum
    assert processes_with(marker) == []


def role_of(pid):
    with open(f'/proc/{pid}/environ', 'rb') as f:
        variables = dict(item.split(b'=', 1) for item in f.read().split(b'\0') if b'=' in item)
    return variables.get(b'DMLC_ROLE', b'launcher').decode()


@pytest.mark.parametrize('victim', ['worker', 'scheduler', 'server'])
def test_a_process_that_dies_ends_the_whole_run_within_seconds(victim):
    marker = uuid.uuid4().hex
    launcher = launch(SLEEPER, marker)
    deadline = time.time() + 60
    while len(processes_with(marker)) < 5 and time.time() < deadline:   # launcher + 4
        time.sleep(0.2)
    pid = next(p for p in processes_with(marker) if role_of(p) == victim)
    time.sleep(1)   # all connected to the scheduler
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    out, err = launcher.communicate(timeout=60)
    assert time.time() - killed < 10
    assert launcher.returncode == 128 + signal.SIGKILL
    assert re.search(rf"{victim}( \d)? \(pid {pid}\) was killed by SIGKILL; stopping the other "
                     rf"processes", err)
    assert processes_with(marker) == []


def test_a_scheduler_that_cannot_bind_its_port_ends_the_run():
    marker = uuid.uuid4().hex
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        env = checkout_env(GLUON_BN_TEST_MARKER=marker)
        launcher = subprocess.run(command('launch-dist', '--port', taken.getsockname()[1], '--',
                                          *SLEEPER), env=env, capture_output=True, text=True,
                                  timeout=60)
    assert launcher.returncode == 1
    assert 'bind failed' in launcher.stderr
    assert re.search(r"scheduler \(pid \d+\) exited with status 1; stopping", launcher.stderr)
    assert processes_with(marker) == []


@pytest.mark.real_data
def test_the_training_command_runs_as_two_workers(tmp_path):
    marker = uuid.uuid4().hex
    launcher = launch(command('train', '--kvstore', 'dist_sync', '--bn', 'hybrid', '--train-size',
                              '1024', '--epochs', '1', '--ctx', 'cpu', '--out',
                              tmp_path / 'metrics.json'), marker)
    out, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err
    assert out.count('done: bn=hybrid, 1 epochs') == 2
    assert (tmp_path / 'metrics.json').exists()   # written once, by rank 0
    assert processes_with(marker) == []
