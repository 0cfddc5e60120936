"""Checkpoints: a run killed mid-epoch and resumed ends exactly as an uninterrupted one; a crash
while writing, a damaged file or another run's checkpoint never costs what was saved."""
import contextlib
import errno
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon
from mxnet.gluon import nn

from gluon_bn.train import checkpoint
from gluon_bn.utils import files
from tests.helpers import popen_gluon_bn

RUN = ['--train-size', '8192', '--epochs', '3', '--seed', '11']


def params_of(path):
    return checkpoint.read(path).arrays


def wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize('bn, ctx', [('scratch', 'cpu'),
                                     ('hybrid', 'cpu:0,cpu:1')])   # per-device statistics
def test_a_run_killed_mid_epoch_resumes_to_the_same_end(tmp_path, bn, ctx, cli):
    """The run being killed is a process of its own; the others run in this one."""
    whole, cut = tmp_path / 'whole', tmp_path / 'cut'
    result = cli('train', '--bn', bn, '--ctx', ctx, *RUN, '--checkpoint-dir', str(whole), '--out',
                 str(tmp_path / 'whole.json'))
    assert result.returncode == 0, result.stderr

    args = ['--bn', bn, '--ctx', ctx, *RUN, '--checkpoint-dir', str(cut), '--out',
            str(tmp_path / 'cut.json')]
    process = popen_gluon_bn('train', *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(cut / 'epoch-0001.ckpt', process)
    time.sleep(0.1)   # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert checkpoint.latest(str(cut)) == str(cut / 'epoch-0001.ckpt')   # died in epoch 2

    result = cli('train', *args, '--resume')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"resuming from {cut / 'epoch-0001.ckpt'}: 1 of 3 epochs done"
    assert lines[2].startswith('epoch 2, loss') and lines[3].startswith('epoch 3, loss')
    assert (tmp_path / 'cut.json').read_bytes() == (tmp_path / 'whole.json').read_bytes()
    ours, theirs = params_of(cut / 'epoch-0003.ckpt'), params_of(whole / 'epoch-0003.ckpt')
    assert ours.keys() == theirs.keys()
    assert any('running_mean' in k or 'moving_mean' in k for k in ours)
    for key in ours:
        assert np.array_equal(ours[key], theirs[key]), key


def checkpoints_in(folder):
    """The files in a checkpoint folder but its lock file."""
    return sorted(name for name in os.listdir(folder) if name != '.lock')


def small_run(cli, tmp_path, epochs=1):
    folder = tmp_path / 'run'
    result = cli('train', '--train-size', '512', '--epochs', str(epochs), '--seed', '2',
                 '--checkpoint-dir', str(folder))
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.real_data
def test_a_damaged_checkpoint_is_reported_and_kept(tmp_path, cli):
    folder = small_run(cli, tmp_path)
    path = folder / 'epoch-0001.ckpt'
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF   # one flipped byte inside the parameters
    path.write_bytes(bytes(damaged))
    result = cli('train', '--train-size', '512', '--epochs', '2', '--checkpoint-dir', str(folder),
                 '--resume')
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"gluon-bn train: error: {path} is not a readable checkpoint (Bad CRC-32 for file "
        f"'params.npz'). It was left as it is: move it away to resume from the epoch before, "
        f"or train afresh in another folder"]
    assert path.read_bytes() == bytes(damaged) and checkpoints_in(folder) == ['epoch-0001.ckpt']


@pytest.mark.real_data
def test_another_runs_checkpoint_is_refused_and_kept(tmp_path, cli):
    folder = small_run(cli, tmp_path)
    before = (folder / 'epoch-0001.ckpt').read_bytes()
    result = cli('train', '--bn', 'hybrid', '--train-size', '512', '--epochs', '2',
                 '--checkpoint-dir', str(folder), '--resume')
    assert result.returncode == 1
    message = result.stderr.strip()
    assert 'belongs to a different run: --bn hybrid here, scratch in the checkpoint' in message
    result = cli('train', '--train-size', '512', '--epochs', '2', '--checkpoint-dir', str(folder))
    assert result.returncode == 1 and '--resume' in result.stderr   # no silent fresh start
    assert (folder / 'epoch-0001.ckpt').read_bytes() == before
    assert checkpoints_in(folder) == ['epoch-0001.ckpt']


