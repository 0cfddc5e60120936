"""gluon-bn run-chapter on small chapter files written here, each showing one mechanism.

The chapters of one folder run once (a Jupyter kernel each), and each test reads what that run
printed, reported and saved. The rest runs in-process: options, compat, the shortcuts.
"""
import ast
import json
import os
import re

import d2lzh
import mxnet as mx
import nbformat
import numpy as np
import pytest
from IPython import display
from mxnet import gluon, nd, npx
from mxnet.gluon.data.vision import datasets

from gluon_bn.book import chapters, compat, rerun
from gluon_bn.train import data
from tests.helpers import HAS_DATA, checkout_env, gluon_bn

# One chapter shows every mechanism, a cell or two each (each chapter costs a kernel).
MECHANISMS = [
    # 1-5: the print's second line starts with %: Python, not a magic. A notebook runs %%time
    # and !echo; it cannot run a program that is not installed or a magic nobody defined.
    "%matplotlib inline\nimport numpy as np\nloss, acc = 0.25, 0.5",
    "print('loss %.2f, acc %.3f'\n      % (loss, acc))\n"
    "!no-such-program-gluon-bn --version\n%no_such_magic now\n!echo shell works\n"
    "!cd / && LANG=C echo a builtin works  # cd is no program on PATH\n"
    "!no-such-program-gluon-bn again",
    "%%time\ntotal = sum(range(10))\nprint('total', total)",
    "np.uint8",
    "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2]);",
    # 6-7: epochs
    "num_epochs, lr = 5, 0.1\nseen = []\n\ndef train():\n    for epoch in range(4):\n"
    "        seen.append(epoch)",
    "train()\nprint('num_epochs', num_epochs, 'loop ran', len(seen))",
    # 8-9: GPUs on the CPU
    "import d2lzh as d2l\nimport mxnet as mx\nfrom mxnet import nd\n"
    "x = nd.ones(3, ctx=mx.gpu(1))\n"
    "print(x.context, mx.context.num_gpus(), d2l.try_all_gpus(), d2l.try_gpu())",
    "try:\n    mx.gpu(2)\nexcept mx.base.MXNetError as error:\n    print('refused:', error)",
    # 10: batches
    "from mxnet import gluon, nd\nfrom gluon_bn.train.data import ArrayLoader\n"
    "dataset = gluon.data.ArrayDataset(nd.arange(100), nd.arange(100))\n"
    "for workers in (0, 2):\n"
    "    loader = gluon.data.DataLoader(dataset, batch_size=10, shuffle=True,\n"
    "                                   num_workers=workers)\n"
    "    print('workers', workers, len(loader), [len(list(loader)) for _ in range(2)])\n"
    "ours = ArrayLoader(np.zeros((100, 28, 28), np.uint8), np.zeros(100, np.int32), 10, True)\n"
    "print('ArrayLoader', len(ours), len(list(ours)))",
    # 11: a figure in d2lzh's SVG
    "d2l.use_svg_display()\nd2l.set_figsize((3, 2))\nd2l.plt.plot([1, 2, 3])\n"
    "d2l.plt.title('a figure');",
    # 12: a figure redrawn as d2l's Animator does, clearing the cell's output each time
    "from IPython import display\nloader = gluon.data.DataLoader(dataset, batch_size=10)\n"
    "for i in range(3):\n    fig = d2l.plt.figure()\n    d2l.plt.title(f'draw {i}')\n"
    "    display.display(fig)\n    d2l.plt.close(fig)\n    display.clear_output(wait=True)\n"
    "print('redrawn')"]
