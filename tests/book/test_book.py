"""The book's own chapters (../shared/d2l-zh-v1: 16 chapters that train on Fashion-MNIST,
unmodified) rerun offline on the CPU with gluon-bn run-chapter, one batch per pass: each
passes, the two figures the chapters draw are saved, and the one shell escape that cannot run
here is reported."""
import json
import shutil

import pytest

from tests.helpers import SHARED, gluon_bn

BOOK = SHARED / 'd2l-zh-v1'

pytestmark = [
    pytest.mark.book,
    pytest.mark.slow,
    pytest.mark.skipif(not BOOK.is_dir(), reason=f"the book's chapters are not in {BOOK}"),
    pytest.mark.real_data,
]


def test_every_chapter_of_the_book_reruns_offline_on_the_cpu(tmp_path):
    report = tmp_path / 'report.json'
    run = gluon_bn('run-chapter', BOOK, '--epochs', 1, '--max-batches', 1, '--ctx', 'cpu',
                   '--gpus-on-cpu', 2, '--report', report, timeout=1200)
    results = {r['chapter']: r for r in json.loads(report.read_text())['results']}
    chapters = {str(p.relative_to(BOOK)) for p in BOOK.glob('chapter_*/*.md')}
    assert set(results) == chapters and len(chapters) == 16
    failed = [f"{name}: {r['outcome']}" for name, r in results.items() if not r['passed']]
    assert not failed and run.returncode == 0, '\n'.join(failed) + run.stderr[-3000:]
    drawn = {name for name, r in results.items() if r['figures']}
    assert drawn == {'chapter_deep-learning-basics/fashion-mnist.md',
                     'chapter_deep-learning-basics/softmax-regression-scratch.md'}
    if shutil.which('nvidia-smi') is None:
        assert results['chapter_computational-performance/multiple-gpus.md']['skipped'] == [
            'cell 1, line 1: `!nvidia-smi`']
    assert {name for name, r in results.items() if r['skipped']} <= {
        'chapter_computational-performance/multiple-gpus.md'}