@pytest.mark.real_data
def test_resume_with_nothing_saved_yet_starts_and_seeds_the_run(tmp_path, cli):
    result = cli('train', '--train-size', '512', '--epochs', '1', '--checkpoint-dir',
                 str(tmp_path / 'new'), '--resume')
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"no checkpoint in {tmp_path / 'new'} yet: training from "
                                    f"epoch 1")
    meta = checkpoint.read(tmp_path / 'new' / 'epoch-0001.ckpt').meta
    assert isinstance(meta['settings']['seed'], int)   # drawn, so that a resume can follow it


def tiny_net(units):
    net = nn.HybridSequential()
    net.add(nn.Dense(units, in_units=4), nn.BatchNorm(in_channels=units))
    net.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    return net, gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})


SETTINGS = {'bn': 'gluon', 'lr': 0.1, 'seed': 1}


def test_different_shapes_are_named(tmp_path):
    net, trainer = tiny_net(3)
    path = checkpoint.save(str(tmp_path), 1, net, trainer, SETTINGS, [])
    other, other_trainer = tiny_net(5)
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"parameter 0.bias: \(5,\) float32 here, \(3,\) float32 in the "
                             r"checkpoint; parameter 0.weight: \(5, 4\) float32 here, \(3, 4\)"):
        checkpoint.restore(checkpoint.read(path), other, other_trainer, SETTINGS)


def test_per_device_statistics_and_random_states_come_back(tmp_path):
    net, trainer = tiny_net(3)
    bn = net[1]
    bn.running_mean.data(mx.cpu(1))[:] = 7   # devices keep their own running statistics
    np.random.seed(5)
    path = checkpoint.save(str(tmp_path), 1, net, trainer, SETTINGS, [{'epoch': 1}])
    expected = np.random.rand(3)
    fresh, fresh_trainer = tiny_net(3)
    np.random.seed(6)
    assert checkpoint.restore(checkpoint.read(path), fresh, fresh_trainer, SETTINGS) == \
        (1, [{'epoch': 1}])
    assert np.array_equal(np.random.rand(3), expected)
    assert fresh[1].running_mean.data(mx.cpu(0)).asnumpy().tolist() == [0, 0, 0]
    assert fresh[1].running_mean.data(mx.cpu(1)).asnumpy().tolist() == [7, 7, 7]
    assert np.array_equal(fresh[0].weight.data(mx.cpu(1)).asnumpy(),
                          net[0].weight.data(mx.cpu(1)).asnumpy())


def fail_when_flushing(monkeypatch, error):
    """The disk fails (or the process is stopped) while the new file is flushed to disk."""
    def fsync(fd):
        raise error
    monkeypatch.setattr(files.os, 'fsync', fsync)


def test_a_crash_while_writing_leaves_the_last_checkpoint_whole(tmp_path, monkeypatch):
    net, trainer = tiny_net(3)
    first = checkpoint.save(str(tmp_path), 1, net, trainer, SETTINGS, [])
    before = open(first, 'rb').read()
    fail_when_flushing(monkeypatch, KeyboardInterrupt())   # as Ctrl-C would, mid-write
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(str(tmp_path), 2, net, trainer, SETTINGS, [])
    monkeypatch.undo()
    assert checkpoint.latest(str(tmp_path)) == first
    assert open(first, 'rb').read() == before
    assert sorted(os.listdir(tmp_path)) == ['epoch-0001.ckpt']   # no half file
    # A SIGKILL leaves the temporary file; the next run that takes the folder removes it.
    (tmp_path / '.epoch-0002.ckpt.0123abcd.tmp').write_bytes(b'PK half')
    with contextlib.ExitStack() as held:
        saved, seed = checkpoint.start_or_resume(str(tmp_path), True, 3, 1, held)
        assert saved.path == first and seed == 1
        assert sorted(os.listdir(tmp_path)) == ['.lock', 'epoch-0001.ckpt']


def test_a_full_disk_while_saving_is_reported_and_leaves_no_half_file(tmp_path, monkeypatch):
    net, trainer = tiny_net(3)
    first = checkpoint.save(str(tmp_path), 1, net, trainer, SETTINGS, [])
    fail_when_flushing(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"could not save .*epoch-0002.ckpt \(No space left on device\); "
                             r"the checkpoints before it are whole"):
        checkpoint.save(str(tmp_path), 2, net, trainer, SETTINGS, [])
    assert sorted(os.listdir(tmp_path)) == ['epoch-0001.ckpt']
    assert checkpoint.latest(str(tmp_path)) == first


