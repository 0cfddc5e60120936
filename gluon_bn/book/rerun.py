"""What changes inside the Jupyter kernel when `gluon-bn run-chapter` reruns a chapter.

Each change is announced where it takes effect (once per cell), as a notice: a display output
whose plain text a notebook shows and whose JSON (MIME type NOTICE_MIME) the runner reads.

- compat: Fashion-MNIST from local files, `set_matplotlib_formats` for d2lzh (gluon_bn.book.compat).
- `--epochs N` (EpochsOverride): every epoch count the chapter gives (an assignment to
  `num_epochs`, `max_epochs`, `epochs`, ...; an argument, keyword or positional or left to its
  default, of a function or class the chapter or the book's package defines with such a
  parameter) becomes N, and a loop `for epoch in range(4)` with fixed bounds runs N times.
- `--max-batches N`: each pass over a Gluon DataLoader, or a gluon_bn loader, stops after N
  batches (limit_batches). `len(loader)` still counts all of them: the books divide it by 5 to
  place their progress plots.
- `--gpus-on-cpu N`: `mx.gpu(i)` and `npx.gpu(i)` are `mx.cpu(i)` for i < N, which MXNet treats
  as distinct devices, and MXNet, d2lzh and d2l count N GPUs (cpus_as_gpus).
- `--ctx C`: the books' `try_gpu()` returns C (try_gpu_returns).
- `--bn-layer gluon_bn`: every `nn.BatchNorm` the chapter builds is gluon_bn's HybridBatchNorm
  (gluon_bn_batch_norm); the chapter's own from-scratch layers stay the book's.
- `--epochs` or `--max-batches`: the books' asserts on a loss or an accuracy (d2l's train_ch3
  checks `train_loss < 0.5`), which training cut short cannot pass, say that they failed
  instead of stopping the chapter (soften_result_checks); other asserts stay.
- A `!command` whose program is not installed here, or a `%magic` IPython does not know, is
  skipped with a notice instead of failing or printing "command not found" (guard_escapes).

The shortcuts are also context managers for plain Python:

    with gluon_bn.book.rerun.limit_batches(3), gluon_bn.book.rerun.cpus_as_gpus(2):
        ...
"""
import ast
import contextlib
import functools
import inspect
import re
import shlex
import shutil
import subprocess
import sys
import threading

import mxnet as mx
from mxnet import npx
from mxnet.gluon.data import dataloader
from mxnet.gluon.nn import basic_layers

from ..nn.hybrid import HybridBatchNorm
from ..train import data
from ..train.devices import parse_context
from ..utils.patch import Patches
from . import compat

NOTICE_MIME = 'application/vnd.gluon-bn.notice+json'
HOOK = '__gluon_bn_rerun__'   # the name under which a kernel's cells reach this module
# The books' own packages, patched when a chapter imports them: d2lzh (first edition) and d2l's
# MXNet module (second edition and the English book).
BOOK_PACKAGES = ('d2lzh', 'd2l.mxnet')
BN_LAYERS = ('mxnet', 'gluon_bn')

# What the kernel saw, for the runner (stats()); and the notices said in the running cell.
_seen = {'batch_norms': 0, 'epoch_counts': 0}
_said = set()


def _print_notice(kind, text, **fields):
    print(f"[gluon_bn] {text}", file=sys.stderr)


def _publish_notice(kind, text, **fields):
    from IPython.display import display
    display({'text/plain': f"[run_chapter] {text}",
             NOTICE_MIME: dict(fields, kind=kind, text=text)}, raw=True)


_emit = _print_notice   # setup_kernel() publishes display data instead


def notify(kind, text, once=None, **fields):
    """Announce a change; with `once`, only the first time in the running cell (in plain
    Python, outside a kernel: the first time at all)."""
    if once is not None:
        if once in _said:
            return
        _said.add(once)
    _emit(kind, text, **fields)


def stats():
    """What the chapter did that the runner reports: MXNet batch-norm layers built, epoch
    counts --epochs saw."""
    return dict(_seen)


# --- --max-batches -------------------------------------------------------------------------

