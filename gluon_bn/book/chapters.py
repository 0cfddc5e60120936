"""Rerun book chapters as Jupyter runs them, offline, and report on each.

A chapter (the books' markdown source or a notebook) becomes a notebook as d2lbook, the tool the
books are built with, reads it, keeping the MXNet tab: a code cell with no tab marker is
MXNet's, `#@tab all` and lists naming mxnet are kept, other frameworks' cells (and their prose
between `:begin_tab:` marks) are left out and counted. It runs cell by cell in a fresh IPython
kernel of its own, started by nbclient in the chapter's folder, as Jupyter would: magics,
`!commands` and the display of a cell's last value are IPython's. A chapter inside a book folder
that holds the book's own package (`d2l/` or `d2lzh/`) runs with that package, as in the book's
repository; otherwise with the installed one. Before the first cell the kernel runs
gluon_bn.book.rerun.setup_kernel with the runner's settings (offline data, shortcuts).

While a chapter runs, what its cells print goes to the console, figures are saved as files, and
the notices of gluon_bn.book.rerun are collected; run_chapter() returns a Result, and the executed
notebook, outputs and figures included, can be written for Jupyter.
"""
import ast
import base64
import collections
import contextlib
import dataclasses
import fnmatch
import json
import os
import re
import signal
import sys
import tempfile
import time

import nbformat
from d2lbook import notebook as d2lbook_notebook
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from ..train.devices import parse_context
from ..utils.errors import Error
from ..utils.files import write_atomically
from ..utils.signals import signal_name
from .rerun import BN_LAYERS, NOTICE_MIME

SUFFIXES = ('.md', '.ipynb')
TAB = 'mxnet'   # the books' default tab: a code cell with no tab marker is MXNet's
# The books' own packages: a chapter below a folder holding one runs with it.
BOOK_PACKAGES = ('d2l', 'd2lzh')
# What the books print after training: d2lzh "... test acc 0.861, time ...", d2l "test acc 0.878",
# the second edition's multi-GPU chapters "测试精度：0.91，..."
TEST_ACCURACY = re.compile(r'(?:test[ _]acc(?:uracy)?|测试精度)\W{0,3}([01]?\.[0-9]+)')
RESULT_WIDTH = 60   # the summary table's result column; the report keeps the whole line
# A cell that runs longer than this has hung (a network that drops packets, a wait on nothing):
# well above the book's longest cell on a 2-core CPU (5 epochs of ResNet or DenseNet on 96x96
# images, some hours).
CELL_TIMEOUT = 24 * 3600
FIGURE_TYPES = {'image/svg+xml': 'svg', 'image/png': 'png', 'image/jpeg': 'jpg'}
ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
# The folder that holds this gluon_bn package, put first on the kernel's path.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class Settings:
    """What the kernel changes (gluon_bn.book.rerun.setup_kernel's arguments)."""
    epochs: int = None
    max_batches: int = None
    ctx: str = None          # 'cpu', 'gpu:1', ...: what d2lzh.try_gpu() returns
    gpus_on_cpu: int = None
    data_dir: str = None
    bn_layer: str = 'mxnet'  # or 'gluon_bn': nn.BatchNorm is gluon_bn's HybridBatchNorm
    cell_timeout: float = CELL_TIMEOUT   # seconds a cell may run; None: no limit

    def options(self):
        """The options as given on the command line: ['--epochs 1', '--ctx cpu', ...]."""
        chosen = [(k, v) for k, v in dataclasses.asdict(self).items() if v is not None]
        return [f"--{k.replace('_', '-')} {v:g}" if isinstance(v, float) else
                f"--{k.replace('_', '-')} {v}" for k, v in chosen
                if (k, v) not in (('bn_layer', 'mxnet'), ('cell_timeout', CELL_TIMEOUT))]