CHAPTERS = {
    'mechanisms.md': MECHANISMS,
    'fails.md': ["x = 1", "y = x\nraise ValueError('boom: ' + 'a long story ' * 20)",
                 "print('never')"],
    'dies.md': ["print('alive')", "import os\nos._exit(3)", "print('never')"],
}
# The second edition: the book's own d2l beside its chapters, NumPy mode, tabs; its epoch
# counts as the books pass them (word2vec's train(net, 0.005, 5), minibatch-sgd's defaults,
# d2l.train_ch6's num_epochs, the English book's Trainer(max_epochs=...)).
OWN_D2L = """from mxnet import npx
WHERE = 'the book folder'

def try_gpu(i=0):
    return npx.gpu(i) if npx.num_gpus() >= i + 1 else npx.cpu()

def try_all_gpus():
    devices = [npx.gpu(i) for i in range(npx.num_gpus())]
    return devices if devices else [npx.cpu()]

def train_ch6(net, train_iter, test_iter, num_epochs, lr, device):
    return list(range(num_epochs))

def train_ch3(train_acc):
    assert train_acc > 0.7, train_acc   # the book's bar, which cut training cannot reach
    assert train_acc <= 1, 'an accuracy'
    return 'went on'

class Trainer:
    def __init__(self, max_epochs, num_gpus=0):
        self.max_epochs = max_epochs

    def fit(self):
        return list(range(self.max_epochs))
"""
SECOND_EDITION = [
    "from d2l import mxnet as d2l\nfrom mxnet import np, npx\nnpx.set_np()\n"
    "print('d2l from', d2l.WHERE)\nx = np.ones(3, ctx=npx.gpu(1))\n"
    "print(x.ctx, npx.num_gpus(), d2l.try_gpu(), d2l.try_gpu(1), d2l.try_all_gpus())",
    "#@tab pytorch\nprint('pytorch ran')",
    "#@tab all\nprint('train_ch6 ran', len(d2l.train_ch6(None, None, None, 10, 0.1, None)))\n"
    "print('Trainer ran', len(d2l.Trainer(max_epochs=10).fit()))\n"
    "print('train_ch3', d2l.train_ch3(0.25))\nloss = 2.5\nassert loss < 0.5, 'too high'\n"
    "print('the chapter went on')",
    "def train(net, lr, num_epochs):\n    return list(range(num_epochs))\n\n"
    "def train_sgd(lr, batch_size, num_epochs=6):\n    return train(None, lr, num_epochs)\n\n"
    "print('train ran', len(train(None, 0.005, 5)), 'train_sgd ran', len(train_sgd(1, 1500)))"]
# The English book marks tabs with d2lbook's %%tab cell magic, selected by tab.interact_select.
ENGLISH = [
    "%load_ext d2lbook.tab\ntab.interact_select(['mxnet', 'pytorch'])",
    "%%tab mxnet\nprint('mxnet tab ran')",
    "%%tab pytorch\nprint('pytorch ran')",
    "%%tab all\nif tab.selected('mxnet'):\n    print('mxnet branch ran')\n"
    "if tab.selected('pytorch'):\n    print('pytorch ran')",
    "#@tab mxnet, pytorch\nprint('listed tab ran')"]
PICTURE = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'

# fashion-mnist.md and alexnet.md build Gluon's data set themselves, with or without a root.
FASHION = ["from mxnet.gluon import data as gdata\nimport d2lzh as d2l\n"
           "test = gdata.vision.FashionMNIST(train=False)\n"
           "train = gdata.vision.FashionMNIST(root={root!r}, train=True)\n"
           "print(len(train), len(test), test[0][0].shape, test[0][1])",
           "train_iter, test_iter = d2l.load_data_fashion_mnist(256)\n"
           "X, y = next(iter(test_iter))\n"
           "print(X.shape, float(X.max().asscalar()), len(train_iter), sum(1 for _ in test_iter))"]


def markdown(cells, prose='Some prose.'):
    """A chapter in the books' markdown source format, prose between the code fences."""
    fences = [f"```{{.python .input  n={i}}}\n{cell}\n```" for i, cell in enumerate(cells, 70)]
    fences[0] = fences[0].replace('  n=70', '')   # the other fence style: {.python .input}
    return f'# A chapter\n\n{prose}\n\n' + '\n\nMore prose.\n\n'.join(fences) + '\n'


def notebook(cells):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('# A chapter')] +
                                  [nbformat.v4.new_code_cell(cell) for cell in cells])
    return nbformat.writes(nb)


@pytest.fixture(scope='module')
def book(tmp_path_factory):
    """The chapters above in one folder (one as a notebook), run with every option."""
    root = tmp_path_factory.mktemp('book')
    folder = root / 'chapters'
    (folder / 'd2l').mkdir(parents=True)
    (folder / 'd2l' / '__init__.py').write_text('')
    (folder / 'd2l' / 'mxnet.py').write_text(OWN_D2L)
    (root / 'img').mkdir()
    (root / 'img' / 'pic.svg').write_text(PICTURE)
    for name, cells in CHAPTERS.items():
        (folder / name).write_text(markdown(cells), encoding='utf-8')
    (folder / 'mechanisms.md').write_text(
        markdown(MECHANISMS, '![a picture](../img/pic.svg) and <img src="../img/pic.svg">, '
                             '![not there](../img/none.svg)'), encoding='utf-8')
    (folder / 'second-edition.md').write_text(markdown(SECOND_EDITION), encoding='utf-8')
    (folder / 'english.md').write_text(
        markdown(ENGLISH, ':begin_tab:`pytorch`\nPyTorch prose.\n:end_tab:'), encoding='utf-8')
    (folder / 'contrib').mkdir()
    (folder / 'contrib' / 'left-out.md').write_text(markdown(["print('contrib ran')"]))
    (folder / 'notebook.ipynb').write_text(
        notebook(["6 * 7", "print('epoch 1, test acc 0.250')\nprint('test acc 0.375')"]),
        encoding='utf-8')
    (folder / 'prose-only.md').write_text('# no code here\n', encoding='utf-8')
    if HAS_DATA:
        cells = [FASHION[0].format(root=str(root / 'elsewhere' / 'fashion-mnist')), FASHION[1]]
        (folder / 'fashion.md').write_text(markdown(cells), encoding='utf-8')
    out = root / 'out'
    run = gluon_bn('run-chapter', folder, '--epochs', 2, '--max-batches', 3, '--gpus-on-cpu',
                   2, '--ctx', 'cpu:1', '--exclude', 'contrib', '--report', out / 'report.json',
                   '--notebook', out / 'notebooks',
                   env=checkout_env(MXNET_HOME=str(root / 'mxnet-home')))
    assert (out / 'report.json').is_file(), run.stderr
    report = json.loads((out / 'report.json').read_text())
    return run, {r['chapter']: r for r in report['results']}, out