class FirstBatches:
    """The first `n` batches of a batch sampler, drawn afresh (so reshuffled) at every pass.
    Its length stays the sampler's: code that places progress at `i / len(loader)` (or divides
    len(loader) by 5, as the books do) keeps working."""

    def __init__(self, batch_sampler, n):
        self.batch_sampler, self.n = batch_sampler, n

    def __iter__(self):
        for _, batch in zip(range(self.n), self.batch_sampler):   # range first: no n+1-th draw
            yield batch

    def __len__(self):
        return len(self.batch_sampler)


@contextlib.contextmanager
def limit_batches(n):
    """Every Gluon DataLoader built, and every gluon_bn ArrayLoader, yields at most `n` batches
    per pass (len() still counts them all). The DataLoader's batch sampler is cut rather than
    its iterator, so worker processes prefetch only batches that will be used."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"max_batches must be a positive int, got {n!r}")
    patches = Patches()
    loader_init = dataloader.DataLoader.__init__

    def say(full):
        notify('max-batches', f"--max-batches {n}: every pass over the data loaders built "
                              f"here stops after {n} batch(es) ({min(n, full)} of {full} for the "
                              f"first)",
               once='max-batches')

    def __init__(self, *args, auto_reload=False, **kwargs):
        loader_init(self, *args, auto_reload=False, **kwargs)
        self._batch_sampler = FirstBatches(self._batch_sampler, n)
        self.auto_reload = auto_reload
        if auto_reload:   # Gluon's own __init__ would have prefetched over the whole sampler
            self.refresh()
        say(len(self._batch_sampler))

    array_init, array_iter = data.ArrayLoader.__init__, data.ArrayLoader.__iter__

    def array_loader_init(self, *args, **kwargs):
        array_init(self, *args, **kwargs)
        say(len(self))

    patches.set(dataloader.DataLoader, '__init__', __init__)
    patches.set(data.ArrayLoader, '__init__', array_loader_init)
    patches.set(data.ArrayLoader, '__iter__',
                lambda self: (batch for _, batch in zip(range(n), array_iter(self))))
    try:
        yield
    finally:
        patches.undo()


# --- --gpus-on-cpu and --ctx ---------------------------------------------------------------

@contextlib.contextmanager
def cpus_as_gpus(n):
    """`mx.gpu(i)` and `npx.gpu(i)` give `mx.cpu(i)` for i < n and raise MXNetError beyond;
    MXNet counts n GPUs, and so do the books' try_gpu and try_all_gpus, which ask it."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"gpus_on_cpu must be a positive int, got {n!r}")
    patches = Patches()

    def say():
        notify('gpus-on-cpu', f"--gpus-on-cpu {n}: gpu(i) is cpu(i) here, and MXNet counts "
                              f"{n} GPU(s)", once='gpus-on-cpu')

    def gpu(device_id=0):
        if not 0 <= device_id < n:
            raise mx.base.MXNetError(
                f"gpu({device_id}) is not available: --gpus-on-cpu {n} stands cpu(0) to "
                f"cpu({n - 1}) in for gpu(0) to gpu({n - 1})")
        say()
        return mx.cpu(device_id)

    def num_gpus():
        say()
        return n

    for module in (mx, mx.context, npx):
        patches.set(module, 'gpu', gpu)
    for module in (mx.context, npx):
        patches.set(module, 'num_gpus', num_gpus)
    patches.set(mx.util, 'get_gpu_count', num_gpus)
    try:
        yield
    finally:
        patches.undo()


@contextlib.contextmanager
def try_gpu_returns(ctx):
    """The books' `try_gpu()` (d2lzh's, and d2l's `try_gpu(0)`) returns `ctx` (an MXNet context
    or its name: 'cpu', 'gpu:1'), from whenever the chapter imports them."""
    name, ctx = (ctx, parse_context(ctx)) if isinstance(ctx, str) else (str(ctx), ctx)
    patches = Patches()

    def say():
        notify('ctx', f"--ctx {name}: try_gpu() gives {ctx}", once='ctx')

    def d2lzh_try_gpu():
        say()
        return ctx

    def patch_d2lzh(package):
        for module in (package, sys.modules.get('d2lzh.utils')):
            if module is not None and hasattr(module, 'try_gpu'):
                patches.set(module, 'try_gpu', d2lzh_try_gpu)

    def patch_d2l(module):
        book_try_gpu = module.try_gpu

        @functools.wraps(book_try_gpu)
        def try_gpu(i=0):
            if i != 0:
                return book_try_gpu(i)
            say()
            return ctx
        patches.set(module, 'try_gpu', try_gpu)

    patches.when_imported('d2lzh', patch_d2lzh)
    patches.when_imported('d2l.mxnet', patch_d2l)
    try:
        yield
    finally:
        patches.undo()


