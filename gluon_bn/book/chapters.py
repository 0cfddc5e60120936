"""Rerun book chapters as Jupyter runs them, offline, and report on each.

A chapter (d2lzh's markdown source or a notebook) becomes a notebook and runs cell by cell in a
fresh IPython kernel of its own, started by nbclient in the chapter's folder, as Jupyter would:
magics, `!commands` and the display of a cell's last value are IPython's. Before the first cell
the kernel runs gluon_bn.book.rerun.setup_kernel with the runner's settings (offline data,
shortcuts).

While a chapter runs, what its cells print goes to the console, figures are saved as files, and
the notices of gluon_bn.book.rerun are collected; run_chapter() returns a Result, and the executed
notebook, outputs and figures included, can be written for Jupyter.
"""
import base64
import contextlib
import dataclasses
import json
import os
import re
import sys
import tempfile
import time

import nbformat
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from ..utils.errors import Error
from ..utils.files import write_atomically
from .rerun import NOTICE_MIME

SUFFIXES = ('.md', '.ipynb')
# d2lzh's markdown source marks the code to run as ```{.python .input} or ```{.python .input n=3}
FENCE = re.compile(r'^```\{\.python \.input[^}]*\}[ \t]*\n(.*?)^```[ \t]*$', re.S | re.M)
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
    interrupted: bool = False        # Ctrl-C: the run stops after this chapter

    @property
    def outcome(self):
        if self.passed:
            return 'passed'
        where = f"cell {self.failed_cell}" if self.failed_cell else "kernel set-up"
        return f"failed at {where}: {self.error}"


class ChapterError(Error, ValueError):
    """A chapter file that cannot be read, or holds no code."""


# --- reading -------------------------------------------------------------------------------

def read_chapter(path):
    """The chapter as a notebook: a .ipynb as it is (its old outputs cleared), a d2lzh markdown
    source split into markdown cells and code cells at its ```{.python .input} fences."""
    try:
        if path.endswith('.ipynb'):
            nb = nbformat.read(path, as_version=4)
        else:
            with open(path, encoding='utf-8') as f:
                nb = _notebook_from_markdown(f.read())
    except (OSError, UnicodeDecodeError, ValueError, KeyError) as error:
        raise ChapterError(f"cannot read {path}: {error}") from None
    for cell in nb.cells:
        if cell.cell_type == 'code':
            cell.outputs, cell.execution_count = [], None
    if not any(cell.cell_type == 'code' for cell in nb.cells):
        raise ChapterError(f"{path} has no code cells")
    return nb


def _notebook_from_markdown(text):
    cells, position = [], 0
    for fence in FENCE.finditer(text):
        prose = text[position:fence.start()].strip()
        if prose:
            cells.append(nbformat.v4.new_markdown_cell(prose))
        cells.append(nbformat.v4.new_code_cell(fence.group(1).rstrip('\n')))
        position = fence.end()
    if text[position:].strip():
        cells.append(nbformat.v4.new_markdown_cell(text[position:].strip()))
    return nbformat.v4.new_notebook(cells=cells)


def find_chapters(paths):
    """[(file, name to show)] for chapter files and folders (searched for .md and .ipynb files
    with code cells, in name order); a ChapterError for a path that is neither. Names are
    paths relative to the folder all the chapters share, so they stay apart."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            inside = []
            for folder, subfolders, files in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith('.'))
                inside += [os.path.join(folder, f) for f in sorted(files)
                           if f.endswith(SUFFIXES) and _has_code(os.path.join(folder, f))]
            if not inside:
                raise ChapterError(f"{path}: no chapter with code cells in this folder")
            found += inside
        elif os.path.isfile(path) and path.endswith(SUFFIXES):
            read_chapter(path)   # a ChapterError now, not halfway through a run
            found.append(path)
        elif os.path.exists(path):
            raise ChapterError(f"{path}: not a chapter (.md or .ipynb) or a folder of them")
        else:
            raise ChapterError(f"{path}: no such file or folder")
    base = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in found])
    return [(file, os.path.relpath(os.path.abspath(file), base)) for file in found]


def _has_code(path):
    try:
        read_chapter(path)
        return True
    except ChapterError:
        return False


# --- running -------------------------------------------------------------------------------

class _Client(NotebookClient):
    """nbclient's executor, echoing each output to the console as it arrives."""

    def __init__(self, nb, run, **kwargs):
        super().__init__(nb, **kwargs)
        self.run = run

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None:
            self.run.show(out)
        return out