def chapter_output(run, name):
    """What the run printed for one chapter."""
    return run.stdout.split(f"=== {name}\n")[1].split('\n=== ')[0]


@pytest.mark.slow
def test_every_chapter_runs_and_the_summary_says_how_each_went(book):
    run, results, _ = book
    assert run.returncode == 1, run.stderr   # fails.md and dies.md fail
    written = list(CHAPTERS) + ['notebook.ipynb', 'second-edition.md', 'english.md'] + \
        (['fashion.md'] if HAS_DATA else [])
    assert sorted(results) == sorted(written)   # not prose-only.md, nor contrib/ (--exclude)
    assert f"{len(written)} chapters: . ({len(written)}); --exclude PATTERN" in run.stdout
    assert {name for name, r in results.items() if r['passed']} == \
        set(results) - {'fails.md', 'dies.md'}
    story = 'ValueError: boom: ' + 'a long story ' * 20
    assert results['fails.md']['outcome'].rstrip() == f'failed at cell 2: {story}'.rstrip()
    assert results['fails.md']['failed_source'] == 'y = x'
    fails = chapter_output(run, 'fails.md')
    assert 'In [2]:' in fails and 'In [3]:' not in fails and 'never' not in fails
    assert 'ValueError: boom' in run.stderr and 'cell 2 failed: y = x' in run.stderr
    table = run.stdout[run.stdout.index('\nchapter '):]
    line = next(line for line in table.splitlines() if line.startswith('fails.md'))
    assert 'failed at cell 2: ValueError: boom: a long story' in line and '...' in line
    assert 'a long story ' * 4 not in table   # the report has it whole
    assert f'{len(written) - 2} of {len(written)} chapters passed' in table
    assert re.search(r'\nnotebook.ipynb +passed +0.375 ', table)   # the last test accuracy
    assert results['notebook.ipynb']['accuracy'] == 0.375
    assert results['mechanisms.md']['accuracy'] is None


@pytest.mark.slow
def test_a_kernel_that_dies_fails_its_chapter_and_the_run_goes_on(book):
    run, results, _ = book
    assert results['dies.md']['outcome'] == 'failed at cell 2: the kernel died'
    text = chapter_output(run, 'dies.md')
    assert 'alive' in text and 'never' not in text
    assert 'passed' == results['mechanisms.md']['outcome']   # the next chapter ran


@pytest.mark.slow
def test_cells_run_as_a_notebook_runs_them(book):
    run, results, _ = book
    text = chapter_output(run, 'mechanisms.md')
    assert 'loss 0.25, acc 0.500\n' in text            # the continuation line beginning with %
    assert 'shell works' in text and 'total 45\n' in text and 'Wall time' in text
    assert 'Out[4]: numpy.uint8\n' in text             # IPython's display, not repr()
    assert 'Out[1]: 42' in chapter_output(run, 'notebook.ipynb')


@pytest.mark.slow
def test_escapes_that_cannot_run_here_are_skipped_and_named_by_line(book):
    run, results, _ = book
    assert results['mechanisms.md']['skipped'] == [
        'cell 2, line 3: `!no-such-program-gluon-bn --version`',
        'cell 2, line 4: `%no_such_magic`', 'cell 2, line 7: `!no-such-program-gluon-bn again`']
    text = chapter_output(run, 'mechanisms.md')
    assert ('[run_chapter] cell 2, line 3: `!no-such-program-gluon-bn --version` skipped: '
            'no-such-program-gluon-bn is not installed here') in text
    assert 'a builtin works' in text and 'not found' not in text


