"""What changes inside the Jupyter kernel when `gluon-bn run-chapter` reruns a chapter.

Each change is announced where it takes effect, as a notice: a display output whose plain
text a notebook shows and whose JSON (MIME type NOTICE_MIME) the runner reads.

- compat: Fashion-MNIST from local files, `set_matplotlib_formats` for d2lzh (gluon_bn.book.compat).
- `--epochs N`: every assignment to `num_epochs` is followed by one that sets it to N, and a
  loop `for epoch in range(4)` that does not read `num_epochs` runs N times (EpochsOverride).
- `--max-batches N`: each pass over a Gluon DataLoader, or a gluon_bn loader, stops after N
  batches (limit_batches).
- `--gpus-on-cpu N`: `mx.gpu(i)` is `mx.cpu(i)` for i < N, which MXNet treats as distinct
  devices, and d2lzh sees N GPUs (cpus_as_gpus).
- A `!command` whose program is not installed here, or a `%magic` IPython does not know, is
  skipped with a notice instead of failing or printing "command not found" (guard_escapes).

The shortcuts are also context managers for plain Python:

    with gluon_bn.book.rerun.limit_batches(3), gluon_bn.book.rerun.cpus_as_gpus(2):
        ...
"""
import ast
import contextlib
import re
import shlex
import shutil
import subprocess
import sys

import d2lzh
import d2lzh.utils
import mxnet as mx
from mxnet.gluon.data import dataloader

from ..train import data
from ..train.devices import parse_context
from ..utils.patch import Patches
from . import compat

NOTICE_MIME = 'application/vnd.gluon-bn.notice+json'
EPOCHS_HOOK = '__gluon_bn_epochs__'


def _print_notice(kind, text, **fields):
    print(f"[gluon_bn] {text}", file=sys.stderr)


notify = _print_notice   # replaced by setup_kernel() with one that publishes display data


# --- --max-batches -------------------------------------------------------------------------

class FirstBatches:
    """The first `n` batches of a batch sampler, drawn afresh (so reshuffled) at every pass."""

    def __init__(self, batch_sampler, n):
        self.batch_sampler, self.n = batch_sampler, n

    def __iter__(self):
        for _, batch in zip(range(self.n), self.batch_sampler):   # range first: no n+1-th draw
            yield batch

    def __len__(self):
        return min(self.n, len(self.batch_sampler))


@contextlib.contextmanager
def limit_batches(n):
    """Every Gluon DataLoader built, and every gluon_bn ArrayLoader, yields at most `n` batches
    per pass. The DataLoader's batch sampler is cut rather than its iterator, so worker
    processes prefetch only batches that will be used."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"max_batches must be a positive int, got {n!r}")
    patches = Patches()
    loader_init = dataloader.DataLoader.__init__

    def __init__(self, *args, auto_reload=False, **kwargs):
        loader_init(self, *args, auto_reload=False, **kwargs)
        self._batch_sampler = FirstBatches(self._batch_sampler, n)
        self.auto_reload = auto_reload
        if auto_reload:   # Gluon's own __init__ would have prefetched over the whole sampler
            self.refresh()

    array_iter, array_len = data.ArrayLoader.__iter__, data.ArrayLoader.__len__
    patches.set(dataloader.DataLoader, '__init__', __init__)
    patches.set(data.ArrayLoader, '__iter__',
                lambda self: (batch for _, batch in zip(range(n), array_iter(self))))
    patches.set(data.ArrayLoader, '__len__', lambda self: min(n, array_len(self)))
    try:
        yield
    finally:
        patches.undo()


# --- --gpus-on-cpu -------------------------------------------------------------------------

@contextlib.contextmanager
def cpus_as_gpus(n, ctx=None):
    """`mx.gpu(i)` gives `mx.cpu(i)` for i < n and raises MXNetError beyond; MXNet and d2lzh
    count n GPUs; d2lzh.try_gpu() gives `ctx`, or cpu(0) (the first of them)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"gpus_on_cpu must be a positive int, got {n!r}")
    patches = Patches()

    def gpu(device_id=0):
        if not 0 <= device_id < n:
            raise mx.base.MXNetError(
                f"gpu({device_id}) is not available: --gpus-on-cpu {n} stands cpu(0) to "
                f"cpu({n - 1}) in for gpu(0) to gpu({n - 1})")
        return mx.cpu(device_id)

    for module in (mx, mx.context):
        patches.set(module, 'gpu', gpu)
    patches.set(mx.context, 'num_gpus', lambda: n)
    patches.set(mx.util, 'get_gpu_count', lambda: n)
    for module in (d2lzh, d2lzh.utils):
        patches.set(module, 'try_gpu', lambda: ctx if ctx is not None else gpu(0))
        patches.set(module, 'try_all_gpus', lambda: [gpu(i) for i in range(n)])
    try:
        yield
    finally:
        patches.undo()


# --- --epochs ------------------------------------------------------------------------------

def _is_epoch_loop(node):
    """`for epoch in range(4)` or `range(1, 5)`: a loop over epochs with constant bounds."""
    call = node.iter
    return (isinstance(node.target, ast.Name) and 'epoch' in node.target.id.lower()
            and isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == 'range' and not call.keywords and 1 <= len(call.args) <= 2
            and all(isinstance(a, ast.Constant) and type(a.value) is int for a in call.args))