@dataclasses.dataclass
class Result:
    """How one chapter went."""
    chapter: str
    passed: bool
    seconds: float
    cells: int                       # code cells in the chapter
    failed_cell: int = None          # numbered as the code cells, from 1
    failed_source: str = None        # the failing cell's first line
    error: str = None                # the exception's first line, or what stopped the kernel
    skipped: list = dataclasses.field(default_factory=list)   # 'cell 1, line 1: `!nvidia-smi`'
    notices: list = dataclasses.field(default_factory=list)   # every notice, with its cell
    figures: list = dataclasses.field(default_factory=list)   # saved files
    notebook: str = None
    interrupted: str = None          # 'SIGINT' (Ctrl-C), 'SIGTERM', 'SIGHUP': the run stops
    accuracy: float = None           # the last test accuracy the chapter printed
    batch_norms: int = None          # MXNet batch-norm layers it built (None: not known)
    other_tabs: dict = dataclasses.field(default_factory=dict)   # {'pytorch': 7, ...} left out
    package: str = None              # the book's own d2l/ or d2lzh/ it ran with, if any
    bn_layer: str = 'mxnet'
    with_gluon_bn: 'Result' = None   # --bn-layer both: the same chapter on gluon_bn's layer

    @property
    def outcome(self):
        if self.passed:
            return 'passed'
        if not self.cells:   # it could not be read: no kernel started
            return f"failed: {self.error}"
        where = f"cell {self.failed_cell}" if self.failed_cell else "kernel set-up"
        return f"failed at {where}: {self.error}"


class ChapterError(Error, ValueError):
    """A chapter file that cannot be read, or holds no code."""


class NoCodeError(ChapterError):
    """A chapter file that holds no MXNet code: prose only, or other frameworks' tabs only."""


# --- reading -------------------------------------------------------------------------------

def read_chapter(path):
    """The chapter's MXNet tab as a notebook, as d2lbook reads the books' sources (a .ipynb as
    it is, its old outputs cleared). `nb.metadata.gluon_bn.other_tabs` counts the code cells of
    other tabs that were left out, by tab."""
    try:
        if path.endswith('.ipynb'):
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
        else:
            with open(path, encoding='utf-8') as f:
                text = f.read()
            nb = d2lbook_notebook.split_markdown_cell(d2lbook_notebook.read_markdown(text))
    except UnicodeDecodeError as error:
        raise ChapterError(f"cannot read {path}: it is not UTF-8 text ({error.reason} at byte "
                           f"{error.start}); save it as UTF-8") from None
    except OSError as error:
        raise ChapterError(f"cannot read {path}: {error.strerror or error}") from None
    except (ValueError, KeyError, AttributeError, TypeError, nbformat.ValidationError) as error:
        what = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ChapterError(f"cannot read {path}: not a Jupyter notebook ({what}); open and "
                           f"save it in Jupyter, or give the chapter's .md source") from None
    other_tabs = collections.Counter()
    for cell in nb.cells:
        tabs = d2lbook_notebook.get_cell_tab(cell, TAB) if cell.cell_type == 'code' else []
        if tabs and TAB not in tabs and tabs != ['all']:
            other_tabs.update(tabs)
    mxnet = d2lbook_notebook.get_tab_notebook(nb, TAB, TAB)
    if mxnet is None or not any(cell.cell_type == 'code' for cell in mxnet.cells):
        others = f" (only {_count(other_tabs)})" if other_tabs else ''
        raise NoCodeError(f"{path} has no MXNet code cells{others}")
    for cell in mxnet.cells:
        cell.metadata.pop('origin_pos', None)
        if cell.cell_type == 'code':
            cell.outputs, cell.execution_count = [], None
    mxnet.metadata['gluon_bn'] = {'other_tabs': dict(other_tabs)}
    return mxnet


def _count(tabs):
    return ', '.join(f"{n} {tab}" for tab, n in sorted(tabs.items()))