# --- --bn-layer ----------------------------------------------------------------------------

@contextlib.contextmanager
def counting_batch_norms(bn_layer='mxnet'):
    """Counts the MXNet batch-norm layers built (stats()); with bn_layer 'gluon_bn', every
    `nn.BatchNorm` built is gluon_bn's HybridBatchNorm (a subclass of it, taking the same
    arguments), announced in each cell that builds one."""
    if bn_layer not in BN_LAYERS:
        raise ValueError(f"bn_layer must be one of {', '.join(BN_LAYERS)}, got {bn_layer!r}")
    patches = Patches()
    init = basic_layers._BatchNorm.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        _seen['batch_norms'] += 1
        if bn_layer == 'gluon_bn' and type(self) is HybridBatchNorm:
            notify('bn-layer', "--bn-layer gluon_bn: nn.BatchNorm is gluon_bn's "
                               "HybridBatchNorm here", once='bn-layer')

    patches.set(basic_layers._BatchNorm, '__init__', __init__)
    if bn_layer == 'gluon_bn':
        patches.set(mx.gluon.nn, 'BatchNorm', HybridBatchNorm)
    try:
        yield
    finally:
        patches.undo()


# --- --epochs ------------------------------------------------------------------------------

# Names the books give an epoch count: num_epochs, max_epochs, epochs, n_epochs, ...
EPOCH_COUNT = re.compile(r'(?:num|max|n|total)_?epochs?|epochs')


def is_epoch_count(name):
    return EPOCH_COUNT.fullmatch(name) is not None


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_epoch_loop(node):
    """`for epoch in range(4)` or `range(1, 5)`: a loop over epochs with constant bounds."""
    call = node.iter
    return (isinstance(node.target, ast.Name) and 'epoch' in node.target.id.lower()
            and isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == 'range' and not call.keywords and 1 <= len(call.args) <= 2
            and all(isinstance(a, ast.Constant) and type(a.value) is int for a in call.args))


def _epoch_parameters(arguments):
    every = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
    return [a.arg for a in every if is_epoch_count(a.arg)]


