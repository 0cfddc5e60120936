"""Checkpoints of a training run: everything needed to continue it exactly, one file per epoch.

`DIR/epoch-0003.ckpt` is a zip archive holding
- meta.json: the epoch, the run's settings, the history so far, Python's and NumPy's random
  states, and each parameter's shape and dtype;
- params.npz: every parameter on every device, the BN running statistics included (they may
  differ between devices);
- trainer.states: the Trainer's optimizer states (Trainer.save_states).
It is written whole or not at all (gluon_bn.utils.files.write_atomically), so a crash leaves the
checkpoints before it as they were. The zip's checksums catch a file damaged later.

MXNet cannot read back its generator's state, so runs that checkpoint reseed it at the start of
every epoch from (seed, epoch) (`epoch_seed`): the state an epoch starts from is then a function
of what the checkpoint holds.
"""
import fcntl
import io
import json
import os
import random
import re
import secrets
import tempfile
import zipfile
from typing import NamedTuple

import mxnet as mx
import numpy as np
from mxnet import nd

from ..utils import files
from ..utils.errors import Error

FORMAT = 1
PATTERN = re.compile(r'epoch-(\d{4,})\.ckpt$')


class CheckpointError(Error, ValueError):
    """A checkpoint that cannot be read, or that belongs to a different run."""


class Saved(NamedTuple):
    """A checkpoint as read, every byte checked."""
    path: str
    meta: dict
    arrays: dict           # '{parameter}@{device index}' -> NumPy array
    trainer_states: bytes


class FolderLock:
    """A run's exclusive hold on its checkpoint folder: an OS lock (flock) on DIR/.lock, which
    the system releases when the process ends, however it ends, so no stale lock survives a
    crash. A second run on the same folder stops at once instead of overwriting the first's
    checkpoints."""

    def __init__(self, folder):
        self.folder, self._fd = folder, None

    def acquire(self):
        fd = os.open(os.path.join(self.folder, '.lock'), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors='replace').strip() or 'unknown'
            os.close(fd)
            raise CheckpointError(f"{self.folder} is in use by another run (pid {holder}): wait "
                                  f"for it to end, or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        _held.append(self)   # held until release() or the end of the process
        return self

    def release(self):
        if self._fd is not None:
            os.close(self._fd)   # closing the descriptor releases the lock
            self._fd = None
            _held.remove(self)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


_held = []


def path_for(folder, epoch):
    return os.path.join(folder, f'epoch-{epoch:04d}.ckpt')


def latest(folder):
    """The checkpoint of the last epoch in folder, or None."""
    epochs = [int(m.group(1)) for m in map(PATTERN.match, os.listdir(folder)) if m]
    return path_for(folder, max(epochs)) if epochs else None


def epoch_seed(seed, epoch):
    """The seed of MXNet's generator for an epoch (0-based) of a run seeded with `seed`."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def parameters(net):
    """Structural name ('0.weight', '1.gamma', ...) -> Parameter: stable across processes,
    unlike Gluon's prefixed names."""
    return net._collect_params_with_prefix()


def device_count(params):
    return len(next(iter(params.values())).list_ctx())


def save(folder, epoch, net, trainer, settings, history):
    """Write DIR/epoch-NNNN.ckpt atomically; returns its path."""
    # Running statistics updated in place by a graph with static memory can be read before the
    # update lands (MXNet 1.9): everything pending finishes first.
    nd.waitall()
    params = parameters(net)
    arrays = {f'{name}@{i}': data.asnumpy()
              for name, param in params.items() for i, data in enumerate(param.list_data())}
    meta = dict(format=FORMAT, epoch=epoch, settings=settings, history=history,
                devices=device_count(params),
                params={name: [list(p.shape), np.dtype(p.dtype).name]
                        for name, p in params.items()},
                random=dict(python=random.getstate(),
                            numpy=[x.tolist() if isinstance(x, np.ndarray) else x
                                   for x in np.random.get_state()]))
    params_npz = io.BytesIO()
    np.savez(params_npz, **arrays)
    with tempfile.TemporaryDirectory() as scratch:
        states = os.path.join(scratch, 'trainer.states')
        trainer.save_states(states)
        with open(states, 'rb') as f:
            trainer_states = f.read()
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, 'w') as archive:
        archive.writestr('meta.json', json.dumps(meta))
        archive.writestr('params.npz', params_npz.getvalue())
        archive.writestr('trainer.states', trainer_states)
    path = path_for(folder, epoch)
    try:
        files.write_atomically(path, archive_bytes.getvalue())
    except OSError as error:   # a full disk, say: no half file is left behind
        raise CheckpointError(f"could not save {path} ({error.strerror or error}); the "
                              f"checkpoints before it are whole") from None
    return path


def read(path):
    """The checkpoint at path, as Saved; CheckpointError if it is not a whole checkpoint of
    this format."""
    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read('meta.json'))
            with np.load(io.BytesIO(archive.read('params.npz'))) as npz:
                arrays = {name: npz[name] for name in npz.files}
            trainer_states = archive.read('trainer.states')
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint ({error}). It was left as "
                              f"it is: move it away to resume from the epoch before, or train "
                              f"afresh in another folder") from None
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        found = meta.get('format') if isinstance(meta, dict) else None
        raise CheckpointError(f"{path} has format {found!r}, this gluon_bn reads "
                              f"format {FORMAT}")
    problem = damage(meta, arrays)
    if problem:
        raise CheckpointError(f"{path} is damaged: {problem}. It was left as it is: move it "
                              f"away to resume from the epoch before, or train afresh in another "
                              f"folder")
    return Saved(str(path), meta, arrays, trainer_states)