def book_package(path):
    """The book's own package (d2l/ or d2lzh/) in the nearest folder above the chapter that
    holds one, or None."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        for package in BOOK_PACKAGES:
            if os.path.isfile(os.path.join(folder, package, '__init__.py')):
                return os.path.join(folder, package)
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def find_chapters(paths, exclude=(), skipped=None):
    """[(file, name to show)] for chapter files and folders (searched for .md and .ipynb files,
    in name order), leaving out files whose path within the folder matches an `exclude` pattern
    (fnmatch's, or the name of a folder on the way). Names are paths relative to the folder all
    the chapters share, so they stay apart.

    A path given by name must be a chapter with MXNet code (else a ChapterError). In a folder,
    a file without MXNet code (prose only, other frameworks only) is left out, and a file that
    cannot be read stays in the list, to fail when it runs: nothing is dropped in silence.
    What was left out, and a file named twice (it runs once), is appended to `skipped` as
    (path, why)."""
    skipped = [] if skipped is None else skipped
    found = []
    for path in paths:
        if os.path.isdir(path):
            inside = []
            for folder, subfolders, files in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith('.'))
                inside += [os.path.join(folder, f) for f in sorted(files)
                           if f.endswith(SUFFIXES)]
            inside = [f for f in inside if not excluded(os.path.relpath(f, path), exclude)]
            kept = []
            for file in inside:
                try:
                    read_chapter(file)
                except NoCodeError as error:
                    skipped.append((file, str(error)[len(file):].strip()))
                    continue
                except ChapterError:
                    pass   # unreadable: listed, and failed when its turn comes
                kept.append(file)
            if not kept:
                raise ChapterError(f"{path}: no chapter with MXNet code cells in this folder")
            found += kept
        elif os.path.isfile(path) and path.endswith(SUFFIXES):
            read_chapter(path)   # a ChapterError now, not halfway through a run
            found.append(path)
        elif os.path.exists(path):
            raise ChapterError(f"{path}: not a chapter (.md or .ipynb) or a folder of them")
        else:
            raise ChapterError(f"{path}: no such file or folder")
    unique, seen = [], set()
    for file in found:
        if os.path.realpath(file) in seen:
            skipped.append((file, "named more than once: it runs once"))
        else:
            seen.add(os.path.realpath(file))
            unique.append(file)
    base = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in unique])
    return [(file, os.path.relpath(os.path.abspath(file), base)) for file in unique]


def excluded(path, patterns):
    """Whether `path` (relative to the folder searched) matches a pattern of --exclude."""
    folders = path.split(os.sep)[:-1]
    return any(fnmatch.fnmatch(path, p) or p.strip('/') in folders for p in patterns)


# --- running -------------------------------------------------------------------------------

class _Client(NotebookClient):
    """nbclient's executor, echoing each output to the console as it arrives. When a cell
    clears its output (d2l's Animator redraws its figure so), the runner's notices in that cell
    stay, and the next figure replaces the cleared one's file."""

    def __init__(self, nb, run, **kwargs):
        super().__init__(nb, **kwargs)
        self.run = run
        self.notices = {}   # cell index -> the notice outputs shown in it

    def output(self, outs, msg, display_id, cell_index):
        clearing = self.clear_before_next_output
        out = super().output(outs, msg, display_id, cell_index)
        if clearing and not self.clear_before_next_output:   # the delayed clear happened
            self.cleared(outs, cell_index, at=len(outs) - (out is not None))
        if out is not None:
            if NOTICE_MIME in out.get('data', {}):
                self.notices.setdefault(cell_index, []).append(out)
            self.run.show(out)
        return out

    def clear_output(self, outs, msg, cell_index):
        super().clear_output(outs, msg, cell_index)
        if not msg['content'].get('wait'):
            self.cleared(outs, cell_index, at=0)

    def cleared(self, outs, cell_index, at):
        outs[at:at] = self.notices.get(cell_index, [])
        self.run.figures_in_cell = 0


class _Run:
    """One chapter's run: the console echo, the figures and notices it collects."""

    def __init__(self, result, figures_dir, out, err):
        self.result, self.figures_dir, self.out, self.err = result, figures_dir, out, err
        self.cell = None             # the code cell running now, numbered from 1
        self.figures_in_cell = 0
        self.printed = []            # what the cells wrote to stdout
        self.quiet = False           # the runner's own queries: not echoed
        self.stats = None            # rerun.stats() after the last cell
        self.tty = err.isatty() if hasattr(err, 'isatty') else False

    def say(self, text):
        print(f"[run_chapter] {text}", file=self.out, flush=True)

    def execute(self, nb, code_cells, settings, folder, package=None):
        """Start a kernel in `folder` (the book's `package` importable), set it up, run the
        code cells until one fails, then ask the kernel what it saw."""
        with tempfile.TemporaryDirectory(prefix='run_chapter-') as sockets, \
                contextlib.ExitStack() as kernel:
            # ipykernel's own spec, this interpreter (not whatever 'python3' kernel a user
            # installed); IPC sockets in a private folder: no TCP port, nothing left behind.
            km = AsyncKernelManager(kernel_name='python3',
                                    kernel_spec_manager=KernelSpecManager(kernel_dirs=[]),
                                    transport='ipc', ip=os.path.join(sockets, 'kernel'))
            client = _Client(nb, self, km=km, timeout=settings.cell_timeout, allow_errors=False,
                             resources={'metadata': {'path': folder}})
            try:
                kernel.enter_context(client.setup_kernel(env=kernel_environment(package),
                                                         cleanup_kc=True))
            except (NoSuchKernel, RuntimeError) as error:   # RuntimeError: it never answered
                return self.failed(None, f"no Jupyter kernel could start: {error}")
            def cell():   # the cell that was running, if any
                return nb.cells[code_cells[self.cell - 1]] if self.cell else None
            try:
                self.set_up(client, settings)
                for number, index in enumerate(code_cells, 1):
                    self.cell, self.figures_in_cell = number, 0
                    print(f"In [{number}]:", file=self.out, flush=True)
                    client.execute_cell(nb.cells[index], index, execution_count=number)
            except CellExecutionError as error:
                self.failed(cell(), f"{error.ename}: {error.evalue}")
            except DeadKernelError:
                self.failed(cell(), "the kernel died")
            except CellTimeoutError:
                client.shutdown_kernel = 'immediate'   # still busy: the kernel is stopped
                self.failed(cell(), f"ran past --cell-timeout {settings.cell_timeout:g} s, "
                                    f"and was stopped")
            except KeyboardInterrupt as stop:   # Ctrl-C, SIGTERM, SIGHUP
                client.shutdown_kernel = 'immediate'   # the cell may be busy for hours
                self.result.interrupted = signal_name(stop)
                self.failed(cell(), f"stopped by {signal_name(stop)}")
            else:
                self.result.passed = True
            if not self.result.interrupted:
                self.ask_stats(client)

    def set_up(self, client, settings):
        """gluon_bn.book.rerun.setup_kernel in the kernel, outside the notebook and its history."""
        arguments = dataclasses.asdict(settings)
        arguments.pop('cell_timeout')   # the runner's, not the kernel's
        arguments = json.dumps(arguments)
        self.hidden(client, "import json as _json, gluon_bn.book.rerun as _rerun\n"
                            f"_rerun.setup_kernel(get_ipython(), **_json.loads({arguments!r}))\n"
                            "del _json, _rerun")

    def ask_stats(self, client):
        """What the chapter built and which epoch counts it gave (rerun.stats())."""
        self.quiet = True
        try:
            cell = self.hidden(client, "import gluon_bn.book.rerun as _rerun\n"
                                       "print(_rerun.stats())\ndel _rerun")
            text = ''.join(o.get('text', '') for o in cell.outputs if o.output_type == 'stream')
            self.stats = ast.literal_eval(text.strip())
        except Exception:   # a kernel that died or broke: the chapter's result stands
            self.stats = None
        finally:
            self.quiet = False

    def hidden(self, client, code):
        """Run `code` in the kernel outside the notebook and its history; the cell, with its
        outputs."""
        cell = nbformat.v4.new_code_cell(code)
        client.nb.cells.insert(0, cell)
        try:
            client.execute_cell(cell, 0, store_history=False)
        finally:
            client.nb.cells.pop(0)
        return cell

    def failed(self, cell, error):
        """Record and say where the run stopped: a code cell, or (cell None) before any."""
        result = self.result
        result.failed_cell = self.cell or 0
        result.error = error.splitlines()[0] if error else 'no message'
        result.failed_source = next((line.strip() for line in cell.source.splitlines()
                                     if line.strip()), '') if cell is not None else None
        where = (f"cell {self.cell} failed: {result.failed_source}" if cell is not None
                 else f"setting up the kernel failed: {result.error}")
        print(f"[run_chapter] {where}", file=self.err, flush=True)

    def show(self, out):
        kind = out.output_type
        if self.quiet:
            return
        if kind == 'stream':
            stream = self.err if out.name == 'stderr' else self.out
            if out.name == 'stdout':
                self.printed.append(out.text)
            stream.write(out.text)
            stream.flush()
        elif kind == 'error':
            text = '\n'.join(out.traceback)
            print(text if self.tty else ANSI.sub('', text), file=self.err, flush=True)
        elif kind in ('execute_result', 'display_data'):
            data = out.get('data', {})
            if NOTICE_MIME in data:
                self.notice(data[NOTICE_MIME])
            elif any(mime in data for mime in FIGURE_TYPES):
                self.figure(data)
            elif 'text/plain' in data:
                text = data['text/plain']
                if kind == 'execute_result':
                    text = f"Out[{self.cell}]:" + ('\n' if '\n' in text else ' ') + text
                print(text, file=self.out, flush=True)

    def notice(self, notice):
        notice = dict(notice, cell=self.cell)
        self.result.notices.append(notice)
        where = f"cell {self.cell}, {notice['text']}" if notice['text'].startswith('line ') \
            else f"cell {self.cell}: {notice['text']}"
        if notice['kind'] == 'skipped':
            line = f", line {notice['line']}" if notice.get('line') else ''
            self.result.skipped.append(f"cell {self.cell}{line}: `{notice['escape']}`")
        self.say(where)

    def figure(self, data):
        mime = next(m for m in FIGURE_TYPES if m in data)
        self.figures_in_cell += 1
        path = os.path.join(self.figures_dir,
                            f"cell{self.cell:02d}-{self.figures_in_cell}.{FIGURE_TYPES[mime]}")
        content = data[mime]
        content = content.encode() if mime == 'image/svg+xml' else base64.b64decode(content)
        os.makedirs(self.figures_dir, exist_ok=True)
        write_atomically(path, content)
        if path not in self.result.figures:   # else a redrawn figure: the file is its last state
            self.result.figures.append(path)
            self.say(f"cell {self.cell}: figure saved to {path}")


def kernel_environment(package=None):
    """The runner's environment, with this gluon_bn first on the path, then the folder of the
    book's own `package` if given, and matplotlib left to the kernel (inline, as in Jupyter)
    rather than to a backend set for scripts."""
    env = dict(os.environ)
    env.pop('MPLBACKEND', None)
    book = os.path.dirname(package) if package else None
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [PACKAGE_ROOT, book,
                                                      env.get('PYTHONPATH')]))
    return env