@pytest.mark.slow
def test_epochs_override_num_epochs_and_hard_coded_loops(book):
    run, results, _ = book
    text = chapter_output(run, 'mechanisms.md')
    assert 'num_epochs 2 loop ran 2\n' in text
    assert ('cell 6, line 5: `for epoch in range(4)` does not read an epoch count; it runs 2 '
            'epoch(s) instead of 4 (--epochs)') in text
    assert 'cell 6: num_epochs = 2 (the chapter says 5)' in text
    assert run.stdout.count('--epochs 2: every epoch count a chapter gives') == 1
    assert '--epochs 2: the chapter gave no epoch count that --epochs reaches' in \
        chapter_output(run, 'notebook.ipynb')
    assert 'no epoch count' not in text


@pytest.mark.slow
def test_epochs_reach_the_arguments_of_the_books_functions_however_given(book):
    run, results, _ = book
    text = chapter_output(run, 'second-edition.md')
    assert results['second-edition.md']['passed'], text
    assert 'train_ch6 ran 2\n' in text and 'Trainer ran 2\n' in text   # the book's d2l
    assert 'train ran 2 train_sgd ran 2\n' in text         # positional; a default value
    assert 'cell 2: train_ch6() runs 2 epoch(s), not num_epochs=10 (--epochs)' in text
    assert 'cell 2: Trainer.__init__() runs 2 epoch(s), not max_epochs=10 (--epochs)' in text
    assert 'cell 3: train() runs 2 epoch(s), not num_epochs=5 (--epochs)' in text
    assert 'cell 3: train_sgd() runs 2 epoch(s), not num_epochs=6 (--epochs)' in text
    assert text.count('runs 2 epoch(s)') == 4   # train() called by train_sgd() stays quiet


@pytest.mark.slow
def test_the_books_checks_of_cut_training_say_they_failed_and_the_chapter_goes_on(book):
    run, results, _ = book
    text = chapter_output(run, 'second-edition.md')
    assert 'train_ch3 went on\n' in text and 'the chapter went on\n' in text
    line = next(i for i, text in enumerate(OWN_D2L.splitlines(), 1) if 'assert train_acc' in text)
    assert (f"cell 2: d2l.mxnet, line {line}: the book's check `assert train_acc > 0.7` does not "
            "hold (0.25): expected when --epochs 2, --max-batches 3 cut the training short; "
            "the chapter goes on") in text
    assert "cell 2, line 5: the book's check `assert loss < 0.5` does not hold (too high)" \
        in text
    assert text.count("the book's check") == 2


def test_only_asserts_on_a_loss_or_an_accuracy_are_softened(monkeypatch):
    said = []
    monkeypatch.setattr(rerun, '_emit', lambda kind, text, **fields: said.append(text))
    source = ("assert train_loss < 0.5, train_loss\nassert metric.acc > 0.9\n"
              "assert X.shape == (2,), 'shape'\n")
    namespace = {'hook': rerun.Checks('--epochs 1'), 'train_loss': 2.0, 'X': mx.nd.ones(3),
                 'metric': type('M', (), {'acc': 0.5})}
    tree = ast.fix_missing_locations(rerun.ResultChecks('hook').visit(ast.parse(source)))
    with pytest.raises(AssertionError, match='shape'):
        exec(compile(tree, '<cell>', 'exec'), namespace)
    assert [text.split(':')[0] for text in said] == ['line 1', 'line 2']
    assert "`assert train_loss < 0.5` does not hold (2.0)" in said[0]


@pytest.mark.slow
def test_a_chapter_runs_with_the_books_own_d2l_in_numpy_mode(book):
    run, results, _ = book
    text = chapter_output(run, 'second-edition.md')
    assert 'd2l from the book folder\n' in text
    assert results['second-edition.md']['package'].endswith(os.path.join('chapters', 'd2l'))
    # npx.gpu and npx.num_gpus on the CPU; d2l.try_gpu() is --ctx, try_gpu(1) the book's
    assert 'cpu(1) 2 cpu(1) cpu(1) [cpu(0), cpu(1)]\n' in text
    assert '--ctx cpu:1: try_gpu() gives cpu(1)' in text


@pytest.mark.slow
def test_only_the_mxnet_tab_runs_as_d2lbook_selects_it(book):
    run, results, out = book
    second, english = chapter_output(run, 'second-edition.md'), chapter_output(run, 'english.md')
    assert results['second-edition.md']['other_tabs'] == {'pytorch': 1}
    assert results['second-edition.md']['cells'] == 3   # untagged, #@tab all, untagged
    assert results['english.md']['other_tabs'] == {'pytorch': 1}
    assert 'pytorch ran' not in second + english
    assert re.search('mxnet tab ran\n.*mxnet branch ran\n.*listed tab ran\n', english, re.S)
    assert 'the MXNet tab: 3 code cell(s); left out: 1 pytorch' in english
    assert 'MXNet tab only: 2 code cells of other tabs left out (2 pytorch)' in run.stdout
    nb = nbformat.read(out / 'notebooks' / 'english.ipynb', as_version=4)
    assert 'PyTorch prose' not in ''.join(cell.source for cell in nb.cells)


