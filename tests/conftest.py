"""What the test modules share: the real-data marker, and programs run as a user runs them."""
# gluon_bn before mxnet, in every test module: on the GPU build it loads the CUDA libraries.
import gluon_bn  # noqa: F401

import contextlib
import importlib.util
import io
import os
import pathlib
import subprocess
import sys

import pytest

from mxnet import nd

from gluon_bn import data, train

# MXNet's default engine for the whole session, started now: a program's main() called here must
# not switch this process to its own engine settings (gluon_bn.engine).
nd.zeros(1).wait_to_read()

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / 'scripts'
HAS_DATA = data.has_all_files(data.DEBIAN_DIR)


def pytest_runtest_setup(item):
    if item.get_closest_marker('real_data') and not HAS_DATA:
        pytest.skip('Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)')


def checkout_env(**variables):
    """The environment with this checkout's gluon_bn first on the path, whatever is installed,
    and MXNet's threads as in this process (unless the test says otherwise): convolutions with
    another thread count round differently, and runs here are compared bit for bit with runs
    there. So the training script keeps MXNet's own engine too (gluon_bn.engine)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))
    env = dict(os.environ, PYTHONPATH=path)
    env.setdefault('OMP_NUM_THREADS', str(train.mxnet_threads()))
    return dict(env, **variables)


def run_script(name, *args, env=None, timeout=600, **kwargs):
    """scripts/NAME run in a fresh interpreter, as a user runs it; output captured as text."""
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=env or checkout_env(), **kwargs)


def popen_script(name, *args, **kwargs):
    return subprocess.Popen([sys.executable, str(SCRIPTS / name), *map(str, args)],
                            env=checkout_env(), text=True, **kwargs)


def load_script(name):
    """scripts/NAME as a module, to call its main() in this process."""
    spec = importlib.util.spec_from_file_location(pathlib.Path(name).stem, SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Ran:
    """What a script's main() did in this process: exit code, stdout, stderr as a shell shows
    them (sys.exit('message') prints the message to stderr and exits 1)."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def call_main(name, *args):
    """scripts/NAME's main(args) in this process: no interpreter to start, which is most of what
    a short run of a script costs."""
    module = load_script(name)
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            module.main([str(arg) for arg in args])
        except SystemExit as exit:
            code = exit.code
            if isinstance(code, str):
                err.write(code + '\n')
                code = 1
            code = code or 0
    return Ran(code, out.getvalue(), err.getvalue())