def run_chapter(path, settings=None, *, name=None, figures_dir=None, notebook_path=None,
                out=None, err=None):
    """Run one chapter in a fresh kernel; returns its Result (a failing cell does not raise).

    figures_dir : folder for the figures the chapter draws (created only if it draws one);
        None: figures are not saved.
    notebook_path : where to write the executed notebook, also when a cell failed.
    """
    settings = settings or Settings()
    nb = read_chapter(path)
    code_cells = [i for i, cell in enumerate(nb.cells) if cell.cell_type == 'code']
    result = Result(name or os.path.basename(path), passed=False, seconds=0.0,
                    cells=len(code_cells), other_tabs=nb.metadata['gluon_bn']['other_tabs'],
                    package=book_package(path), bn_layer=settings.bn_layer)
    run = _Run(result, figures_dir, out or sys.stdout, err or sys.stderr)
    if result.other_tabs:
        run.say(f"the MXNet tab: {result.cells} code cell(s); left out: "
                f"{_count(result.other_tabs)}")
    if result.package:
        run.say(f"the book's own {os.path.basename(result.package)}: {result.package}")
    start = time.monotonic()
    try:
        run.execute(nb, code_cells, settings, os.path.dirname(os.path.abspath(path)),
                    result.package)
    finally:
        result.seconds = time.monotonic() - start
        found = TEST_ACCURACY.findall(''.join(run.printed))
        result.accuracy = float(found[-1]) if found else None
        if run.stats is not None:
            result.batch_norms = run.stats['batch_norms']
        if notebook_path:
            write_notebook(nb, path, notebook_path, settings)
            result.notebook = notebook_path
    if settings.epochs is not None and result.passed and run.stats is not None and \
            not run.stats['epoch_counts']:
        run.say(f"--epochs {settings.epochs}: the chapter gave no epoch count that --epochs "
                f"reaches (an assignment to num_epochs, max_epochs, epochs..., such an argument "
                f"of a function, or a loop over range(k) named for epochs)")
    return result