@pytest.mark.slow
def test_gpus_on_cpu_are_distinct_cpu_devices(book):
    run, _, _ = book
    text = chapter_output(run, 'mechanisms.md')
    assert 'cpu(1) 2 [cpu(0), cpu(1)] cpu(1)\n' in text   # try_gpu(): --ctx cpu:1
    assert 'refused: gpu(2) is not available: --gpus-on-cpu 2' in text
    assert 'no multi-GPU speed-up' in run.stdout


@pytest.mark.slow
def test_max_batches_cuts_every_pass_of_every_loader(book):
    run, _, _ = book
    text = chapter_output(run, 'mechanisms.md')
    # len() still counts every batch: the books place progress at i / len(loader)
    assert 'workers 0 10 [3, 3]\n' in text and 'workers 2 10 [3, 3]\n' in text
    assert 'ArrayLoader 10 3\n' in text
    assert run.stdout.count('--max-batches 3: every pass over a data loader') == 1
    assert 'cell 10: --max-batches 3: every pass over the data loaders built here stops ' \
           'after 3 batch(es) (3 of 10 for the first)' in text


@pytest.mark.slow
def test_figures_are_saved_and_the_run_says_where(book):
    run, results, out = book
    png = out / 'figures' / 'mechanisms' / 'cell05-1.png'     # beside the report by default
    svg = out / 'figures' / 'mechanisms' / 'cell11-1.svg'
    redrawn = out / 'figures' / 'mechanisms' / 'cell12-1.svg'
    assert results['mechanisms.md']['figures'] == [str(png), str(svg), str(redrawn)]
    assert 'draw 2' in redrawn.read_text() and 'draw 1' not in redrawn.read_text()
    assert chapter_output(run, 'mechanisms.md').count(f"figure saved to {redrawn}") == 1
    assert svg.read_text().lstrip().startswith('<?xml') and 'a figure' in svg.read_text()
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert f"figure saved to {svg}" in chapter_output(run, 'mechanisms.md')


@pytest.mark.slow
def test_executed_notebooks_are_saved_with_outputs(book):
    _, results, out = book
    nb = nbformat.read(out / 'notebooks' / 'mechanisms.ipynb', as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == 'code']
    assert [cell.execution_count for cell in code] == list(range(1, 13))
    # a cell that cleared its output (d2l's Animator) keeps the runner's notices
    kinds = [o.output_type for o in code[11].outputs]
    assert kinds == ['display_data', 'stream'] and 'redrawn' in code[11].outputs[1].text
    assert '--max-batches 3' in code[11].outputs[0].data['text/plain']
    assert any('image/svg+xml' in o.get('data', {}) for o in code[10].outputs)
    assert nb.metadata.gluon_bn.settings.epochs == 2
    # The first cell says how it was rerun; the notices sit in the cells where they acted.
    note = nb.cells[0].source
    assert nb.cells[0].cell_type == 'markdown' and note.startswith('*Rerun by `gluon-bn')
    for option in ('--epochs 2', '--max-batches 3', '--gpus-on-cpu 2', '--ctx cpu:1'):
        assert f'`{option}`' in note
    shown = [o.data['text/plain'] for o in code[9].outputs if o.output_type == 'display_data']
    assert any('--max-batches 3' in text for text in shown)
    # The book's pictures still show from where the notebook is; a missing one is left be.
    prose = nb.cells[1].source
    links = re.findall(r'\]\(([^)]+)\)|src="([^"]+)"', prose)
    pictures = [a or b for a, b in links]
    assert len(pictures) == 3 and pictures[2] == '../img/none.svg'
    for link in pictures[:2]:
        assert (out / 'notebooks' / link).resolve() == (out.parent / 'img' / 'pic.svg')
    failed = nbformat.read(out / 'notebooks' / 'fails.ipynb', as_version=4)
    errors = [o for cell in failed.cells if cell.cell_type == 'code' for o in cell.outputs
              if o.output_type == 'error']
    assert [(e.ename, e.evalue[:5]) for e in errors] == [('ValueError', 'boom:')]
    assert results['fails.md']['notebook'] == str(out / 'notebooks' / 'fails.ipynb')


@pytest.mark.slow
@pytest.mark.real_data
def test_gluons_own_fashion_mnist_reads_local_files_and_leaves_nothing_behind(book):
    run, results, out = book
    text = chapter_output(run, 'fashion.md')
    assert results['fashion.md']['passed'], text
    assert '60000 10000 (28, 28, 1) 9\n' in text
    assert '(256, 1, 28, 28) 1.0 235 3\n' in text   # len() counts all, a pass yields 3
    root = out.parent
    assert not (root / 'mxnet-home').exists() and not (root / 'elsewhere').exists()


