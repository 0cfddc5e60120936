"""SIGTERM (timeout, kill, a CI cancelling a job), SIGHUP (a closed terminal) and Ctrl-C stop every
long-running program the same way: its children stop, what was done is kept (the table and the
report, the checkpoint, the finished runs), no temporary file stays, and one line says so, with
the exit status a shell gives a process the signal killed (128 + its number), never a
traceback."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.book.test_run_chapter import markdown
from tests.helpers import HAS_DATA, checkout_env, popen_gluon_bn

SIGNALS = [signal.SIGTERM, signal.SIGHUP]
pytestmark = pytest.mark.slow


def wait_for(process, text, timeout=300):
    """Read the process's stdout until a line holding `text`; the lines read."""
    lines, deadline = [], time.time() + timeout
    for line in process.stdout:
        lines.append(line)
        if text in line or time.time() > deadline:
            break
    return lines


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize('signum', SIGNALS + [signal.SIGINT])
def test_run_chapter_keeps_the_first_chapters_result_and_leaves_nothing(tmp_path, signum):
    first, second = tmp_path / 'a.md', tmp_path / 'b.md'
    first.write_text(markdown(["print('test acc 0.500')"]))
    second.write_text(markdown(["import os, time\nprint('kernel', os.getpid(), flush=True)\n"
                                "time.sleep(120)"]))
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    report = tmp_path / 'report.json'
    run = popen_gluon_bn('run-chapter', first, second, '--report', report,
                         env=checkout_env(TMPDIR=str(scratch)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    kernel = int(wait_for(run, 'kernel ')[-1].split()[1])
    run.send_signal(signum)
    stdout, stderr = run.communicate(timeout=60)
    name = signal.Signals(signum).name
    assert run.returncode == 128 + signum, stderr
    assert 'Traceback' not in stderr and f'stopped by {name}' in stderr
    assert re.search(rf'\na.md +passed .*\nb.md +failed at cell 1: stopped by {name} ', stdout)
    results = json.loads(report.read_text())['results']
    assert [r['passed'] for r in results] == [True, False] and results[0]['accuracy'] == 0.5
    assert not alive(kernel) and os.listdir(scratch) == []


@pytest.mark.real_data
@pytest.mark.skipif(not HAS_DATA, reason='needs Fashion-MNIST')
@pytest.mark.parametrize('signum', SIGNALS + [signal.SIGINT])
def test_training_says_in_one_line_which_epochs_its_checkpoint_keeps(tmp_path, signum):
    folder = tmp_path / 'run'
    run = popen_gluon_bn('train', '--bn', 'hybrid', '--epochs', 50, '--train-size', 1024,
                         '--checkpoint-dir', folder, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    wait_for(run, 'epoch 2,')
    run.send_signal(signum)
    stdout, stderr = run.communicate(timeout=60)
    name = signal.Signals(signum).name
    assert run.returncode == 128 + signum and 'Traceback' not in stderr, stderr
    line, = stderr.strip().splitlines()
    assert line.startswith(f'gluon-bn train: stopped by {name}; ')
    assert f'of 50 epochs are in the checkpoint in {folder}: the same command with --resume' in line
    kept = [f for f in os.listdir(folder) if not f.startswith('.')]   # .lock: the folder's
    assert kept and not [f for f in os.listdir(folder) if f.endswith('.tmp')]


@pytest.mark.real_data
@pytest.mark.skipif(not HAS_DATA, reason='needs Fashion-MNIST')
@pytest.mark.parametrize('signum', SIGNALS)
def test_exercises_keep_the_finished_runs_and_say_so(tmp_path, signum):
    out = tmp_path / 'ex'
    run = popen_gluon_bn('exercises', '--out', out, '--epochs', 1, '--train-size', 512, '2',
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    seen = wait_for(run, ' s\n')   # the first finished run, announced once it is saved
    run.send_signal(signum)
    stdout, stderr = run.communicate(timeout=120)
    stdout = ''.join(seen) + stdout
    assert run.returncode == 128 + signum and 'Traceback' not in stderr, stderr
    assert 'finished run(s) are kept in' in stderr.strip().splitlines()[-1]
    saved = json.loads((out / 'runs.json').read_text())
    announced = [line.split(':')[0].strip() for line in stdout.splitlines()
                 if line.endswith(' s') and line.startswith('  ')]
    assert announced and set(announced) <= set(saved['runs'])
    assert not [f for f in os.listdir(out) if f.endswith('.tmp')]


def test_a_launcher_whose_program_cannot_run_says_so_and_starts_nothing(tmp_path, cli):
    for program, words in ((str(tmp_path / 'no-such-program'), 'no such program'),
                           (str(tmp_path), 'is a folder, not a program')):
        ran = cli('launch-dist', '--', program)
        assert ran.returncode == 1 and words in ran.stderr and 'Traceback' not in ran.stderr
        assert len(ran.stderr.splitlines()) == 1


def test_dist_sync_without_the_launcher_says_how_to_run_it(cli, monkeypatch):
    for name in ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_NUM_WORKER'):
        monkeypatch.delenv(name, raising=False)
    ran = cli('train', '--kvstore', 'dist_sync', '--epochs', 1)
    assert ran.returncode == 1 and 'Traceback' not in ran.stderr
    assert 'gluon-bn launch-dist -- gluon-bn train --kvstore dist_sync' in ran.stderr
    assert 'DMLC_NUM_WORKER' in ran.stderr and len(ran.stderr.splitlines()) == 1

