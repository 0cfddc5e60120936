"""scripts/run_chapter.py on small chapter files written here, and gluon_bn.compat."""
import json
import os
import subprocess
import sys

import d2lzh
import pytest

from gluon_bn import compat, data

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, 'scripts', 'run_chapter.py')
real_data = pytest.mark.skipif(
    not os.path.isfile(os.path.join(data.DEBIAN_DIR, 't10k-images-idx3-ubyte.gz')),
    reason='Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)')

CELLS = ["%matplotlib inline\nx = 1",
         "lr, num_epochs, batch_size = 1.0, 5, 256\nprint('epochs', num_epochs)",
         "x + 41"]


def markdown(cells):
    """A chapter in d2lzh's markdown source format, prose between the code fences."""
    fences = [f"```{{.python .input  n={i}}}\n{cell}\n```" for i, cell in enumerate(cells, 70)]
    fences[0] = fences[0].replace('  n=70', '')   # the other fence style: {.python .input}
    return '# A chapter\n\nSome prose.\n\n' + '\n\nMore prose.\n\n'.join(fences) + '\n'


def notebook(cells):
    return json.dumps({'cells': [{'cell_type': 'markdown', 'source': ['# A chapter']}] + [
        {'cell_type': 'code', 'source': cell.splitlines(keepends=True), 'outputs': [],
         'metadata': {}, 'execution_count': None} for cell in cells],
        'metadata': {}, 'nbformat': 4, 'nbformat_minor': 2})


def run(tmp_path, name, text, *args):
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    return subprocess.run([sys.executable, SCRIPT, str(path), *args], capture_output=True,
                          text=True)


@pytest.mark.parametrize('name, write', [('chapter.md', markdown), ('chapter.ipynb', notebook)])
def test_cells_run_in_order_in_one_namespace(tmp_path, name, write):
    result = run(tmp_path, name, write(CELLS), '--epochs', '3')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        'In [1]:', 'In [2]:', '[run_chapter] num_epochs = 3 (the chapter says 5)', 'epochs 3',
        'In [3]:', '42']


def test_a_failing_cell_ends_the_run_with_its_number_and_traceback(tmp_path):
    result = run(tmp_path, 'chapter.md', markdown(["x = 1", "y = x\nraise ValueError('boom')",
                                                    "print('never')"]))
    assert result.returncode == 1
    assert "cell 2 failed: y = x" in result.stderr
    assert "ValueError: boom" in result.stderr and 'never' not in result.stdout


def test_a_file_without_code_is_an_error(tmp_path):
    result = run(tmp_path, 'chapter.md', '# prose only\n')
    assert result.returncode != 0 and 'no code cells' in result.stderr


@real_data
def test_d2lzh_loads_fashion_mnist_offline_through_the_chapter(tmp_path):
    cells = ["import d2lzh as d2l",
             "train_iter, test_iter = d2l.load_data_fashion_mnist(256)\n"
             "X, y = next(iter(test_iter))",
             "X.shape, float(X.max().asscalar()), len(train_iter)"]
    result = run(tmp_path, 'chapter.md', markdown(cells))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == '((256, 1, 28, 28), 1.0, 235)'


def test_compat_is_reversible_and_installs_once():
    original = d2lzh.load_data_fashion_mnist, d2lzh.utils.load_data_fashion_mnist, d2lzh.try_gpu
    with compat.offline(ctx='a device'):
        assert d2lzh.load_data_fashion_mnist is not original[0]
        assert d2lzh.utils.load_data_fashion_mnist is not original[1]
        assert d2lzh.try_gpu() == 'a device'
        with pytest.raises(RuntimeError, match='installed already'):
            compat.install()
    assert (d2lzh.load_data_fashion_mnist, d2lzh.utils.load_data_fashion_mnist,
            d2lzh.try_gpu) == original