class EpochsOverride(ast.NodeTransformer):
    """Makes a cell train for `epochs` epochs: after every assignment to `num_epochs`, a call
    to the EPOCHS_HOOK sets it to `epochs` (and says so when it runs); a hard-coded loop over
    epochs is rewritten to run `epochs` times (and says so when the cell is compiled)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def visit_Assign(self, node):
        names = {n.id for target in node.targets for n in ast.walk(target)
                 if isinstance(n, ast.Name)}
        if 'num_epochs' not in names:
            return node
        hook = ast.parse(f'num_epochs = {EPOCHS_HOOK}(num_epochs)').body[0]
        return [node, ast.copy_location(hook, node)]

    def visit_For(self, node):
        self.generic_visit(node)
        if not _is_epoch_loop(node):
            return node
        args = node.iter.args
        start = args[0].value if len(args) == 2 else 0
        stop = args[-1].value
        loop = f"for {node.target.id} in {ast.unparse(node.iter)}"
        args[-1] = ast.copy_location(ast.Constant(start + self.epochs), args[-1])
        notify('epochs', f"line {node.lineno}: `{loop}` does not read num_epochs; it runs "
                         f"{self.epochs} epoch(s) instead of {stop - start} (--epochs)",
               line=node.lineno)
        return node


def epochs_hook(epochs):
    def override(chapter_value):
        said = ("as the chapter says" if chapter_value == epochs
                else f"the chapter says {chapter_value}")
        notify('epochs', f"num_epochs = {epochs} ({said})")
        return epochs
    return override


# --- magics and shell escapes --------------------------------------------------------------

def _program(command):
    """The program a shell command line starts with, past any VAR=value assignments."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:   # unbalanced quotes: the shell will say so itself
        words = command.split()
    words = [w for w in words if not re.match(r'[A-Za-z_][A-Za-z0-9_]*=', w)]
    return words[0] if words else ''


def _can_run(program):
    """Whether the shell finds `program`: on PATH, or a builtin such as cd or export."""
    if not program or program[0] in '({$`' or shutil.which(program):
        return True
    return subprocess.run(['/bin/sh', '-c', 'command -v -- "$1"', 'sh', program],
                          capture_output=True).returncode == 0


def guard_escapes(shell):
    """Skip, with a notice naming the line, a `!command` whose program the shell cannot find
    and a `%magic` or `%%magic` IPython does not know; everything else runs as IPython runs it.
    IPython has already decided what is an escape (its input transformers), so a line such as
    `% (epoch + 1, loss)` continuing a print is never mistaken for one."""
    cell = {'source': '', 'named': set()}   # the running cell, and the lines already named
    shell.events.register('pre_run_cell',
                          lambda info: cell.update(source=info.raw_cell, named=set()))

    def skip(escape, reason):
        number = next((i for i, text in enumerate(cell['source'].splitlines(), 1)
                       if escape in text and i not in cell['named']), None)
        cell['named'].add(number)
        where = f"line {number}: " if number else ''
        notify('skipped', f"{where}`{escape}` skipped: {reason}", line=number, escape=escape)

    def unknown_program(command):
        return not _can_run(_program(command))

    system, getoutput = shell.system, shell.getoutput
    run_line_magic, run_cell_magic = shell.run_line_magic, shell.run_cell_magic

    def escape(command):   # as the notice shows it: without a trailing shell comment
        return '!' + command.split('#')[0].strip()

    def guarded_system(command):
        if unknown_program(command):
            return skip(escape(command), f"{_program(command)} is not installed here")
        return system(command)

    def guarded_getoutput(command, *args, **kwargs):
        if unknown_program(command):
            skip(escape(command), f"{_program(command)} is not installed here")
            from IPython.utils.text import SList
            return SList()
        return getoutput(command, *args, **kwargs)

    def known(kind, name):
        find = shell.find_line_magic if kind == 'line' else shell.find_cell_magic
        return find(name) is not None or name in shell.magics_manager.lazy_magics

    def guarded_line_magic(magic_name, line, _stack_depth=1):
        if not known('line', magic_name):
            return skip(f"%{magic_name}", "IPython has no such magic here")
        return run_line_magic(magic_name, line, _stack_depth + 1)   # +1: this frame

    def guarded_cell_magic(magic_name, line, cell_body):
        if not known('cell', magic_name):
            return skip(f"%%{magic_name}", "IPython has no such cell magic here; the cell's "
                                            "body did not run")
        return run_cell_magic(magic_name, line, cell_body)

    shell.system, shell.getoutput = guarded_system, guarded_getoutput
    shell.run_line_magic, shell.run_cell_magic = guarded_line_magic, guarded_cell_magic


# --- in the kernel -------------------------------------------------------------------------

def _publish_notice(kind, text, **fields):
    from IPython.display import display
    display({'text/plain': f"[run_chapter] {text}",
             NOTICE_MIME: dict(fields, kind=kind, text=text)}, raw=True)


_kernel_patches = None


def setup_kernel(shell, epochs=None, max_batches=None, ctx=None, gpus_on_cpu=None,
                 data_dir=None):
    """Install everything the runner's options ask for in this IPython kernel, for its life."""
    global notify, _kernel_patches
    notify = _publish_notice
    ctx = parse_context(ctx) if ctx is not None else None
    # Kept for the kernel's life: a context manager that is garbage-collected runs its exit.
    stack = _kernel_patches = contextlib.ExitStack()
    stack.enter_context(compat.offline(data_dir, ctx))
    if max_batches is not None:
        stack.enter_context(limit_batches(max_batches))
    if gpus_on_cpu is not None:
        stack.enter_context(cpus_as_gpus(gpus_on_cpu, ctx))
    if epochs is not None:
        shell.user_ns[EPOCHS_HOOK] = epochs_hook(epochs)
        shell.ast_transformers.append(EpochsOverride(epochs))
    guard_escapes(shell)