class _Run:
    """One chapter's run: the console echo, the figures and notices it collects."""

    def __init__(self, result, figures_dir, out, err):
        self.result, self.figures_dir, self.out, self.err = result, figures_dir, out, err
        self.cell = None             # the code cell running now, numbered from 1
        self.figures_in_cell = 0
        self.tty = err.isatty() if hasattr(err, 'isatty') else False

    def say(self, text):
        print(f"[run_chapter] {text}", file=self.out, flush=True)

    def execute(self, nb, code_cells, settings, folder):
        """Start a kernel in `folder`, set it up, run the code cells until one fails."""
        with tempfile.TemporaryDirectory(prefix='run_chapter-') as sockets, \
                contextlib.ExitStack() as kernel:
            # ipykernel's own spec, this interpreter (not whatever 'python3' kernel a user
            # installed); IPC sockets in a private folder: no TCP port, nothing left behind.
            km = AsyncKernelManager(kernel_name='python3',
                                    kernel_spec_manager=KernelSpecManager(kernel_dirs=[]),
                                    transport='ipc', ip=os.path.join(sockets, 'kernel'))
            client = _Client(nb, self, km=km, timeout=None, allow_errors=False,
                             resources={'metadata': {'path': folder}})
            try:
                kernel.enter_context(client.setup_kernel(env=kernel_environment(),
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
            except KeyboardInterrupt:
                client.shutdown_kernel = 'immediate'   # the cell may be busy for hours
                self.result.interrupted = True
                self.failed(cell(), "interrupted")
            else:
                self.result.passed = True

    def set_up(self, client, settings):
        """gluon_bn.book.rerun.setup_kernel in the kernel, outside the notebook and its history."""
        arguments = json.dumps(dataclasses.asdict(settings))
        cell = nbformat.v4.new_code_cell(
            "import json as _json, gluon_bn.book.rerun as _rerun\n"
            f"_rerun.setup_kernel(get_ipython(), **_json.loads({arguments!r}))\n"
            "del _json, _rerun")
        client.nb.cells.insert(0, cell)
        try:
            client.execute_cell(cell, 0, store_history=False)
        finally:
            client.nb.cells.pop(0)

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
        if kind == 'stream':
            stream = self.err if out.name == 'stderr' else self.out
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
        self.result.figures.append(path)
        self.say(f"cell {self.cell}: figure saved to {path}")


def kernel_environment():
    """The runner's environment, with this gluon_bn first on the path and matplotlib left to
    the kernel (inline, as in Jupyter) rather than to a backend set for scripts."""
    env = dict(os.environ)
    env.pop('MPLBACKEND', None)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get('PYTHONPATH')]))
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
                    cells=len(code_cells))
    run = _Run(result, figures_dir, out or sys.stdout, err or sys.stderr)
    start = time.monotonic()
    try:
        run.execute(nb, code_cells, settings, os.path.dirname(os.path.abspath(path)))
    finally:
        result.seconds = time.monotonic() - start
        if notebook_path:
            nb.metadata['gluon_bn'] = {'source': os.path.abspath(path),
                                       'settings': dataclasses.asdict(settings)}
            nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3',
                                         'language': 'python'}
            os.makedirs(os.path.dirname(os.path.abspath(notebook_path)), exist_ok=True)
            write_atomically(notebook_path, nbformat.writes(nb).encode('utf-8'))
            result.notebook = notebook_path
    if settings.epochs is not None and result.passed and \
            not any(n['kind'] == 'epochs' for n in result.notices):
        run.say(f"--epochs {settings.epochs}: nothing to change, the chapter sets no "
                f"num_epochs and has no loop over epochs")
    return result


# --- a run of several chapters ------------------------------------------------------------

