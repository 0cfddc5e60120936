"""Every subcommand of gluon-bn, run as a user runs it (in this process, unless the process is
the point), and the scripts that keep their earlier names. gluon-bn train, run-chapter,
exercises, launch-dist and the benchmarks have modules of their own (tests/cli, tests/book,
tests/teach, tests/train, tests/bench); here the rest, and what all share."""
import ast
import re
import subprocess
import sys

import pytest

from gluon_bn.book import rerun
from gluon_bn.cli import COMMANDS
from tests.helpers import ROOT, SCRIPTS, checkout_env


def test_help_lists_every_subcommand(cli):
    ran = cli('--help')
    assert ran.returncode == 0
    listed = re.findall(r'^    ([a-z-]+)', ran.stdout, flags=re.M)
    assert listed == list(COMMANDS) and len(listed) == 14
    alone = cli()
    assert alone.returncode == 2 and 'train' in alone.stderr and alone.stdout == ''


def test_an_unknown_subcommand_or_option_is_one_line(cli):
    for args, words in ((['frobnicate'], "gluon-bn: error: argument COMMAND: invalid choice: "
                                         "'frobnicate'"),
                        (['cuda-env', '--loud'], 'gluon-bn cuda-env: error: unrecognized '
                                                 'arguments: --loud')):
        ran = cli(*args)
        assert ran.returncode == 2 and ran.stderr.splitlines() == [ran.stderr.strip()]
        assert ran.stderr.startswith(words), ran.stderr


def test_each_script_is_a_few_lines_that_run_its_subcommand():
    scripts = {path.name: path for path in SCRIPTS.glob('*.py')}
    assert set(scripts) == {c.script for c in COMMANDS.values()} | {'torch_peer.py'}
    for name, path in scripts.items():
        text = path.read_text()
        assert len(text.splitlines()) <= 15, name
        if name != 'torch_peer.py':
            calls = [node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Call)
                     and getattr(node.func, 'id', None) == 'script']
            assert [ast.literal_eval(c.args[0]) for c in calls] == \
                [c.name for c in COMMANDS.values() if c.script == name]


@pytest.mark.slow
def test_the_installed_command_and_the_module_and_a_script_all_answer():
    """`pip install -e .` (make's set-up) puts gluon-bn beside this Python."""
    for program in ([str(ROOT / '.venv' / 'bin' / 'gluon-bn')] if sys.prefix == str(ROOT / '.venv')
                    else []) + [sys.executable + ' -m gluon_bn']:
        ran = subprocess.run(program.split() + ['--help'], capture_output=True, text=True,
                             env=checkout_env(), timeout=300)
        assert ran.returncode == 0 and 'bench-peers' in ran.stdout, ran.stderr
    ran = subprocess.run([sys.executable, SCRIPTS / 'cuda_env.py', '--help'], capture_output=True,
                         text=True, env=checkout_env(), timeout=300)
    assert ran.returncode == 0 and ran.stdout.startswith('usage: cuda_env.py')


def test_cuda_env_says_there_is_nothing_to_add_on_the_cpu_build(cli):
    ran = cli('cuda-env')
    assert ran.returncode == 0
    assert ran.stdout == ("# libmxnet.so loads as it is (CPU build, or a system CUDA): nothing "
                          "to add\n")


@pytest.mark.real_data
def test_book_chapter_trains_the_two_lenets_and_prints_their_accuracies(cli):
    with rerun.limit_batches(2):   # every pass over the data: two batches
        ran = cli('book-chapter', '--epochs', 2)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == '# LeNet with from-scratch BatchNorm' and lines[1].startswith('training on')
    assert [line.split(',')[0] for line in lines if line.startswith('epoch')] == \
        ['epoch 1', 'epoch 2'] * 2
    assert '# LeNet with nn.BatchNorm' in lines
    assert re.fullmatch(r'# test acc per epoch: \d\.\d{3}, \d\.\d{3}', lines[-1])


@pytest.mark.real_data
def test_pytorch_settings_runs_both_settings_and_sums_up_the_swings(cli):
    with rerun.limit_batches(1):
        ran = cli('pytorch-settings')
    assert ran.returncode == 0, ran.stderr
    sums = [line for line in ran.stdout.splitlines() if line.startswith('# test acc')]
    assert len(sums) == 2
    assert re.match(r'# test acc \d\.\d{3} to \d\.\d{3}, fell in \d of 9 epochs: ', sums[0])
    assert re.match(r'# test acc \d\.\d{3} to \d\.\d{3}, fell in \d of 4 epochs: ', sums[1])


@pytest.mark.real_data
def test_the_tutorial_trains_its_bare_ndarray_network(cli):
    with rerun.limit_batches(3):
        ran = cli('tutorial', '--epochs', 2)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == "('Start training on ', cpu(0))" and len(lines) == 3
    for epoch, line in enumerate(lines[1:]):   # the tutorial's own line; learning: test_legacy
        assert re.fullmatch(rf'Epoch {epoch}\. Loss: [\d.]+, Train acc [\d.e-]+, Test acc '
                            rf'[\d.e-]+, Time [\d.e-]+ sec', line), line
