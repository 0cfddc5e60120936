"""gluon-bn train as a user runs it: mostly the command line's main() in this process, which is
what the checks need, and a real process where the process itself is the point."""
import errno
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from gluon_bn.utils import files
from tests.helpers import ROOT, SCRIPTS, checkout_env


@pytest.mark.parametrize('args, words', [
    (['--epochs', '0'], ['--epochs', 'must be positive']),
    (['--lr', 'fast'], ['--lr', "expected a positive float, got 'fast'"]),
    (['--bn', 'batch'], ['--bn', "invalid choice: 'batch'"]),
    (['--ctx', 'tpu'], ['--ctx', "'tpu'"]),
    (['--ctx', 'gpu:7'], ['gpu(7) is not available']),
    (['--ctx', 'cpu:0,tpu'], ['--ctx', "'tpu'"]),
    (['--gpus', '0,1'], ['gpu(0) is not available']),
    (['--gpus', '0', '--ctx', 'cpu'], ['not allowed with argument']),
    (['--frobnicate'], ['unrecognized arguments: --frobnicate']),
    (['--resume'], ['--resume needs --checkpoint-dir']),
    (['--checkpoint-dir', ROOT / 'README.md'], ['--checkpoint-dir', 'is a file']),
    (['--checkpoint-dir', ROOT / 'README.md' / 'runs'],
     ['--checkpoint-dir', 'README.md is a file, where a folder would have to be made']),
    (['--checkpoint-dir', '/proc/runs'], ['--checkpoint-dir', 'cannot write in /proc']),
    (['--checkpoint-dir', 'runs', '--kvstore', 'dist_sync'], ['not supported with --kvstore']),
    (['--out', '/no/such/folder/metrics.json'], ['--out', '/no/such/folder']),
    (['--out', '/tmp'], ['--out: /tmp is a folder']),
    (['--out', '/dev/full'], ['--out: /dev/full is not a regular file']),
    (['--plot', '/proc/curves.png'], ['--plot: cannot write in /proc']),
    (['--plot', 'curves.xyz'], ['--plot: matplotlib cannot write .xyz files; use one of', '.png']),
    (['--lr', 'nan'], ['--lr', 'must be a positive number up to 3.4e+38', 'got nan']),
    (['--lr', 'inf'], ['--lr', 'got inf']),
    (['--lr', '1e300'], ['--lr', '(MXNet keeps it as a float32), got 1e300']),
    (['--seed', '-1'], ['--seed', 'must be between 0 and 2**32 - 1, got -1']),
    (['--ctx', 'cpu:0,cpu:0'], ['--ctx', 'cpu(0) listed twice']),
    (['--data-dir', '/no/such/folder'], ['train-images-idx3-ubyte.gz: no such file',
                                         'apt-get install dataset-fashion-mnist']),
])
def test_bad_flags_and_missing_data_end_in_one_line(args, words, cli):
    result = cli('train', *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.slow
def test_a_bad_flag_ends_a_real_process_in_one_line_under_the_name_it_was_called_by():
    for program, name in ((['-m', 'gluon_bn', 'train'], 'gluon-bn train'),
                          ([SCRIPTS / 'train_lenet_bn.py'], 'train_lenet_bn.py')):
        result = subprocess.run([sys.executable, *program, '--epochs', '0'],
                                capture_output=True, text=True, env=checkout_env(), timeout=300)
        assert result.returncode == 2
        assert result.stderr == f"{name}: error: argument --epochs: must be positive, got 0\n"


@pytest.mark.real_data
def test_training_on_two_devices(tmp_path, cli):
    result = cli('train', '--ctx', 'cpu:0,cpu:1', '--train-size', '512', '--epochs', '1',
                 '--seed', '1')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'training on [cpu(0), cpu(1)]'
    assert lines[-1].startswith('done: bn=scratch, 1 epochs on [cpu(0), cpu(1)]')


@pytest.mark.real_data
@pytest.mark.parametrize('bn', ['scratch', 'hybrid'])
def test_the_same_seed_writes_the_same_metrics(tmp_path, bn, cli):
    def train(name, seed):
        path = tmp_path / name
        result = cli('train', '--bn', bn, '--train-size', '1024', '--epochs', '2', '--seed',
                     seed, '--out', path, '--plot', tmp_path / f'{name}.png')
        assert result.returncode == 0, result.stderr
        return path.read_bytes(), result.stdout.splitlines()

    first, lines = train('a.json', 7)
    again, _ = train('b.json', 7)
    other, _ = train('c.json', 8)
    assert first == again and first != other
    assert lines[0] == 'training on cpu(0)' and lines[-1].startswith(f'done: bn={bn}, 2 epochs')
    assert (tmp_path / 'a.json.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.real_data
def test_results_that_cannot_be_written_at_the_end_are_kept_elsewhere(tmp_path, monkeypatch,
                                                                      cli):
    out, plot = tmp_path / 'metrics.json', tmp_path / 'curves.png'
    real_write = files.write_atomically

    def full_disk(path, content):
        if path == str(out):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, content)

    monkeypatch.setattr(files, 'write_atomically', full_disk)
    result = cli('train', '--train-size', '256', '--epochs', '1', '--seed', '3', '--out', out,
                 '--plot', plot, '--no-progress')
    assert result.returncode == 1
    message = result.stderr
    kept = re.search(r"could not write the metrics to \S+ \(No space left on device\); they "
                     r"are in (\S+) instead", message)
    assert kept, message
    saved = json.loads(pathlib.Path(kept.group(1)).read_text())
    assert saved['settings']['epochs'] == 1 and len(saved['epochs']) == 1
    os.unlink(kept.group(1))
    assert not out.exists() and plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'done: bn=scratch, 1 epochs' in result.stdout


@pytest.mark.real_data
def test_precise_bn_tests_with_exact_statistics_and_trains_the_same(tmp_path, cli):
    """The weights never read the running statistics in training, so a seeded run trains the
    same with --precise-bn; only the test accuracy (from exact statistics) differs."""
    def train(*extra):
        out = tmp_path / f"{len(extra)}.json"
        result = cli('train', '--bn', 'hybrid', '--train-size', '2048', '--epochs', '2',
                     '--seed', '5', '--out', out, *extra)
        assert result.returncode == 0, result.stderr
        return json.loads(out.read_text()), result.stdout.splitlines()

    plain, _ = train()
    precise, lines = train('--precise-bn', '4')
    assert precise['settings']['precise_bn'] == 4
    for a, b in zip(plain['epochs'], precise['epochs']):
        assert (a['loss'], a['train_acc']) == (b['loss'], b['train_acc'])
    assert plain['epochs'][0]['test_acc'] == precise['epochs'][0]['test_acc_moving']
    assert precise['epochs'][0]['test_acc'] != precise['epochs'][0]['test_acc_moving']
    said = [line for line in lines if line.startswith('  precise BN: ')]
    assert len(said) == 2 and 'exact statistics over 4 batches' in said[0]
    too_many = cli('train', '--train-size', '512', '--epochs', '1', '--precise-bn', '3')
    assert too_many.returncode == 1
    assert too_many.stderr == ("gluon-bn train: error: --precise-bn 3: an epoch has 2 batches "
                               "of 256; give --precise-bn 2 or less\n")


@pytest.mark.real_data
def test_a_run_resumed_with_precise_bn_writes_its_metrics(tmp_path, cli):
    folder, out = tmp_path / 'ck', tmp_path / 'm.json'
    first = cli('train', '--train-size', '512', '--epochs', '1', '--bn', 'hybrid',
                '--checkpoint-dir', folder)
    assert first.returncode == 0, first.stderr
    resumed = cli('train', '--train-size', '512', '--epochs', '2', '--bn', 'hybrid',
                  '--checkpoint-dir', folder, '--resume', '--precise-bn', '2', '--out', out)
    assert resumed.returncode == 0, resumed.stderr
    epochs = json.loads(out.read_text())['epochs']
    assert 'test_acc_moving' not in epochs[0] and 'test_acc_moving' in epochs[1]