class EpochsOverride(ast.NodeTransformer):
    """Makes a cell train for `epochs` epochs:
    - after every assignment to an epoch count (`num_epochs = 10`, `lr, num_epochs = 0.1, 5`),
      the kernel's hook sets it to `epochs` and says so;
    - a function (or method) with an epoch-count parameter is decorated by the hook, which
      sets that argument to `epochs` at each call, however it was given (positionally, by
      keyword, or left to its default), and says so when that changes it;
    - a hard-coded loop over epochs is rewritten to run `epochs` times (said when the cell is
      compiled)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def _assigned(self, node, targets):
        names = sorted({n.id for target in targets for n in ast.walk(target)
                        if isinstance(n, ast.Name) and is_epoch_count(n.id)})
        hooks = [ast.parse(f'{name} = {HOOK}.assigned({name!r}, {name})').body[0]
                 for name in names]
        return [node] + [ast.copy_location(hook, node) for hook in hooks]

    def visit_Assign(self, node):
        return self._assigned(node, node.targets)

    def visit_AnnAssign(self, node):
        return self._assigned(node, [node.target]) if node.value is not None else node

    def visit_FunctionDef(self, node):
        self.generic_visit(node)
        names = _epoch_parameters(node.args)
        if names:
            decorator = ast.parse(f'{HOOK}.parameters(*{names!r})', mode='eval').body
            node.decorator_list.append(ast.copy_location(decorator, node))
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_For(self, node):
        self.generic_visit(node)
        if not _is_epoch_loop(node):
            return node
        args = node.iter.args
        start = args[0].value if len(args) == 2 else 0
        stop = args[-1].value
        loop = f"for {node.target.id} in {ast.unparse(node.iter)}"
        args[-1] = ast.copy_location(ast.Constant(start + self.epochs), args[-1])
        _seen['epoch_counts'] += 1
        notify('epochs', f"line {node.lineno}: `{loop}` does not read an epoch count; it runs "
                         f"{self.epochs} epoch(s) instead of {stop - start} (--epochs)",
               line=node.lineno)
        return node


class EpochsHook:
    """What EpochsOverride's rewritten cells call (the kernel's HOOK); also wraps the functions
    and classes of the books' packages that take an epoch count."""

    def __init__(self, epochs):
        self.epochs = epochs
        self._depth = threading.local()

    def assigned(self, name, value):
        if not _is_count(value):   # `epochs = range(...)`: not a count
            return value
        _seen['epoch_counts'] += 1
        said = "as the chapter says" if value == self.epochs else f"the chapter says {value}"
        notify('epochs', f"{name} = {self.epochs} ({said})")
        return self.epochs

    def parameters(self, *names):
        """A decorator setting the arguments `names` to `epochs`; said by the outermost call
        that changes one (d2l.train_ch6 called by a chapter's function stays quiet)."""
        def decorate(function):
            try:
                signature = inspect.signature(function)
            except (TypeError, ValueError):
                return function

            @functools.wraps(function)
            def wrapper(*args, **kwargs):
                try:
                    bound = signature.bind(*args, **kwargs)
                except TypeError:   # the function's own error, as the chapter would get it
                    return function(*args, **kwargs)
                bound.apply_defaults()
                changed = []
                for name in names:
                    value = bound.arguments.get(name)
                    if _is_count(value):
                        _seen['epoch_counts'] += 1
                        if value != self.epochs:
                            changed.append(f"{name}={value}")
                            bound.arguments[name] = self.epochs
                depth = getattr(self._depth, 'n', 0)
                if changed and depth == 0:
                    notify('epochs', f"{function.__qualname__}() runs {self.epochs} epoch(s), "
                                     f"not {', '.join(changed)} (--epochs)")
                self._depth.n = depth + 1
                try:
                    return function(*bound.args, **bound.kwargs)
                finally:
                    self._depth.n = depth
            return wrapper
        return decorate

    def wrap_package(self, patches, package):
        """Decorate, in `package` and its submodules already imported, every function and
        every class's __init__ defined there that takes an epoch count."""
        prefix = package.__name__.split('.')[0]
        modules = [m for name, m in list(sys.modules.items())
                   if m is not None and (name == prefix or name.startswith(prefix + '.'))]
        wrappers, done = {}, set()   # one wrapper a function, set wherever it is named
        for module in modules:
            for name, thing in list(vars(module).items()):
                if not getattr(thing, '__module__', '').startswith(prefix):
                    continue
                if inspect.isfunction(thing):
                    owner, target = module, thing
                elif inspect.isclass(thing) and inspect.isfunction(vars(thing).get('__init__')):
                    owner, name, target = thing, '__init__', vars(thing)['__init__']
                else:
                    continue
                epochs = [p for p in inspect.signature(target).parameters if is_epoch_count(p)]
                if not epochs or (id(owner), name) in done:
                    continue
                done.add((id(owner), name))
                if id(target) not in wrappers:
                    wrappers[id(target)] = self.parameters(*epochs)(target)
                patches.set(owner, name, wrappers[id(target)])


@contextlib.contextmanager
def override_epochs(shell, epochs):
    """--epochs in an IPython shell: its cells rewritten, the books' packages wrapped."""
    hook = EpochsHook(epochs)
    patches = Patches()
    shell.user_ns[HOOK] = hook
    transformer = EpochsOverride(epochs)
    shell.ast_transformers.append(transformer)
    for package in BOOK_PACKAGES:
        patches.when_imported(package, lambda module: hook.wrap_package(patches, module))
    try:
        yield
    finally:
        patches.undo()
        shell.ast_transformers.remove(transformer)
        shell.user_ns.pop(HOOK, None)