@pytest.mark.slow
def test_a_folder_is_held_by_one_run_and_freed_when_its_process_dies(tmp_path):
    folder = str(tmp_path)
    holder = subprocess.Popen([sys.executable, '-c',
                               f"from gluon_bn.train import checkpoint; "
                               f"checkpoint.FolderLock({folder!r}).acquire(); "
                               f"print('held', flush=True); import time; time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == 'held\n'
    with pytest.raises(checkpoint.CheckpointError,
                       match=rf"{folder} is in use by another run \(pid {holder.pid}\): wait"):
        checkpoint.FolderLock(folder).acquire()
    holder.kill()   # a crash: the system releases the lock
    holder.wait()
    with checkpoint.FolderLock(folder):
        with pytest.raises(checkpoint.CheckpointError, match='in use by another run'):
            checkpoint.FolderLock(folder).acquire()
    checkpoint.FolderLock(folder).acquire().release()


@pytest.mark.slow
@pytest.mark.real_data
def test_a_second_run_on_the_same_folder_stops_at_once(tmp_path, cli):
    folder = tmp_path / 'run'
    first = popen_gluon_bn('train', '--train-size', '8192', '--epochs', '3', '--checkpoint-dir',
                           folder, '--no-progress', stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    wait_for(folder / '.lock', first)
    time.sleep(0.5)
    second = cli('train', '--bn', 'hybrid', '--train-size', '512', '--epochs', '1',
                 '--checkpoint-dir', str(folder), '--resume')
    assert second.returncode == 1
    assert second.stderr.strip() == (f"gluon-bn train: error: {folder} is in use by another "
                                     f"run (pid {first.pid}): wait for it to end, or choose "
                                     f"another folder")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert checkpoints_in(folder) == ['epoch-0001.ckpt', 'epoch-0002.ckpt', 'epoch-0003.ckpt']
    assert checkpoint.read(folder / 'epoch-0003.ckpt').meta['settings']['bn'] == 'scratch'


@pytest.mark.real_data
def test_resuming_with_fewer_epochs_than_done_is_refused(tmp_path, cli):
    folder = small_run(cli, tmp_path, epochs=2)
    result = cli('train', '--train-size', '512', '--epochs', '1', '--checkpoint-dir', str(folder),
                 '--resume', '--out', str(tmp_path / 'metrics.json'))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"gluon-bn train: error: --epochs 1, but "
                                     f"{folder / 'epoch-0002.ckpt'} has 2 epochs done: pass "
                                     f"--epochs 2 or more")
    assert not (tmp_path / 'metrics.json').exists()


def test_the_seed_of_an_epoch_depends_on_run_and_epoch():
    seeds = {checkpoint.epoch_seed(seed, epoch) for seed in range(3) for epoch in range(3)}
    assert len(seeds) == 9 and checkpoint.epoch_seed(1, 2) == checkpoint.epoch_seed(1, 2)


def rewrite(path, meta=None, drop_array=None):
    """The checkpoint at `path` rewritten whole (valid zip, valid checksums) with meta.json
    changed by `meta(m)`, or without the array `drop_array`: damage no checksum sees."""
    import io
    import json
    import zipfile

    import numpy as np
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    if meta:
        parts['meta.json'] = json.dumps(meta(json.loads(parts['meta.json']))).encode()
    if drop_array:
        with np.load(io.BytesIO(parts['params.npz'])) as npz:
            arrays = {k: npz[k] for k in npz.files if k != drop_array}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        parts['params.npz'] = buffer.getvalue()
    with zipfile.ZipFile(path, 'w') as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


@pytest.mark.parametrize('how, words', [
    (dict(meta=lambda m: {k: v for k, v in m.items() if k != 'history'}),
     "meta.json has no 'history' (list)"),
    (dict(meta=lambda m: dict(m, random={})), "meta.json lacks the random states"),
    (dict(drop_array='0.weight@0'), "params.npz has no array for 0.weight on device 0"),
    (dict(meta=lambda m: dict(m, params=dict(m['params'], **{'0.bias': [[7], 'float32']}))),
     "params.npz holds 0.bias on device 0 with shape (3,), meta.json says (7,)"),
])
def test_a_checkpoint_damaged_where_checksums_cannot_see_is_named(tmp_path, how, words):
    net, trainer = tiny_net(3)
    path = checkpoint.save(str(tmp_path), 1, net, trainer, SETTINGS, [])
    rewrite(path, **how)
    with pytest.raises(checkpoint.CheckpointError) as raised:
        checkpoint.read(path)
    assert f"{path} is damaged: {words}" in str(raised.value)
    assert 'move it away to resume from the epoch before' in str(raised.value)
