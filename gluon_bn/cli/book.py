"""gluon-bn run-chapter, book-chapter and pytorch-settings: the book, rerun."""
import os

from . import options
from .command import UsageError

RUN_CHAPTER = """Rerun d2lzh chapters as published, offline, each in a Jupyter kernel of its own.

  gluon-bn run-chapter chapter_convolutional-neural-networks/batch-norm.md
  gluon-bn run-chapter ../shared/d2l-zh-v1 --epochs 1 --max-batches 3 --gpus-on-cpu 2

A chapter is the book's markdown source (code in fences opened by ```{.python .input}) or a
Jupyter notebook; a folder stands for every chapter in it. Each chapter runs cell by cell in a
fresh IPython kernel, in its own folder, as Jupyter runs it: magics, `!commands` and the display
of a cell's last value are IPython's. Fashion-MNIST comes from local, verified files, whichever
way the chapter asks for it. What the options change is announced once, and again in each cell
where it takes effect. A `!command` whose program is not installed here, or a magic IPython does
not know, is skipped with a notice naming the line.

At the end a table gives each chapter's result (passed, or the cell that failed and why), the
lines skipped, the figures saved and the seconds taken; the exit status is 1 if any failed."""


def run_chapter_arguments(p):
    p.add_argument('paths', nargs='+', metavar='PATH',
                   help='chapters (.md, .ipynb) or folders of them')
    p.add_argument('--epochs', type=options.positive(int),
                   help="train for N epochs: overrides num_epochs and hard-coded epoch loops")
    p.add_argument('--max-batches', type=options.positive(int), metavar='N',
                   help="every pass over a data loader stops after N batches")
    p.add_argument('--ctx', type=options.context,
                   help="what d2lzh.try_gpu() returns (cpu, gpu:1)")
    p.add_argument('--gpus-on-cpu', type=options.positive(int), metavar='N',
                   help="mx.gpu(i) is mx.cpu(i) for i < N: GPU chapters on a CPU")
    options.add_data_dir(p)
    p.add_argument('--figures', metavar='DIR',
                   help="where figures are saved (default: figures/ beside the report or "
                        "notebook, else in the current folder)")
    p.add_argument('--report', metavar='FILE', help='write the summary to FILE.json or FILE.md')
    p.add_argument('--notebook', metavar='OUT',
                   help='save each executed notebook: OUT.ipynb for one chapter, else a folder')


def run_run_chapter(args):
    from ..book import chapters
    if args.report and not args.report.endswith(('.json', '.md')):
        raise UsageError(f"--report: expected a .json or .md file name, got {args.report!r}")
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise UsageError(f"--data-dir: {args.data_dir} is not a folder")
    try:
        found = chapters.find_chapters(args.paths)
    except chapters.ChapterError as error:
        raise UsageError(str(error)) from None
    if args.notebook and args.notebook.endswith('.ipynb') and len(found) > 1:
        raise UsageError("--notebook: a single .ipynb file holds one chapter; give a folder")
    figures = args.figures
    if figures is None:
        beside = args.report or args.notebook
        figures = os.path.join(os.path.dirname(beside) if beside else '', 'figures')
    settings = chapters.Settings(args.epochs, args.max_batches, args.ctx, args.gpus_on_cpu,
                                 args.data_dir)
    return chapters.run_chapters(found, settings, figures, args.notebook, args.report)


BOOK_CHAPTER = """The book's batch-norm chapter (d2lzh), reproduced offline and corrected.

Trains the chapter's LeNet with the from-scratch BatchNorm, then with nn.BatchNorm: lr 1.0,
batch 256, SGD, Xavier, 5 epochs, printing d2lzh's lines. What was corrected:
gluon_bn.book.programs."""


def epochs_and_data(p):
    options.add_epochs(p, 5)
    options.add_data_dir(p)


def run_book_chapter(args):
    from ..book import programs
    programs.chapter_bn(args.epochs, args.data_dir)


PYTORCH_SETTINGS = """The PyTorch ports' settings, in Gluon: how BN-LeNet's test accuracy moves from
epoch to epoch.

1. The from-scratch BatchNorm with SGD at lr 1.0 for 10 epochs.
2. nn.BatchNorm with Adam at lr 0.001 for 5 epochs, as the PyTorch log (whose test accuracy
   swings between 0.69 and 0.86 while the training accuracy climbs).
Each ends with the range of its test accuracy and the number of epochs where it fell."""


def run_pytorch_settings(args):
    from ..book import programs
    programs.pytorch_settings(args.data_dir)

