"""The `gluon-bn` command line (also `python -m gluon_bn`, and each script in scripts/ under its
earlier name): one subcommand per program, each a screenful that parses its options and calls one
library function.

One error style for all: a command line that cannot work is one line,
`gluon-bn COMMAND: error: ...`, and exit status 2, before any work; a run that fails for a
reason gluon_bn can name (gluon_bn.Error: missing data, a checkpoint of another run, ...) is one
line too, and exit status 1. Neither shows a traceback.

Each subcommand imports what it runs when it runs, so that `gluon-bn train` loads neither
Jupyter's packages nor the book's.
"""
import argparse
import os
import sys

from ..utils.errors import Error
from ..utils.signals import signal_name, status, stopping_on_signals
from . import bench, book, options, teach, train
from .command import Command, Parser, UsageError, _Exit

__all__ = ['COMMANDS', 'Command', 'UsageError', 'main', 'parser', 'script']

# name, script in scripts/, its line in --help, its --help text, its options, what it runs
COMMANDS = {command.name: command for command in [
    Command('train', 'train_lenet_bn.py', "train the chapter's BN-LeNet on Fashion-MNIST",
            train.TRAIN, train.train_arguments, train.run_train),
    Command('launch-dist', 'launch_dist.py', "run workers of a distributed KVStore here",
            train.LAUNCH, train.launch_arguments, train.run_launch),
    Command('cuda-env', 'cuda_env.py', "print LD_LIBRARY_PATH for MXNet's GPU build",
            train.CUDA_ENV, lambda parser: None, train.run_cuda_env),
    Command('run-chapter', 'run_chapter.py', "rerun the book's chapters offline, in kernels",
            book.RUN_CHAPTER, book.run_chapter_arguments, book.run_run_chapter),
    Command('book-chapter', 'book_chapter_bn.py', "the book's BN-LeNet runs, corrected",
            book.BOOK_CHAPTER, book.epochs_and_data, book.run_book_chapter),
    Command('pytorch-settings', 'pytorch_settings.py',
            "the PyTorch ports' settings: how test accuracy swings", book.PYTORCH_SETTINGS,
            options.add_data_dir, book.run_pytorch_settings),
    Command('tutorial', 'tutorial_bn_nd.py', "the older tutorial's bare-NDArray network, "
            "corrected", teach.TUTORIAL, teach.tutorial_arguments, teach.run_tutorial),
    Command('exercises', 'exercises.py', "the chapter's exercises, answered by experiment",
            teach.EXERCISES, teach.exercises_arguments, teach.run_exercises),
    Command('bench-bn', 'bench_bn.py', "time each batch-norm path against nn.BatchNorm",
            bench.BENCH_BN, bench.bench_bn_arguments, bench.run_bench_bn),
    Command('bench-epoch', 'bench_epoch.py', "time an epoch: the book's pipeline against ours",
            bench.BENCH_EPOCH, bench.bench_epoch_arguments, bench.run_bench_epoch),
    Command('bench-peers', 'bench_peers.py', "time gluon_bn against nn.BatchNorm and PyTorch",
            bench.BENCH_PEERS, bench.bench_peers_arguments, bench.run_bench_peers),
    Command('bench-load', 'bench_load.py', "time epochs quiet and beside a busy process",
            bench.BENCH_LOAD, bench.bench_load_arguments, bench.run_bench_load),
    Command('bench-fold', 'bench_fold.py', "time prediction with batch norms folded",
            bench.BENCH_FOLD, bench.bench_fold_arguments, bench.run_bench_fold),
    Command('accuracy', 'accuracy_report.py', "every path's largest errors against the "
            "reference", bench.ACCURACY, bench.accuracy_arguments, bench.run_accuracy),
]}


FORMATTER = argparse.RawDescriptionHelpFormatter   # descriptions keep their lines


def parser(prog='gluon-bn'):
    """The parser of the whole command line, a subparser per command."""
    top = Parser(prog=prog, description="Batch normalization for MXNet Gluon, as taught in Dive "
                                        "into Deep Learning (d2lzh).")
    commands = top.add_subparsers(title='commands', metavar='COMMAND', required=True)
    for command in COMMANDS.values():
        sub = commands.add_parser(command.name, help=command.summary,
                                  description=command.description, formatter_class=FORMATTER)
        command.arguments(sub)
        sub.set_defaults(_command=command, _prog=sub.prog)
    return top


def main(argv=None, prog='gluon-bn', command=None):
    """Run the command line with `argv` (default: sys.argv[1:]); returns the exit status.

    command: run that one subcommand alone, under the name `prog` (the scripts in scripts/ do,
    so that their messages keep their names)."""
    if command is None:
        top = parser(prog)
    else:
        top = Parser(prog=prog, description=COMMANDS[command].description,
                     formatter_class=FORMATTER)
        COMMANDS[command].arguments(top)
        top.set_defaults(_command=COMMANDS[command], _prog=prog)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv and command is None:   # what is there to run: say it
        top.print_help(sys.stderr)
        return 2
    where = prog
    try:
        args, extra = top.parse_known_args(argv)
        where = args._prog
        if extra:   # said by the subcommand that was given them, not by gluon-bn
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        with stopping_on_signals():   # SIGTERM and SIGHUP stop a command as Ctrl-C does
            return args._command.run(args) or 0
    except _Exit as exit:
        return exit.status
    except UsageError as error:
        message, named = (error.args + (where,))[:2]
        print(f"{named}: error: {message}", file=sys.stderr)
        return 2
    except Error as error:
        print(f"{where}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:   # Ctrl-C, SIGTERM, SIGHUP: what was done is kept
        kept = getattr(stop, 'kept', None) or 'nothing it had written is lost'
        print(f"{where}: stopped by {signal_name(stop)}; {kept}", file=sys.stderr)
        return status(stop)
    except BrokenPipeError:   # `gluon-bn ... | head` stopped reading: stop, as any tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no error at exit
        return 128 + 13   # killed by SIGPIPE, as the shell reports it


def script(command):
    """What a script in scripts/ runs: `command` alone, under the script's own name."""
    return main(prog=os.path.basename(sys.argv[0]), command=command)
