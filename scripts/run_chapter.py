"""Run a d2lzh chapter as published, offline: its code cells in order, in one namespace.

    python scripts/run_chapter.py chapter_convolutional-neural-networks/batch-norm.md
    python scripts/run_chapter.py batch-norm.ipynb --epochs 1 --data-dir ~/fashion-mnist

The chapter is the book's markdown source (code in fences opened by ```{.python .input} or
```{.python .input  n=72}) or a Jupyter notebook. gluon_bn.compat is installed, so
d2lzh.load_data_fashion_mnist reads local files; nothing else changes. Each cell's output is
printed as a notebook shows it, the value of a final expression too. IPython magics (%..., !...)
are skipped. A failing cell ends the run with its number, its first line and the traceback.
"""
import argparse
import ast
import json
import os
import re
import sys
import traceback

os.environ.setdefault('MPLBACKEND', 'Agg')   # figures go nowhere: no display here

from gluon_bn import compat  # noqa: E402
from gluon_bn.context import parse_context  # noqa: E402

FENCE = re.compile(r'^```\{\.python \.input[^}]*\}[ \t]*\n(.*?)^```', re.S | re.M)
EPOCHS_HOOK = '__run_chapter_epochs__'


def read_cells(path):
    """The chapter's code cells, as strings."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if path.endswith('.ipynb'):
        cells = json.loads(text)['cells']
        return [''.join(c['source']) for c in cells if c.get('cell_type') == 'code']
    return FENCE.findall(text)


class OverrideEpochs(ast.NodeTransformer):
    """After every assignment to num_epochs, set it to the value given on the command line."""

    def visit_Assign(self, node):
        names = {n.id for target in node.targets for n in ast.walk(target)
                 if isinstance(n, ast.Name)}
        if 'num_epochs' not in names:
            return node
        hook = ast.parse(f'num_epochs = {EPOCHS_HOOK}(num_epochs)').body[0]
        return [node, hook]


def compile_cell(source, number, epochs):
    """(body, last expression or None), with magics dropped and num_epochs overridden."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(('%', '!'))]
    tree = ast.parse('\n'.join(lines), filename=f'<cell {number}>')
    if epochs is not None:
        tree = ast.fix_missing_locations(OverrideEpochs().visit(tree))
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, f'<cell {number}>', 'exec')
    return body, (compile(last, f'<cell {number}>', 'eval') if last else None)


def epochs_hook(epochs):
    def override(chapter_value):
        if chapter_value != epochs:
            print(f"[run_chapter] num_epochs = {epochs} (the chapter says {chapter_value})")
        return epochs
    return override


def run(cells, epochs=None):
    """Execute the cells; returns the number of the failing cell, or None."""
    namespace = {'__name__': '__main__', EPOCHS_HOOK: epochs_hook(epochs)}
    for number, source in enumerate(cells, 1):
        print(f'In [{number}]:', flush=True)
        try:
            body, last = compile_cell(source, number, epochs)
            exec(body, namespace)
            if last is not None:
                value = eval(last, namespace)
                if value is not None:
                    print(repr(value))
        except BaseException:   # SystemExit and KeyboardInterrupt from a cell end the run too
            first_line = next((l for l in source.splitlines() if l.strip()), '')
            print(f'[run_chapter] cell {number} failed: {first_line.strip()}', file=sys.stderr)
            traceback.print_exc()
            return number
        sys.stdout.flush()
    return None


def context(text):
    try:
        return parse_context(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('path', help='the chapter: .md (d2lzh markdown source) or .ipynb')
    parser.add_argument('--data-dir', help='folder of the four Fashion-MNIST .gz files')
    parser.add_argument('--epochs', type=int, help="override the chapter's num_epochs")
    parser.add_argument('--ctx', type=context, help="what d2lzh.try_gpu() returns")
    args = parser.parse_args(argv)
    try:
        cells = read_cells(args.path)
    except (OSError, ValueError, KeyError) as error:
        sys.exit(f"run_chapter.py: error: cannot read {args.path}: {error}")
    if not cells:
        sys.exit(f"run_chapter.py: error: {args.path} has no code cells")
    with compat.offline(args.data_dir, args.ctx):
        failed = run(cells, args.epochs)
    if failed is not None:
        sys.exit(1)


if __name__ == '__main__':
    main()