def announce(settings):
    """Say once what each option changes."""
    if settings.epochs is not None:
        print(f"[run_chapter] --epochs {settings.epochs}: num_epochs, and any loop over epochs "
              f"with a fixed count, run {settings.epochs} epoch(s)")
    if settings.max_batches is not None:
        print(f"[run_chapter] --max-batches {settings.max_batches}: every pass over a data loader "
              f"stops after {settings.max_batches} batch(es); losses and accuracies cover only "
              f"those")
    if settings.gpus_on_cpu is not None:
        n = settings.gpus_on_cpu
        print(f"[run_chapter] --gpus-on-cpu {n}: mx.gpu(i) is mx.cpu(i) for i < {n}, and d2lzh "
              f"sees {n} GPU(s). They share this machine's CPU cores, so the chapter's results "
              f"hold but its timings show no multi-GPU speed-up")
    if settings.ctx is not None:
        print(f"[run_chapter] --ctx {settings.ctx}: d2lzh.try_gpu() returns it")


def run_chapters(chapters, settings, figures='figures', notebook=None, report=None):
    """Run each (file, name) of `chapters` (as find_chapters gives them) in a kernel of its own,
    saying what the options change first; then print the summary table and write the report
    (FILE.json or FILE.md). Figures go to figures/<chapter>/, executed notebooks to `notebook`
    (a .ipynb for one chapter, else a folder). Returns the exit status: 0 if every chapter
    passed, 1 if one failed, 130 if Ctrl-C stopped the run."""
    announce(settings)
    results = []
    try:
        for file, name in chapters:
            print(f"\n=== {name}", flush=True)
            stem = os.path.splitext(name)[0]
            saved = None if not notebook else notebook if notebook.endswith('.ipynb') \
                else os.path.join(notebook, stem + '.ipynb')
            results.append(run_chapter(file, settings, name=name,
                                       figures_dir=os.path.join(figures, stem),
                                       notebook_path=saved))
            if results[-1].interrupted:
                break
    except KeyboardInterrupt:
        pass
    if len(results) < len(chapters):
        print(f"\n[run_chapter] interrupted: {len(chapters) - len(results)} chapter(s) "
              f"not run", file=sys.stderr)
    print('\n' + summary_table(results))
    if report:
        write = json_report if report.endswith('.json') else markdown_report
        os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)
        write_atomically(report, write(results, settings).encode('utf-8'))
        print(f"[run_chapter] report written to {report}")
    if len(results) < len(chapters) or any(r.interrupted for r in results):
        return 130
    return 0 if all(r.passed for r in results) else 1


# --- reporting -----------------------------------------------------------------------------

def _row(result):
    return [result.chapter, result.outcome, '; '.join(result.skipped) or '-',
            str(len(result.figures)), f"{result.seconds:.0f}"]


HEADER = ['chapter', 'result', 'skipped', 'figures', 'seconds']


def summary_table(results):
    """A plain-text table, one line a chapter, and a closing line with the totals."""
    rows = [HEADER] + [_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ['  '.join(cell.ljust(w) if i < 3 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines + [totals(results)])


def totals(results):
    passed = sum(r.passed for r in results)
    seconds = sum(r.seconds for r in results)
    return (f"{passed} of {len(results)} chapters passed in {seconds / 60:.1f} minutes "
            f"({seconds:.0f} s)")


def markdown_report(results, settings):
    chosen = dataclasses.asdict(settings).items()
    options = ', '.join(f"{k.replace('_', '-')} {v}" for k, v in chosen
                        if v is not None) or 'none'
    lines = ['# run_chapter report', '', f"Options: {options}.", '',
             '| ' + ' | '.join(HEADER) + ' |', '|' + ' --- |' * len(HEADER)]
    lines += ['| ' + ' | '.join(cell.replace('|', '\\|') for cell in _row(r)) + ' |'
              for r in results]
    return '\n'.join(lines + ['', totals(results) + '.', ''])


def json_report(results, settings):
    return json.dumps({'settings': dataclasses.asdict(settings),
                       'passed': sum(r.passed for r in results), 'chapters': len(results),
                       'seconds': round(sum(r.seconds for r in results), 1),
                       'results': [dict(dataclasses.asdict(r), outcome=r.outcome)
                                   for r in results]}, indent=2, ensure_ascii=False) + '\n'