# --- in-process: options, compat, the shortcuts ---------------------------------------------

@pytest.mark.parametrize('args, message', [
    (['no/such/chapter.md'], 'no/such/chapter.md: no such file or folder'),
    (['{txt}'], 'not a chapter (.md or .ipynb) or a folder of them'),
    (['{md}', '--epochs', '0'], "argument --epochs: must be positive, got 0"),
    (['{md}', '--max-batches', 'x'], "argument --max-batches: expected a positive int, got 'x'"),
    (['{md}', '--ctx', 'tpu'], "--ctx: expected cpu, gpu, cpu:N or gpu:N, got 'tpu'"),
    (['{md}', '--report', 'r.txt'], "--report: expected a .json or .md file name"),
    (['{md}', '{md2}', '--notebook', 'one.ipynb'], "a single .ipynb file holds one chapter"),
    (['{empty}'], 'no chapter with MXNet code cells in this folder'),
    (['{prose}'], 'prose.md has no MXNet code cells'),
    # places that cannot be written: refused before the first chapter runs, not after it
    (['{md}', '--report', '/proc/report.json'], "--report: cannot write in /proc"),
    (['{md}', '--report', '{txt}/report.md'], "notes.txt is a file, where a folder would"),
    (['{md}', '--report', '{empty}'], "--report: expected a .json or .md file name"),
    (['{md}', '--report', '{folder_md}'], "is a folder"),
    (['{md}', '--notebook', '/proc/notebooks'], "--notebook: cannot write in /proc"),
    (['{md}', '--figures', '{txt}'], "--figures: " + "{txt} is a file, not a folder"),
])
def test_bad_options_are_refused_before_any_kernel_starts(tmp_path, monkeypatch, cli, args,
                                                         message):
    monkeypatch.chdir(tmp_path)   # relative outputs (one.ipynb, r.txt) never land in the checkout
    (tmp_path / 'chapter.md').write_text(markdown(['x = 1']))
    (tmp_path / 'notes.txt').write_text('x = 1')
    (tmp_path / 'prose.md').write_text('# no code\n')
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'folder.md').mkdir()
    paths = {'md': tmp_path / 'chapter.md', 'txt': tmp_path / 'notes.txt',
             'empty': tmp_path / 'empty', 'prose': tmp_path / 'prose.md',
             'folder_md': tmp_path / 'folder.md', 'md2': tmp_path / 'chapter2.md'}
    (tmp_path / 'chapter2.md').write_text(markdown(['y = 2']))
    ran = cli('run-chapter', *[arg.format(**paths) for arg in args])
    message = message.format(**paths)
    assert ran.returncode == 2 and ran.stderr.startswith('gluon-bn run-chapter: error: ')
    assert message in ran.stderr and len(ran.stderr.splitlines()) == 1


def test_a_folder_run_leaves_out_what_exclude_names(tmp_path):
    for name in ('a/one.md', 'a/contrib/two.md', 'b/three.md'):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(markdown(['x = 1']))
    def names(*exclude):
        return [os.path.relpath(file, tmp_path)
                for file, _ in chapters.find_chapters([str(tmp_path)], exclude)]
    assert names() == ['a/one.md', 'a/contrib/two.md', 'b/three.md']
    assert names('contrib') == names('*/contrib/*') == ['a/one.md', 'b/three.md']
    assert names('b/*', 'contrib') == ['a/one.md']


def test_a_chapter_of_other_tabs_only_is_refused_by_name(tmp_path):
    path = tmp_path / 'torch.md'
    path.write_text(markdown(['#@tab pytorch\nx = 1', '#@tab tensorflow\ny = 2']))
    with pytest.raises(chapters.ChapterError, match='has no MXNet code cells '
                                                    r'\(only 1 pytorch, 1 tensorflow\)'):
        chapters.read_chapter(str(path))


def test_a_chapter_is_read_as_notebook_cells(tmp_path):
    path = tmp_path / 'chapter.md'
    path.write_text(markdown(['a = 1', 'b = 2']) + '\nClosing prose.\n')
    nb = chapters.read_chapter(str(path))
    assert [(c.cell_type, c.source.strip()) for c in nb.cells] == [
        ('markdown', '# A chapter\n\nSome prose.'), ('code', 'a = 1'),
        ('markdown', 'More prose.'), ('code', 'b = 2'), ('markdown', 'Closing prose.')]


def test_compat_is_reversible_and_installs_once():
    before = (vars(datasets.FashionMNIST).copy(), hasattr(display, 'set_matplotlib_formats'))
    with compat.offline():
        assert datasets.FashionMNIST.__init__ is not before[0]['__init__']
        assert callable(display.set_matplotlib_formats)
        with pytest.raises(RuntimeError, match='installed already'):
            compat.install()
    assert (vars(datasets.FashionMNIST).copy(),
            hasattr(display, 'set_matplotlib_formats')) == before