# --- the executed notebook -----------------------------------------------------------------

# A relative picture in the book's prose: ![caption](../img/x.svg) or <img src="../img/x.svg">
PICTURE = re.compile(r'(!\[[^\]]*\]\(\s*|<img\s[^>]*?src=["\'])([^)"\'\s]+)')


def write_notebook(nb, path, notebook_path, settings):
    """Write the executed notebook to `notebook_path`: its first cell says how it was rerun,
    and the book's relative pictures are linked from where the notebook now is."""
    chapter = os.path.dirname(os.path.abspath(path))
    there = os.path.dirname(os.path.abspath(notebook_path))
    saved = nbformat.from_dict(nb)
    for cell in saved.cells:
        if cell.cell_type == 'markdown':
            cell.source = PICTURE.sub(lambda m: m[1] + _relink(m[2], chapter, there),
                                      cell.source)
    saved.cells.insert(0, nbformat.v4.new_markdown_cell(rerun_note(path, settings)))
    saved.metadata['gluon_bn'] = dict(nb.metadata.get('gluon_bn', {}),
                                      source=os.path.abspath(path),
                                      settings=dataclasses.asdict(settings))
    saved.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3',
                                    'language': 'python'}
    os.makedirs(there, exist_ok=True)
    write_atomically(notebook_path, nbformat.writes(saved).encode('utf-8'))


