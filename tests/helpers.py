"""What the test modules share: paths, the real-data check, and gluon_bn's command line run in a
fresh interpreter, as a user runs it, with this checkout's gluon_bn."""
import os
import pathlib
import subprocess
import sys

from gluon_bn.train import data, engine

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / 'scripts'
SHARED = ROOT.parent / 'shared'
HAS_DATA = data.has_all_files(data.DEBIAN_DIR)


def checkout_env(**variables):
    """The environment with this checkout's gluon_bn first on the path, whatever is installed,
    and MXNet's threads as in this process (unless the test says otherwise): convolutions with
    another thread count round differently, and runs here are compared bit for bit with runs
    there. So the training command keeps MXNet's own engine too (gluon_bn.train.engine)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))
    env = dict(os.environ, PYTHONPATH=path)
    env.setdefault('OMP_NUM_THREADS', str(engine.mxnet_threads()))
    return dict(env, **variables)


def without_engine_settings(**variables):
    """This checkout's environment with none of the engine and thread settings a user may have
    (gluon_bn.train.engine.USER_SETTINGS), so that gluon_bn chooses them, but for those given;
    and a quiet machine assumed (engine.LOAD_VARIABLE 0) unless given, so that what the choice
    depends on is what the test says, not what else the machine runs."""
    return {**{name: value for name, value in checkout_env().items()
               if name not in engine.USER_SETTINGS}, engine.LOAD_VARIABLE: '0', **variables}


def command(*args):
    """`gluon-bn ARGS` as a command line: python -m gluon_bn."""
    return [sys.executable, '-m', 'gluon_bn', *map(str, args)]


def gluon_bn(*args, env=None, timeout=600, **kwargs):
    """`gluon-bn ARGS` in a fresh interpreter; output captured as text."""
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout,
                          env=env or checkout_env(), **kwargs)


def popen_gluon_bn(*args, env=None, **kwargs):
    return subprocess.Popen(command(*args), env=env or checkout_env(), text=True, **kwargs)


class Ran:
    """What a command did: exit status, and what it printed to stdout and stderr."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def blocks(net):
    """Every block of a network, parents first."""
    yield net
    for child in net._children.values():
        yield from blocks(child)