def test_try_gpu_returns_ctx_in_both_books_and_comes_off():
    before = d2lzh.try_gpu, d2lzh.utils.try_gpu
    with rerun.try_gpu_returns('cpu:1'):
        assert d2lzh.try_gpu() == mx.cpu(1) and d2lzh.utils.try_gpu() == mx.cpu(1)
    assert (d2lzh.try_gpu, d2lzh.utils.try_gpu) == before


@pytest.mark.real_data
def test_compat_fashion_mnist_is_gluons_data_set_over_the_verified_files(tmp_path):
    root = tmp_path / 'not-created'
    with compat.offline():
        test = datasets.FashionMNIST(root=str(root), train=False)
    images, labels = data.load_fashion_mnist(False, data.DEBIAN_DIR)
    assert not root.exists() and len(test) == 10000
    X, y = test[17]
    assert X.shape == (28, 28, 1) and X.dtype == np.uint8 and isinstance(y, np.int32)
    np.testing.assert_array_equal(X.asnumpy()[..., 0], images[17])
    assert y == labels[17]


def test_compat_never_downloads(tmp_path, monkeypatch):
    monkeypatch.delenv('FASHION_MNIST_DIR', raising=False)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet'))
    monkeypatch.setattr(data, 'DEBIAN_DIR', str(tmp_path / 'debian'))
    with compat.offline(), pytest.raises(data.DataError, match='Fashion-MNIST is not in'):
        datasets.FashionMNIST(train=False)
    assert os.listdir(tmp_path) == []


def test_limit_batches_cuts_the_sampler_and_comes_off():
    dataset = gluon.data.ArrayDataset(nd.arange(50), nd.arange(50))
    with rerun.limit_batches(2):
        loader = gluon.data.DataLoader(dataset, batch_size=10, shuffle=True)
        first = [batch[1].asnumpy() for batch in loader]
        second = [batch[1].asnumpy() for batch in loader]
    assert len(loader) == 5 and len(first) == 2 and len(second) == 2
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))   # reshuffled
    assert len(gluon.data.DataLoader(dataset, batch_size=10)) == 5
    with pytest.raises(ValueError, match='max_batches must be a positive int'):
        with rerun.limit_batches(0):
            pass