def damage(meta, arrays):
    """What is missing or misshapen in a checkpoint whose zip and checksum are whole (a file
    edited or written by another program), or None."""
    kinds = {'epoch': int, 'history': list, 'settings': dict, 'devices': int, 'params': dict,
             'random': dict}
    for key, kind in kinds.items():
        if not isinstance(meta.get(key), kind):
            return f"meta.json has no {key!r} ({kind.__name__})"
    if not all(key in meta['random'] for key in ('python', 'numpy')):
        return "meta.json lacks the random states"
    for name, (shape, dtype) in meta['params'].items():
        for device in range(meta['devices']):
            array = arrays.get(f'{name}@{device}')
            if array is None:
                return f"params.npz has no array for {name} on device {device}"
            if list(array.shape) != list(shape):
                return (f"params.npz holds {name} on device {device} with shape "
                        f"{tuple(array.shape)}, meta.json says {tuple(shape)}")
    return None


def seed_everything(seed):
    """Python's, NumPy's and MXNet's generators, from one seed."""
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def start_or_resume(folder, resume, epochs, seed=None, held=None):
    """The checkpoint a run in `folder` continues from (None: it starts), and its seed.

    The folder is created if missing and locked for as long as `held` (an ExitStack) lasts, or
    until the process ends. A folder that holds checkpoints is only continued, with
    `resume=True`, and not with fewer `epochs` than are done already. A run that checkpoints is
    always seeded, so that it can be resumed exactly: by `seed`, else by the checkpoint's, else
    by a drawn one. CheckpointError says what is wrong.
    """
    os.makedirs(folder, exist_ok=True)
    lock = FolderLock(folder)
    if held is not None:
        held.enter_context(lock)
    else:
        lock.acquire()
    files.remove_leftovers(folder)   # of a run killed while it saved: the folder is ours now
    path = latest(folder)
    if path is None:
        return None, secrets.randbelow(2 ** 31) if seed is None else seed
    if not resume:
        raise CheckpointError(f"{folder} holds the checkpoints of a run (the last: {path}): "
                              f"pass --resume to continue it, or choose another folder")
    saved = read(path)
    if saved.meta['epoch'] > epochs:
        raise CheckpointError(f"--epochs {epochs}, but {path} has {saved.meta['epoch']} epochs "
                              f"done: pass --epochs {saved.meta['epoch']} or more")
    return saved, saved.meta['settings']['seed'] if seed is None else seed


def check_compatible(saved, net, settings):
    """CheckpointError naming every setting and parameter in which the run and checkpoint differ."""
    meta = saved.meta
    problems = [f"--{key.replace('_', '-')} {settings[key]} here, {meta['settings'].get(key)} "
                f"in the checkpoint" for key in settings
                if settings[key] != meta['settings'].get(key)]
    params = parameters(net)
    devices = device_count(params)
    if devices != meta['devices']:
        problems.append(f"{devices} devices here, {meta['devices']} in the checkpoint")
    theirs, differences = meta['params'], []
    for name in sorted(set(params) | set(theirs)):
        if name not in theirs or name not in params:
            where = 'here' if name in params else 'in the checkpoint'
            differences.append(f"parameter {name} only {where}")
            continue
        here = [list(params[name].shape), np.dtype(params[name].dtype).name]
        if here != theirs[name]:
            differences.append(f"parameter {name}: {tuple(here[0])} {here[1]} here, "
                               f"{tuple(theirs[name][0])} {theirs[name][1]} in the checkpoint")
    problems += differences[:3]
    if len(differences) > 3:
        problems.append(f"{len(differences) - 3} more parameters differ")
    if problems:
        raise CheckpointError(f"{saved.path} belongs to a different run: " + '; '.join(problems)
                              + ". Resume with the checkpoint's settings, or train afresh in "
                                "another folder")


def restore(saved, net, trainer, settings):
    """Load a checkpoint (as `read` returns it) into an initialized net (shapes known) and its
    trainer, and restore the random states. Checks everything before changing anything.
    Returns (epoch, history)."""
    check_compatible(saved, net, settings)
    meta, arrays = saved.meta, saved.arrays

    def put_parameters():
        for name, param in parameters(net).items():
            for i, data in enumerate(param.list_data()):
                data[:] = nd.array(arrays[f'{name}@{i}'], dtype=data.dtype, ctx=data.context)

    # With several devices, load_states first starts the Trainer's kvstore, which takes the
    # weights it updates from device 0 and copies every parameter from there to all devices:
    # the weights must be in place before, and the per-device statistics written again after.
    put_parameters()
    with tempfile.TemporaryDirectory() as scratch:
        states = os.path.join(scratch, 'trainer.states')
        with open(states, 'wb') as f:
            f.write(saved.trainer_states)
        trainer.load_states(states)
    put_parameters()
    version, state, gauss = meta['random']['python']
    random.setstate((version, tuple(state), gauss))
    kind, keys, position, has_gauss, cached = meta['random']['numpy']
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    return meta['epoch'], meta['history']
