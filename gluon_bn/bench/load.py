"""BN-LeNet epochs on a quiet machine and beside one busy process, for three engine settings:
what `gluon-bn train` chooses now (it measures the load first), the synchronous engine it chose
before whatever the load, and MXNet's own defaults.

Each setting trains in a process of its own (an engine is chosen once per process), `--bn
hybrid`, on a cut training set; settings take turns, and each time is the median of the
epochs after the first. The busy process is `python3 -c "while True: pass"`, the case of a
laptop, a shared server or a CI machine doing something else.
"""
import os
import re
import statistics
import subprocess
import sys
import time

from ..train import engine
from ..utils.errors import Error

SETTINGS = {
    'gluon_bn now': {},
    'synchronous always (before)': {engine.LOAD_VARIABLE: '0'},
    "MXNet's defaults": {'MXNET_ENGINE_TYPE': 'ThreadedEnginePerDevice'},   # MXNET below
}
MXNET = "MXNet's defaults"
EPOCH = re.compile(r'^epoch \d+, .* time ([0-9.]+) sec', re.M)


def epoch_times(env, epochs, train_size, data_dir):
    command = [sys.executable, '-m', 'gluon_bn', 'train', '--bn', 'hybrid', '--epochs',
               str(epochs), '--train-size', str(train_size)]
    if data_dir:
        command += ['--data-dir', data_dir]
    clean = {k: v for k, v in os.environ.items()
             if k not in engine.USER_SETTINGS + (engine.LOAD_VARIABLE,)}
    ran = subprocess.run(command, env=dict(clean, **env), capture_output=True, text=True)
    if ran.returncode != 0:
        raise Error(f"{' '.join(command)} failed: {ran.stderr.strip()[-500:]}")
    return [float(t) for t in EPOCH.findall(ran.stdout)]


def bench(epochs=4, train_size=60000, rounds=1, data_dir=None):
    """Print the table: seconds an epoch (median of epochs 2..N) per setting, quiet and busy,
    and each against MXNet's defaults under the same load."""
    times = {}
    for load in ('quiet', 'one busy process'):
        busy = None
        if load != 'quiet':
            busy = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
            time.sleep(1)
        try:
            for _ in range(rounds):
                for name, env in SETTINGS.items():
                    times.setdefault((load, name), []).extend(
                        epoch_times(env, epochs, train_size, data_dir)[1:])
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    print(f"BN-LeNet (--bn hybrid), {train_size} images, {engine.processors()} processor(s): "
          f"seconds an epoch (median of epochs 2-{epochs}) and against MXNet's defaults")
    print(f"{'setting':30s} {'quiet':>7s} {'ratio':>6s} {'busy':>7s} {'ratio':>6s}")
    median = {key: statistics.median(value) for key, value in times.items()}
    for name in SETTINGS:
        cells = []
        for load in ('quiet', 'one busy process'):
            seconds, mxnet = median[load, name], median[load, MXNET]
            cells += [f"{seconds:7.2f}", f"{seconds / mxnet:6.2f}"]
        print(f"{name:30s} {' '.join(cells)}")
    return median