def _relink(link, chapter, there):
    if re.match(r'[a-z][a-z0-9+.-]*:|/|#', link, re.I):   # a URL, data:, absolute, an anchor
        return link
    target = os.path.normpath(os.path.join(chapter, link))
    return os.path.relpath(target, there) if os.path.exists(target) else link


SETTING_NOTES = {
    'epochs': "every epoch count the chapter gives is {}",
    'max_batches': "every pass over a data loader stops after {} batch(es), so losses and "
                   "accuracies cover only those",
    'ctx': "`try_gpu()` returns {}",
    'gpus_on_cpu': "`gpu(i)` is `cpu(i)` for i < {0}, and MXNet counts {0} GPU(s)",
    'bn_layer': "every `nn.BatchNorm` is gluon_bn's `HybridBatchNorm` ({})",
    'data_dir': "Fashion-MNIST is read from {}",
    'cell_timeout': "a cell still running after {:g} s is stopped",
}


def rerun_note(path, settings):
    """The saved notebook's first cell: how this copy was run, so that its outputs are read
    for what they are."""
    shown = {'ctx': parse_context(settings.ctx) if settings.ctx else None}
    changes = [f"- `--{key.replace('_', '-')} {value}`: " +
               SETTING_NOTES[key].format(shown.get(key, value))
               for key, value in dataclasses.asdict(settings).items()
               if value is not None and
               (key, value) not in (('bn_layer', 'mxnet'), ('cell_timeout', CELL_TIMEOUT))]
    text = (f"*Rerun by `gluon-bn run-chapter` from `{os.path.basename(path)}`, offline, "
            f"on {time.strftime('%Y-%m-%d')}.*")
    if changes:
        text += ("\n\nWhat the rerun changed (each change is noted again in the cells where it "
                 "took effect; the printed results reflect it):\n\n" + '\n'.join(changes))
    return text


# --- a run of several chapters ------------------------------------------------------------

