"""gluon-bn tutorial and exercises: what a teacher shows."""

from . import options
from .command import UsageError

TUTORIAL = """The older Gluon tutorial's batch norm from scratch ("批量归一化 --- 从0开始"),
reproduced offline and corrected.

The tutorial's network, in bare NDArrays: conv 20@5x5 -> batch_norm2D -> relu -> maxpool,
conv 50@3x3 -> batch_norm2D -> relu -> maxpool, dense 128 -> relu, dense 10; lr 0.9, batch 256.
What was wrong, and what changed: gluon_bn.teach.tutorial."""


def tutorial_arguments(p):
    options.add_epochs(p, 5)
    options.add_data_dir(p)


def run_tutorial(args):
    from ..teach import tutorial
    tutorial.train(args.epochs, args.data_dir)


EXERCISES = """The batch-norm chapter's exercises, answered by experiment: figures and a report.

  gluon-bn exercises --out report/                   # all, cheap: a few minutes
  gluon-bn exercises 2 shift --out report/ --full    # the whole data set, 10 epochs

Writes DIR/exercise-1.png ... exercise-5.png, DIR/shift.png, DIR/precise.png (beyond the chapter:
test accuracy from the moving averages against exact statistics, gluon_bn.update_bn_stats, for
three seeds: --seed and the next two) and DIR/report.md, whose answers are
written from the numbers measured (a run that contradicts the book says so). Finished runs are
kept in DIR/runs.json: run the same command again after an interruption and it goes on from the
first run it had not finished. Every run is seeded (--seed)."""


def exercises_arguments(p):
    from ..teach.exercises import EXERCISES as WHICH
    p.add_argument('which', nargs='*', metavar='EXERCISE',
                   help=f"some of {' '.join(WHICH)} (default: all)")
    p.add_argument('--out', required=True, metavar='DIR', help='where figures and report go')
    p.add_argument('--full', action='store_true',
                   help='the whole training set and 10 epochs (default: 20,000 images, 5 epochs)')
    p.add_argument('--epochs', type=options.positive(int), default=None)
    p.add_argument('--train-size', type=options.positive(int), default=None)
    p.add_argument('--lr', type=options.learning_rate, default=1.0,
                   help='learning rate of every exercise but 2 (default 1.0, the chapter\'s)')
    options.add_seed(p)
    options.add_data_dir(p)


def run_exercises(args):
    from ..teach import exercises
    unknown = [w for w in args.which if w not in exercises.EXERCISES]
    if unknown:
        raise UsageError(f"no exercise {', '.join(unknown)}: choose from "
                         f"{' '.join(exercises.EXERCISES)}")
    options.check_outputs(('--out', args.out, True))
    exercises.run_exercises(
        args.out, args.which or exercises.EXERCISES,
        epochs=args.epochs or (10 if args.full else 5),
        train_size=args.train_size or (None if args.full else 20000),
        lr=args.lr, seed=0 if args.seed is None else args.seed, data_dir=args.data_dir)