# --- the books' checks of their training, when it is cut short ---------------------------

# An assert on a name like these checks how well the training went (d2l's train_ch3:
# `assert train_loss < 0.5, train_loss`); training cut short by --epochs or --max-batches
# cannot pass it.
RESULT_NAME = re.compile(r'loss|acc', re.I)
# How code in the books' packages reaches this module (cells use HOOK in their namespace).
MODULE_HOOK = "__import__('gluon_bn.book.rerun', fromlist=['checks']).checks"
checks = None   # the kernel's ResultChecks, once soften_result_checks() installed it


class ResultChecks(ast.NodeTransformer):
    """Turns `assert <test on a loss or an accuracy>, message` into a call that says, when the
    test fails, that it does (with the message's value) instead of raising: training cut short
    on purpose cannot meet the book's bar, and the rest of the chapter should still run.
    Every other assert stays as it is."""

    def __init__(self, hook, where=None):
        super().__init__()
        self.hook, self.where = hook, where

    def visit_Assert(self, node):
        names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)} | \
            {n.attr for n in ast.walk(node.test) if isinstance(n, ast.Attribute)}
        if not any(RESULT_NAME.search(name) for name in names):
            return node
        call = ast.parse(f"{self.hook}.failed({ast.unparse(node.test)!r}, None, "
                         f"{self.where!r}, {node.lineno})", mode='eval').body
        if node.msg is not None:
            call.args[1] = node.msg
        check = ast.If(test=ast.UnaryOp(op=ast.Not(), operand=node.test),
                       body=[ast.Expr(value=call)], orelse=[])
        return ast.copy_location(check, node)


class Checks:
    """What ResultChecks' rewritten asserts call."""

    def __init__(self, cut):
        self.cut = cut   # '--epochs 1, --max-batches 3'

    def failed(self, test, value, where, line):
        shown = '' if value is None else f" ({value})"
        at = f"{where}, line {line}" if where else f"line {line}"
        notify('check', f"{at}: the book's check `assert {test}` does not "
                        f"hold{shown}: expected when {self.cut} cut the training short; the "
                        f"chapter goes on")


@contextlib.contextmanager
def soften_result_checks(shell, cut):
    """The books' asserts on a loss or an accuracy, in the chapter's cells and in the books'
    packages (d2l's train_ch3), say that they failed instead of stopping the chapter."""
    global checks
    checks = Checks(cut)
    patches = Patches()
    shell.user_ns[HOOK + 'checks'] = checks
    cells = ResultChecks(HOOK + 'checks')
    shell.ast_transformers.append(cells)
    for package in BOOK_PACKAGES:
        patches.when_imported(package, transform=ResultChecks(MODULE_HOOK, package).visit)
    try:
        yield
    finally:
        patches.undo()
        shell.ast_transformers.remove(cells)
        shell.user_ns.pop(HOOK + 'checks', None)
        checks = None


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

_kernel_patches = None


def setup_kernel(shell, epochs=None, max_batches=None, ctx=None, gpus_on_cpu=None,
                 data_dir=None, bn_layer='mxnet'):
    """Install everything the runner's options ask for in this IPython kernel, for its life."""
    global _emit, _kernel_patches
    _emit = _publish_notice
    shell.events.register('pre_run_cell', lambda info: _said.clear())
    # Kept for the kernel's life: a context manager that is garbage-collected runs its exit.
    stack = _kernel_patches = contextlib.ExitStack()
    stack.enter_context(compat.offline(data_dir))
    stack.enter_context(counting_batch_norms(bn_layer))
    if max_batches is not None:
        stack.enter_context(limit_batches(max_batches))
    if gpus_on_cpu is not None:
        stack.enter_context(cpus_as_gpus(gpus_on_cpu))
    if ctx is not None:
        stack.enter_context(try_gpu_returns(ctx))
    if epochs is not None:
        stack.enter_context(override_epochs(shell, epochs))
    cut = [f"--{name} {value}" for name, value in (('epochs', epochs),
                                                   ('max-batches', max_batches))
           if value is not None]
    if cut:
        stack.enter_context(soften_result_checks(shell, ', '.join(cut)))
    guard_escapes(shell)
