"""gluon-bn run-chapter, book-chapter and pytorch-settings: the book, rerun."""
import os

from . import options
from .command import UsageError

RUN_CHAPTER = """Rerun the book's chapters as published, offline, each in a kernel of its own.

  gluon-bn run-chapter chapter_convolutional-neural-networks/batch-norm.md
  gluon-bn run-chapter ../shared/d2l-zh-v1 ../shared/d2l-zh-v2 --epochs 1 --max-batches 3
  gluon-bn run-chapter ../shared/d2l-zh-v2 --bn-layer both

A chapter is the book's markdown source (code in fences opened by ```{.python .input}) or a
Jupyter notebook, of either edition (d2lzh, or d2l in NumPy mode); a folder stands for every
chapter in it. Only the MXNet tab runs: cells with no tab marker, `#@tab all`, and tab lists
naming mxnet, as d2lbook reads them. A chapter below a folder holding the book's own d2l/ or
d2lzh/ package runs with it. Each chapter runs cell by cell in a fresh IPython kernel, in its
own folder, as Jupyter runs it: magics, `!commands` and the display of a cell's last value are
IPython's. Fashion-MNIST comes from local, verified files, whichever way the chapter asks for
it. What the options change is announced once, and again in each cell where it takes effect. A
`!command` whose program is not installed here, or a magic IPython does not know, is skipped
with a notice naming the line.

At the end a table gives each chapter's result (passed, or the cell that failed and why), the
last test accuracy it printed, the lines skipped, the figures saved and the seconds taken (with
--bn-layer both, the second run's beside them); the exit status is 1 if any failed."""


def chapters_cell_timeout():
    from ..book.chapters import CELL_TIMEOUT
    return CELL_TIMEOUT


def cell_timeout(text):
    """SECONDS (a positive number) or 'none'."""
    if text.lower() == 'none':
        return None
    return options.positive(float)(text)


def run_chapter_arguments(p):
    p.add_argument('paths', nargs='+', metavar='PATH',
                   help='chapters (.md, .ipynb) or folders of them')
    p.add_argument('--epochs', type=options.positive(int),
                   help="train for N epochs: every epoch count a chapter gives, and hard-coded "
                        "epoch loops")
    p.add_argument('--max-batches', type=options.positive(int), metavar='N',
                   help="every pass over a data loader stops after N batches")
    p.add_argument('--ctx', type=options.context,
                   help="what the books' try_gpu() returns (cpu, gpu:1)")
    p.add_argument('--gpus-on-cpu', type=options.positive(int), metavar='N',
                   help="gpu(i) is cpu(i) for i < N: GPU chapters on a CPU")
    p.add_argument('--bn-layer', choices=('mxnet', 'gluon_bn', 'both'), default='mxnet',
                   help="the layer nn.BatchNorm builds: MXNet's (default), gluon_bn's "
                        "HybridBatchNorm, or both in turn, side by side in the table")
    p.add_argument('--cell-timeout', type=cell_timeout, default=chapters_cell_timeout(),
                   metavar='SECONDS',
                   help="stop a cell that runs longer, and fail its chapter (default: "
                        f"{chapters_cell_timeout():g}, a day; 'none': no limit)")
    p.add_argument('--exclude', action='append', default=[], metavar='PATTERN',
                   help="leave out the chapters of a folder whose path in it matches PATTERN "
                        "(a glob such as '*/contrib/*', or a folder's name); repeatable")
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
        skipped = []
        found = chapters.find_chapters(args.paths, args.exclude, skipped)
    except chapters.ChapterError as error:
        raise UsageError(str(error)) from None
    if args.notebook and args.notebook.endswith('.ipynb') and len(found) > 1:
        raise UsageError("--notebook: a single .ipynb file holds one chapter; give a folder")
    figures = args.figures
    if figures is None:
        beside = args.report or args.notebook
        figures = os.path.join(os.path.dirname(beside) if beside else '', 'figures')
    notebook_folder = args.notebook and not args.notebook.endswith('.ipynb')
    options.check_outputs(('--report', args.report, False),
                          ('--notebook', args.notebook, notebook_folder),
                          ('--figures', args.figures, True),   # default: where it will be made
                          ('figures', args.figures is None and (os.path.dirname(figures) or '.'),
                           True))
    settings = chapters.Settings(args.epochs, args.max_batches, args.ctx, args.gpus_on_cpu,
                                 args.data_dir, args.bn_layer, args.cell_timeout)
    return chapters.run_chapters(found, settings, figures, args.notebook, args.report, skipped)


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

