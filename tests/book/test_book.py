"""The book's own chapters rerun offline on the CPU with gluon-bn run-chapter, one batch per
pass: the first edition (../shared/d2l-zh-v1: 16 chapters on d2lzh) and the second
(../shared/d2l-zh-v2: 17 chapters in NumPy mode, with the book's own d2l beside them) in one
run, each chapter in its own kernel. Each passes, the figures the chapters draw are saved, the
one shell escape that cannot run here is reported, and only the MXNet tab runs."""
import importlib.util
import json
import shutil

import pytest

from tests.helpers import SHARED, gluon_bn

V1, V2 = SHARED / 'd2l-zh-v1', SHARED / 'd2l-zh-v2'

pytestmark = [
    pytest.mark.book,
    pytest.mark.slow,
    pytest.mark.skipif(not (V1.is_dir() and V2.is_dir()),
                       reason=f"the book's chapters are not in {V1} and {V2}"),
    pytest.mark.real_data,
]


def test_every_chapter_of_both_editions_reruns_offline_on_the_cpu(tmp_path):
    report = tmp_path / 'report.json'
    run = gluon_bn('run-chapter', V1, V2, '--epochs', 1, '--max-batches', 1, '--ctx', 'cpu',
                   '--gpus-on-cpu', 2, '--report', report, timeout=1500)
    results = {r['chapter']: r for r in json.loads(report.read_text())['results']}
    chapters = {f"{book.name}/{p.relative_to(book)}" for book in (V1, V2)
                for p in book.glob('chapter_*/*.md')}
    assert set(results) == chapters and len(chapters) == 33
    failed = [f"{name}: {r['outcome']}" for name, r in results.items() if not r['passed']]
    assert not failed and run.returncode == 0, '\n'.join(failed) + run.stderr[-3000:]
    first = {name: r for name, r in results.items() if name.startswith('d2l-zh-v1/')}
    second = {name: r for name, r in results.items() if name.startswith('d2l-zh-v2/')}
    assert {name for name, r in first.items() if r['figures']} == {
        'd2l-zh-v1/chapter_deep-learning-basics/fashion-mnist.md',
        'd2l-zh-v1/chapter_deep-learning-basics/softmax-regression-scratch.md'}
    if shutil.which('nvidia-smi') is None:
        assert first['d2l-zh-v1/chapter_computational-performance/multiple-gpus.md'][
            'skipped'] == ['cell 1, line 1: `!nvidia-smi`']
    assert {name for name, r in results.items() if r['skipped']} <= {
        'd2l-zh-v1/chapter_computational-performance/multiple-gpus.md'}
    # The second edition: the book's own d2l, the MXNet tab only, its Animator's figures.
    assert all(r['package'] == str(V2 / 'd2l') for r in second.values())
    assert all(r['package'] is None and not r['other_tabs'] for r in first.values())
    assert all(set(r['other_tabs']) <= {'pytorch', 'tensorflow', 'paddle'} and r['other_tabs']
               for r in second.values())
    assert sum(bool(r['figures']) for r in second.values()) >= 15
    bn = second['d2l-zh-v2/chapter_convolutional-modern/batch-norm.md']
    assert bn['batch_norms'] >= 4 and bn['accuracy'] is not None


@pytest.mark.skipif(importlib.util.find_spec('d2l') is None, reason='d2l is not installed')
def test_a_second_edition_chapter_on_its_own_runs_with_the_installed_d2l(tmp_path):
    chapter = tmp_path / 'batch-norm.md'
    shutil.copy(V2 / 'chapter_convolutional-modern' / 'batch-norm.md', chapter)
    report = tmp_path / 'report.json'
    run = gluon_bn('run-chapter', chapter, '--epochs', 1, '--max-batches', 1, '--report', report)
    result, = json.loads(report.read_text())['results']
    assert result['passed'] and run.returncode == 0, run.stderr[-3000:]
    assert result['package'] is None and "the book's own" not in run.stdout
