"""scripts/train_lenet_bn.py as a user runs it."""
import os
import subprocess
import sys

import pytest

from gluon_bn import data

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, 'scripts', 'train_lenet_bn.py')
real_data = pytest.mark.skipif(
    not os.path.isfile(os.path.join(data.DEBIAN_DIR, 't10k-images-idx3-ubyte.gz')),
    reason='Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)')


def cli(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


@pytest.mark.parametrize('args, words', [
    (['--epochs', '0'], ['--epochs', 'must be positive']),
    (['--lr', 'fast'], ['--lr', "invalid", "'fast'"]),
    (['--bn', 'batch'], ['--bn', "invalid choice: 'batch'"]),
    (['--ctx', 'tpu'], ['--ctx', "'tpu'"]),
    (['--ctx', 'gpu:7'], ['gpu(7) is not available']),
    (['--ctx', 'cpu:0,tpu'], ['--ctx', "'tpu'"]),
    (['--gpus', '0,1'], ['gpu(0) is not available']),
    (['--gpus', '0', '--ctx', 'cpu'], ['not allowed with argument']),
    (['--frobnicate'], ['unrecognized arguments: --frobnicate']),
    (['--resume'], ['--resume needs --checkpoint-dir']),
    (['--checkpoint-dir', SCRIPT], ['--checkpoint-dir', 'is a file']),
    (['--checkpoint-dir', 'runs', '--kvstore', 'dist_sync'], ['not supported with --kvstore']),
    (['--out', '/no/such/folder/metrics.json'], ['--out', '/no/such/folder']),
    (['--data-dir', '/no/such/folder'], ['train-images-idx3-ubyte.gz: no such file',
                                         'apt-get install dataset-fashion-mnist']),
])
def test_bad_flags_and_missing_data_end_in_one_line(args, words):
    result = cli(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]


@real_data
def test_training_on_two_devices(tmp_path):
    result = cli('--ctx', 'cpu:0,cpu:1', '--train-size', '512', '--epochs', '1', '--seed', '1')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'training on [cpu(0), cpu(1)]'
    assert lines[-1].startswith('done: bn=scratch, 1 epochs on [cpu(0), cpu(1)]')


@real_data
@pytest.mark.parametrize('bn', ['scratch', 'hybrid'])
def test_the_same_seed_writes_the_same_metrics(tmp_path, bn):
    def train(name, seed):
        path = tmp_path / name
        result = cli('--bn', bn, '--train-size', '1024', '--epochs', '2', '--seed', str(seed),
                     '--out', str(path), '--plot', str(tmp_path / f'{name}.png'))
        assert result.returncode == 0, result.stderr
        return path.read_bytes(), result.stdout.splitlines()

    first, lines = train('a.json', 7)
    again, _ = train('b.json', 7)
    other, _ = train('c.json', 8)
    assert first == again and first != other
    assert lines[0] == 'training on cpu(0)' and lines[-1].startswith(f'done: bn={bn}, 2 epochs')
    assert (tmp_path / 'a.json.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
