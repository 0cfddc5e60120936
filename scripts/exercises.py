"""The batch-norm chapter's exercises, answered by experiment: figures and a report.

    python scripts/exercises.py --out report/                   # all, cheap: a few minutes
    python scripts/exercises.py 2 shift --out report/ --full    # the whole data set, 10 epochs

Writes DIR/exercise-1.png ... exercise-5.png, DIR/shift.png and DIR/report.md, whose answers are
written from the numbers measured (a run that contradicts the book says so). Finished runs are
kept in DIR/runs.json: run the same command again after an interruption and it goes on from the
first run it had not finished. Every run is seeded (--seed).
"""
import argparse
import os
import sys
import time

import gluon_bn  # noqa: F401  first: on the GPU build it loads the CUDA libraries (gluon_bn.cuda)
import mxnet as mx

from gluon_bn import checkpoint, cli, engine, exercises as ex, files
from gluon_bn.data import DataError, load_fashion_mnist
from gluon_bn.exercise_report import report, figures

EXERCISES = ('1', '2', '3', '4', '5', 'shift')
RATES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('which', nargs='*', metavar='EXERCISE',
                   help=f"some of {' '.join(EXERCISES)} (default: all)")
    p.add_argument('--out', required=True, metavar='DIR', help='where figures and report go')
    p.add_argument('--full', action='store_true',
                   help='the whole training set and 10 epochs (default: 20,000 images, 5 epochs)')
    p.add_argument('--epochs', type=cli.positive(int), default=None)
    p.add_argument('--train-size', type=cli.positive(int), default=None)
    p.add_argument('--lr', type=cli.learning_rate, default=1.0,
                   help='learning rate of every exercise but 2 (default 1.0, the chapter\'s)')
    cli.add_seed(p)
    cli.add_data_dir(p)
    args = p.parse_args(argv)
    unknown = [w for w in args.which if w not in EXERCISES]
    if unknown:
        p.error(f"no exercise {', '.join(unknown)}: choose from {' '.join(EXERCISES)}")
    args.which = [w for w in EXERCISES if w in args.which] or list(EXERCISES)
    args.epochs = args.epochs or (10 if args.full else 5)
    args.train_size = args.train_size or (None if args.full else 20000)
    args.seed = 0 if args.seed is None else args.seed
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        p.error(f"--out: {args.out} is a file")
    return args


def main(argv=None):
    args = parse_args(argv)
    engine.default_settings([mx.cpu()])
    os.makedirs(args.out, exist_ok=True)
    settings = {'epochs': args.epochs, 'train_size': args.train_size, 'lr': args.lr,
                'seed': args.seed, 'rates': list(RATES)}
    try:
        lock = checkpoint.FolderLock(args.out).acquire()   # one run per folder at a time
    except checkpoint.CheckpointError as error:
        sys.exit(f"exercises.py: error: {error}")
    try:
        run(args, settings)
    finally:
        lock.release()


def run(args, settings):
    try:
        runs = ex.Runs(os.path.join(args.out, 'runs.json'), settings)
        data = ex.Data(load_fashion_mnist(True, args.data_dir),
                       load_fashion_mnist(False, args.data_dir), args.train_size)
    except (ValueError, DataError) as error:
        sys.exit(f"exercises.py: error: {error}")
    start = time.time()
    common = dict(data=data, runs=runs, epochs=args.epochs, seed=args.seed)
    results = {}
    for which in args.which:
        print(f"exercise {which}", flush=True)
        if which == '2':
            results[which] = ex.learning_rates(rates=RATES, **common)
        else:
            results[which] = {'1': ex.bias_before_bn, '3': ex.placements,
                              '4': ex.frozen_gamma_beta, '5': ex.global_statistics,
                              'shift': ex.input_shift}[which](lr=args.lr, **common)
    images = figures(results, settings)
    for name, image in images.items():
        files.write_atomically(os.path.join(args.out, name), image)
    text = report(results, settings, sorted(images), time.time() - start)
    files.write_atomically(os.path.join(args.out, 'report.md'), text.encode())
    print(f"wrote {', '.join(sorted(images))} and report.md to {args.out} "
          f"({time.time() - start:.0f} s)")

if __name__ == '__main__':
    main()