def announce(settings, chapters=(), skipped=()):
    """Say once which chapters run, which files were left out and why, and what each option
    changes."""
    folders = collections.Counter(os.path.dirname(name) or '.' for _, name in chapters)
    if len(chapters) > 1:
        where = ', '.join(f"{folder} ({n})" for folder, n in folders.items())
        print(f"[run_chapter] {len(chapters)} chapters: {where}; --exclude PATTERN leaves "
              f"some out")
    for path, why in skipped:
        print(f"[run_chapter] left out {path}: {why}")
    if settings.epochs is not None:
        print(f"[run_chapter] --epochs {settings.epochs}: every epoch count a chapter gives "
              f"(num_epochs, max_epochs, epochs..., assigned or passed to a function), and any "
              f"loop over range(k) named for epochs, is {settings.epochs}")
    if settings.max_batches is not None:
        print(f"[run_chapter] --max-batches {settings.max_batches}: every pass over a data loader "
              f"stops after {settings.max_batches} batch(es); losses and accuracies cover only "
              f"those")
    if settings.gpus_on_cpu is not None:
        n = settings.gpus_on_cpu
        print(f"[run_chapter] --gpus-on-cpu {n}: gpu(i) is cpu(i) for i < {n}, and MXNet, d2lzh "
              f"and d2l count {n} GPU(s). They share this machine's CPU cores, so the chapter's "
              f"results hold but its timings show no multi-GPU speed-up")
    if settings.ctx is not None:
        print(f"[run_chapter] --ctx {settings.ctx}: the books' try_gpu() returns it")
    if settings.bn_layer == 'gluon_bn':
        print("[run_chapter] --bn-layer gluon_bn: every nn.BatchNorm a chapter builds is "
              "gluon_bn's HybridBatchNorm; its own from-scratch code stays the book's")
    elif settings.bn_layer == 'both':
        print("[run_chapter] --bn-layer both: each chapter runs with nn.BatchNorm, and a chapter "
              "that built one runs again with gluon_bn's HybridBatchNorm in its place")


def run_chapters(chapters, settings, figures='figures', notebook=None, report=None,
                 skipped=()):
    """Run each (file, name) of `chapters` (as find_chapters gives them) in a kernel of its own,
    saying what the options change first; then print the summary table and write the report
    (FILE.json or FILE.md). Figures go to figures/<chapter>/, executed notebooks to `notebook`
    (a .ipynb for one chapter, else a folder). With settings.bn_layer 'both', a chapter that
    built an MXNet batch norm runs a second time on gluon_bn's layer (its figures and notebook
    named with `.gluon_bn`). Returns the exit status: 0 if every chapter passed, 1 if one
    failed, 128 + the signal's number if Ctrl-C (130), SIGTERM or SIGHUP stopped the run (the
    table and the report are written all the same)."""
    if settings.bn_layer not in BN_LAYERS + ('both',):
        raise ValueError(f"bn_layer must be mxnet, gluon_bn or both, got {settings.bn_layer!r}")
    announce(settings, chapters, skipped)
    both = settings.bn_layer == 'both'
    first = dataclasses.replace(settings, bn_layer='mxnet') if both else settings
    results = []

    def run(file, name, settings):
        twin = settings.bn_layer == 'gluon_bn' and both
        print(f"\n=== {name}{' [gluon_bn]' if twin else ''}", flush=True)
        suffix = '.gluon_bn' if twin else ''
        stem = os.path.splitext(name)[0] + suffix
        saved = None if not notebook else os.path.join(notebook, stem + '.ipynb') \
            if not notebook.endswith('.ipynb') else notebook[:-len('.ipynb')] + suffix + '.ipynb'
        try:
            return run_chapter(file, settings, name=name,
                               figures_dir=os.path.join(figures, stem), notebook_path=saved)
        except ChapterError as error:   # a file in a folder that cannot be read: it fails
            print(f"[run_chapter] {error}", file=sys.stderr)
            return Result(name, passed=False, seconds=0.0, cells=0, error=str(error),
                          bn_layer=settings.bn_layer)

    try:
        for file, name in chapters:
            results.append(run(file, name, first))
            if results[-1].interrupted:
                break
            if both and results[-1].batch_norms:
                twin = run(file, name, dataclasses.replace(settings, bn_layer='gluon_bn'))
                results[-1].with_gluon_bn = twin
                if twin.interrupted:
                    break
    except KeyboardInterrupt as stop:   # between chapters
        stopped = signal_name(stop)
    else:
        stopped = None
    every = results + [r.with_gluon_bn for r in results if r.with_gluon_bn]
    stopped = stopped or next((r.interrupted for r in every if r.interrupted), None)
    if stopped:
        print(f"\n[run_chapter] stopped by {stopped}: {len(chapters) - len(results)} "
              f"chapter(s) not run", file=sys.stderr)
    print('\n' + summary_table(results))
    if report:
        write = json_report if report.endswith('.json') else markdown_report
        os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)
        write_atomically(report, write(results, settings, skipped).encode('utf-8'))
        print(f"[run_chapter] report written to {report}")
    if stopped:
        return 128 + signal.Signals[stopped]
    return 0 if all(r.passed for r in every) else 1


