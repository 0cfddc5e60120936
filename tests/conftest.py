"""Markers and fixtures every test module shares."""
# gluon_bn before mxnet, in every test module: on the GPU build it loads the CUDA libraries.
import gluon_bn  # noqa: F401

import os

import pytest
from mxnet import nd

from gluon_bn.cli import main
from gluon_bn.train import engine
from tests.helpers import HAS_DATA, Ran

# MXNet's default engine for the whole session, started now: a command's main() called here must
# not switch this process to its own engine settings (gluon_bn.train.engine).
nd.zeros(1).wait_to_read()
# A quiet machine assumed by every command run here or from here, unless a test says otherwise:
# what a command prints must not depend on what else the machine runs (gluon_bn.train.engine
# measures the load; tests/train/test_engine.py tests that).
os.environ.setdefault(engine.LOAD_VARIABLE, '0')


def pytest_runtest_setup(item):
    if item.get_closest_marker('real_data') and not HAS_DATA:
        pytest.skip('Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)')


@pytest.fixture
def cli(capsys):
    """gluon_bn's command line in this process, as cli('train', '--epochs', 1): no interpreter
    to start, which is most of what a short command costs. Returns a Ran."""
    def run(*args):
        capsys.readouterr()   # what came before is not the command's
        code = main([str(arg) for arg in args])
        out, err = capsys.readouterr()
        return Ran(code, out, err)
    return run
