"""What the subcommands share: option types that refuse bad values in one line, and the options
several of them take (--data-dir, --epochs, --seed)."""
import argparse

import numpy as np

from ..train.devices import parse_context

FLOAT32_MAX = float(np.finfo(np.float32).max)


def positive(kind):
    """A positive int or float."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got "
                                             f"{text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def learning_rate(text):
    """A positive, finite number that MXNet's optimizers (which keep it as a float32) accept."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive float, got {text!r}") from None
    if not 0 < value <= FLOAT32_MAX:   # also false for nan
        raise argparse.ArgumentTypeError(f"must be a positive number up to {FLOAT32_MAX:.3g} "
                                         f"(MXNet keeps it as a float32), got {text}")
    return value


def seed(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**32 - 1, got {text}")
    return value


def context(text):
    """'cpu', 'gpu:1', ... as the text itself, checked."""
    try:
        parse_context(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def contexts(text):
    """'cpu', 'gpu:1', 'cpu:0,cpu:1' -> a list of MXNet contexts, each named once."""
    try:
        ctxs = [parse_context(part) for part in text.split(',')]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    twice = sorted({str(c) for c in ctxs if ctxs.count(c) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} listed twice: each device holds "
                                         f"one part of the batch")
    return ctxs


def add_data_dir(parser):
    parser.add_argument('--data-dir', metavar='DIR',
                        help="folder of the four Fashion-MNIST .gz files (default: "
                             "$FASHION_MNIST_DIR, then Debian's, then MXNet's cache)")


def add_epochs(parser, default, help='epochs to train'):
    parser.add_argument('--epochs', type=positive(int), default=default, help=help)


def add_seed(parser):
    parser.add_argument('--seed', type=seed, default=None, help='seed every random generator')


def check_outputs(*places):
    """Each (option, path, folder?) with a path given must be writable, before any work starts:
    else a UsageError naming the option, the place and why (the folders needed are created, as
    writing would)."""
    from ..utils import files
    from .command import UsageError
    for option, path, folder in places:
        problem = path and files.unwritable_place(path, folder)
        if problem:
            raise UsageError(f"{option}: {problem}; choose another place")