# --- reporting -----------------------------------------------------------------------------

def _accuracy(result):
    return '-' if result is None or result.accuracy is None else f"{result.accuracy:.3f}"


def _shorten(text, width):
    return text if width is None or len(text) <= width else text[:width - 3] + '...'


def _row(result, width=None):
    """The columns of HEADER; then, for --bn-layer both, those of TWIN_HEADER."""
    row = [result.chapter, _shorten(result.outcome, width), _accuracy(result),
           '; '.join(result.skipped) or '-', str(len(result.figures)),
           f"{result.seconds:.0f}"]
    twin = result.with_gluon_bn
    if twin is not None:
        row += [_shorten(twin.outcome, width), _accuracy(twin), f"{twin.seconds:.0f}"]
    elif result.batch_norms == 0:
        row += ['no nn.BatchNorm', '-', '-']
    else:
        row += ['-', '-', '-']
    return row


HEADER = ['chapter', 'result', 'test acc', 'skipped', 'figures', 'seconds']
TWIN_HEADER = ['gluon_bn: result', 'test acc', 'seconds']
LEFT = {0, 1, 3, 6}   # columns aligned left; numbers right


def _columns(results):
    both = any(r.with_gluon_bn for r in results)
    return (HEADER + TWIN_HEADER) if both else HEADER


def summary_table(results):
    """A plain-text table, one line a chapter (its result cut to RESULT_WIDTH characters; the
    report has it whole), and closing lines with the totals."""
    header = _columns(results)
    rows = [header] + [_row(r, RESULT_WIDTH)[:len(header)] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ['  '.join(cell.ljust(w) if i in LEFT else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines + totals(results))


def totals(results):
    passed = sum(r.passed for r in results)
    seconds = sum(r.seconds for r in results)
    lines = [f"{passed} of {len(results)} chapters passed in {seconds / 60:.1f} minutes "
             f"({seconds:.0f} s)"]
    twins = [r.with_gluon_bn for r in results if r.with_gluon_bn]
    if twins:
        seconds = sum(t.seconds for t in twins)
        lines.append(f"with gluon_bn's HybridBatchNorm for nn.BatchNorm: "
                     f"{sum(t.passed for t in twins)} of the {len(twins)} that build one "
                     f"passed in {seconds / 60:.1f} minutes ({seconds:.0f} s)")
    left_out = collections.Counter()
    for r in results:
        left_out.update(r.other_tabs)
    if left_out:
        lines.append(f"MXNet tab only: {sum(left_out.values())} code cells of other tabs left "
                     f"out ({_count(left_out)})")
    return lines


def markdown_report(results, settings, skipped=()):
    options = ', '.join(settings.options()) or 'none'
    header = _columns(results)
    lines = ['# run_chapter report', '', f"Options: {options}.", '',
             '| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    lines += ['| ' + ' | '.join(cell.replace('|', '\\|') for cell in _row(r)[:len(header)])
              + ' |' for r in results]
    lines += [''] + [line + '.' for line in totals(results)]
    lines += [''] + [f"Left out: `{path}`, {why}." for path, why in skipped]
    return '\n'.join(lines + [''])


def json_report(results, settings, skipped=()):
    def entry(r):
        return dict(dataclasses.asdict(r), outcome=r.outcome,
                    with_gluon_bn=entry(r.with_gluon_bn) if r.with_gluon_bn else None)
    return json.dumps({'settings': dataclasses.asdict(settings),
                       'passed': sum(r.passed for r in results), 'chapters': len(results),
                       'seconds': round(sum(r.seconds for r in results), 1),
                       'results': [entry(r) for r in results],
                       'left_out': [{'path': path, 'why': why} for path, why in skipped]},
                      indent=2, ensure_ascii=False) + '\n'