def test_cpus_as_gpus_comes_off_again():
    before = mx.gpu, mx.context.num_gpus, npx.gpu, npx.num_gpus
    with rerun.cpus_as_gpus(3):
        assert mx.gpu(2) == mx.cpu(2) and mx.context.gpu(0) == npx.gpu(0) == mx.cpu(0)
        assert npx.num_gpus() == mx.context.num_gpus() == 3
        assert d2lzh.try_all_gpus() == [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
    assert (mx.gpu, mx.context.num_gpus, npx.gpu, npx.num_gpus) == before
    assert mx.gpu(2).device_type == 'gpu'


def test_a_shell_escape_runs_when_the_shell_finds_its_program():
    assert rerun._program('FOO=1 BAR="a b" ls -l  # a comment') == 'ls'
    assert rerun._can_run('ls') and rerun._can_run('cd') and rerun._can_run('export')
    assert not rerun._can_run('no-such-program-gluon-bn')


def test_epoch_loops_with_fixed_bounds_are_rewritten_and_others_are_not(monkeypatch):
    notices = []
    monkeypatch.setattr(rerun, '_emit', lambda kind, text, **fields: notices.append(text))
    source = ("runs = []\n"
              "for epoch in range(1, 6):\n    runs.append(epoch)\n"
              "for i in range(3):\n    runs.append(-1)\n"
              "for epoch in range(n):\n    runs.append(0)\n")
    tree = ast.fix_missing_locations(rerun.EpochsOverride(2).visit(ast.parse(source)))
    namespace = {'n': 1}
    exec(compile(tree, '<cell>', 'exec'), namespace)
    assert namespace['runs'] == [1, 2, -1, -1, -1, 0]
    assert notices == ["line 2: `for epoch in range(1, 6)` does not read an epoch count; it runs 2 "
                       "epoch(s) instead of 5 (--epochs)"]


def test_the_epochs_hook_sets_every_way_an_epoch_count_is_passed(monkeypatch):
    notices = []
    monkeypatch.setattr(rerun, '_emit', lambda kind, text, **fields: notices.append(text))
    hook = rerun.EpochsHook(3)

    @hook.parameters('num_epochs')
    def train(net, lr, num_epochs=6, *, log=None):
        return num_epochs

    @hook.parameters('num_epochs')
    def outer(num_epochs):
        return train(None, 0.1, num_epochs)
    assert [train(None, 0.1, 5), train(None, 0.1), train(None, 0.1, num_epochs=9)] == [3, 3, 3]
    assert train(None, 0.1, 3) == 3 and outer(8) == 3
    assert notices == [f"{'test_the_epochs_hook_sets_every_way_an_epoch_count_is_passed'}"
                       f".<locals>.train() runs 3 epoch(s), not num_epochs={n} (--epochs)"
                       for n in (5, 6, 9)] + [notices[-1]]
    assert notices[-1].endswith('outer() runs 3 epoch(s), not num_epochs=8 (--epochs)')
    assert hook.assigned('epochs', range(4)) == range(4)   # not a count: left alone
    assert hook.assigned('num_epochs', 10) == 3
    with pytest.raises(TypeError):
        train()   # the function's own error
    assert [rerun.is_epoch_count(n) for n in ('num_epochs', 'max_epochs', 'epochs', 'n_epochs',
                                              'epoch', 'num_epoch_steps')] == \
        [True, True, True, True, False, False]


def test_the_last_test_accuracy_is_read_as_each_edition_prints_it():
    printed = ("epoch 1, loss 2.3, train acc 0.100, test acc 0.861, time 3.0 sec\n"   # d2lzh
               "loss 0.251, train acc 0.907, test acc 0.878\n"                        # d2l
               "测试精度：0.91，2.3秒/轮，在[cpu(0), cpu(1)]\n")   # d2l, multi-GPU
    assert chapters.TEST_ACCURACY.findall(printed) == ['0.861', '0.878', '0.91']
    assert chapters.TEST_ACCURACY.findall("train acc 0.5, lr 0.1") == []


@pytest.mark.slow
def test_a_cell_that_runs_past_the_time_limit_fails_its_chapter_and_the_run_goes_on(tmp_path):
    (tmp_path / 'a-hangs.md').write_text(markdown(
        ["import os, time\nprint('kernel', os.getpid(), flush=True)\ntime.sleep(600)"]))
    (tmp_path / 'b-next.md').write_text(markdown(["print('next ran')"]))
    report = tmp_path / 'report.json'
    run = gluon_bn('run-chapter', tmp_path, '--cell-timeout', 3, '--report', report,
                   timeout=120)
    results = {r['chapter']: r for r in json.loads(report.read_text())['results']}
    assert run.returncode == 1
    assert results['a-hangs.md']['outcome'] == \
        'failed at cell 1: ran past --cell-timeout 3 s, and was stopped'
    assert results['a-hangs.md']['seconds'] < 60 and results['b-next.md']['passed']
    kernel = int(re.search(r'kernel (\d+)', run.stdout)[1])
    with pytest.raises(ProcessLookupError):
        os.kill(kernel, 0)
    assert 'Traceback' not in run.stderr.split('[run_chapter]')[-1]


@pytest.mark.parametrize('text, value', [('none', None), ('90', 90.0), ('0.5', 0.5)])
def test_the_cell_timeout_option_takes_seconds_or_none(text, value):
    from gluon_bn.cli.book import cell_timeout
    assert cell_timeout(text) == value


@pytest.mark.slow
def test_a_folder_run_names_every_file_it_left_out_and_fails_the_broken_ones(tmp_path):
    folder = tmp_path / 'book'
    folder.mkdir()
    (folder / 'good.md').write_text(markdown(["print('good ran')"]))
    (folder / 'broken.ipynb').write_text('{"not": "a notebook"}')
    (folder / 'latin.md').write_bytes(markdown(["x = 'caf\xe9'"]).encode('latin-1'))
    (folder / 'prose.md').write_text('# prose only\n')
    report = tmp_path / 'report.json'
    run = gluon_bn('run-chapter', folder, folder / 'good.md', '--report', report,
                   '--notebook', tmp_path / 'nbs')
    saved = json.loads(report.read_text())
    results = {r['chapter']: r for r in saved['results']}
    assert run.returncode == 1 and sorted(results) == ['broken.ipynb', 'good.md', 'latin.md']
    assert results['good.md']['passed'] and run.stdout.count('good ran') == 1   # runs once
    assert results['broken.ipynb']['outcome'].startswith('failed: cannot read ')
    assert 'not a Jupyter notebook' in results['broken.ipynb']['outcome']
    assert 'not UTF-8 text' in results['latin.md']['outcome']
    assert '1 of 3 chapters passed' in run.stdout
    left_out = {os.path.basename(e['path']): e['why'] for e in saved['left_out']}
    assert left_out == {'prose.md': 'has no MXNet code cells',
                        'good.md': 'named more than once: it runs once'}
    assert f"[run_chapter] left out {folder / 'prose.md'}: has no MXNet code cells" in run.stdout
    assert 'Traceback' not in run.stderr
