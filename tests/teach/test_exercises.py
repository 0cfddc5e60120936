"""The chapter's exercises as experiments (gluon_bn.teach.exercises, gluon-bn exercises), on a
tiny subset: the measurements' shapes and the invariants the answers rest on."""
import json

import numpy as np
import pytest

from gluon_bn.teach import exercises as ex

pytestmark = pytest.mark.real_data


@pytest.fixture(scope='module')
def data():
    return ex.Data(train_size=512)


def quiet():
    return ex.Runs(None, progress=lambda message: None)


def test_the_bias_before_batch_norm_has_a_gradient_of_rounding_size(data):
    r = ex.bias_before_bn(data, quiet(), epochs=1)
    with_bn, without_bn = r['gradient ratio']['with BN'], r['gradient ratio']['without BN']
    assert len(with_bn) == len(without_bn) == 4
    assert max(with_bn) < 1e-5 < 1e-2 < min(without_bn)
    # the biases of the four layers before a batch norm: 6 + 16 + 120 + 84
    assert r['1/bias=True']['parameters'] - r['1/bias=False']['parameters'] == 226
    assert len(r['1/bias=True']['history']) == 1


def test_frozen_gamma_and_beta_stay_where_they_started(data):
    r = ex.frozen_gamma_beta(data, quiet(), epochs=1)
    frozen, learned = r['4/frozen=True']['moved'], r['4/frozen=False']['moved']
    assert frozen['gamma'] == [0.0] * 4 and frozen['beta'] == [0.0] * 4
    assert min(learned['gamma']) > 0 and min(learned['beta']) > 0


def test_global_statistics_never_move_while_batch_statistics_do(data):
    r = ex.global_statistics(data, quiet(), epochs=1)
    assert r['5/global statistics']['running statistics moved'] == 0.0
    assert r['5/batch statistics']['running statistics moved'] > 0.01
    assert r['5/no batch norm']['running statistics moved'] == 0.0


def test_the_learning_rate_sweep_and_the_placements_cover_every_run(data):
    rates = (0.1, 1.0)
    r = ex.learning_rates(data, quiet(), epochs=1, rates=rates)
    assert sorted(r) == sorted(f"2/{p}/lr={rate:g}" for p in ('none', 'after_affine')
                               for rate in rates)
    assert all(0 <= h[-1]['test_acc'] <= 1 for h in r.values())
    r = ex.placements(data, quiet(), epochs=1)
    assert sorted(r) == sorted(ex.PLACEMENTS)


def test_the_input_quantiles_are_ordered_and_taken_every_epoch(data):
    r = ex.input_shift(data, quiet(), epochs=2)
    for run in r.values():
        assert len(run['quantiles']) == 3   # before training, after each epoch
        for q in run['quantiles']:
            assert q == sorted(q)
    # before training, both networks start from the same convolution (running stats 0, 1)
    np.testing.assert_allclose(r['shift/none']['quantiles'][0],
                               r['shift/after_affine']['quantiles'][0], rtol=1e-3, atol=1e-4)


def test_the_command_writes_the_figures_and_report_and_resumes(tmp_path, cli):
    out = tmp_path / 'report'
    args = ['exercises', '4', '5', '--out', out, '--epochs', '1', '--train-size', '256']
    ran = cli(*args)
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in out.iterdir()) == ['.lock', 'exercise-4.png',
                                                     'exercise-5.png', 'report.md', 'runs.json']
    report = (out / 'report.md').read_text()
    assert '## 4. Frozen gamma and beta' in report and '## 5. Global statistics' in report
    assert (out / 'exercise-4.png').read_bytes()[:4] == b'\x89PNG'
    saved = json.loads((out / 'runs.json').read_text())
    assert saved['settings']['epochs'] == 1 and len(saved['runs']) == 5
    again = cli(*args)                                            # everything kept
    assert again.returncode == 0 and again.stdout.count('done before, kept') == 5
    other = cli('exercises', '4', '--out', out, '--epochs', '2', '--train-size', '256')
    assert other.returncode == 1 and 'other settings' in other.stderr
    assert json.loads((out / 'runs.json').read_text()) == saved   # nothing lost


def test_an_unknown_exercise_is_refused(cli):
    ran = cli('exercises', '6', '--out', '/nonexistent')
    assert ran.returncode == 2 and 'no exercise 6' in ran.stderr


SETTINGS = {'epochs': 1, 'train_size': 64, 'lr': 1.0, 'seed': 0, 'rates': [0.1]}


@pytest.mark.parametrize('content, words', [
    ('[1, 2]', 'is JSON but not a runs file'),
    ('{"settings": %s, "runs": {"1/bias=True": 3}}' % json.dumps(SETTINGS),
     'is JSON but not a runs file'),
    ('{"settings": %s, "runs": {"1/bias=True": {"history": [' % json.dumps(SETTINGS),
     'it was cut short or written by something else'),
    (None, 'is a folder, where the exercises keep their runs file'),
])
def test_a_damaged_runs_file_is_named_with_the_way_out(tmp_path, content, words):
    path = tmp_path / 'runs.json'
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    with pytest.raises(ex.Error) as raised:
        ex.Runs(str(path), SETTINGS)
    message = str(raised.value)
    assert str(path) in message and words in message and '\n' not in message
    assert 'delete it' in message or 'move it away' in message


def test_a_run_is_saved_before_it_is_announced(tmp_path):
    said = []
    path = tmp_path / 'runs.json'

    def progress(message):   # what a kill at this moment would leave: the run must be there
        said.append((message, json.loads(path.read_text())['runs']))
    runs = ex.Runs(str(path), SETTINGS, progress=progress)
    runs.get('a', lambda: {'history': []})
    (message, saved), = said
    assert message.startswith('  a: ') and saved == {'a': {'history': []}}


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_run(tmp_path, cli):
    (tmp_path / 'file').write_text('x')
    ran = cli('exercises', '--out', tmp_path / 'file' / 'ex', '1')
    assert ran.returncode == 2 and 'is a file, where a folder would have to be made' in ran.stderr
    assert len(ran.stderr.splitlines()) == 1


def test_exact_statistics_against_moving_averages_for_each_seed(data):
    r = ex.precise_statistics(data, quiet(), epochs=2, seeds=(0, 1))
    assert sorted(r) == ['precise/seed=0', 'precise/seed=1']
    for history in r.values():
        assert len(history) == 2
        assert all(0 <= e['test_acc'] <= 1 and 0 <= e['test_acc_moving'] <= 1 for e in history)
    from gluon_bn.teach import report
    settings = {'epochs': 2, 'train_size': 512, 'lr': 1.0, 'seed': 0, 'rates': []}
    assert report.figures({'precise': r}, settings)['precise.png'][:4] == b'\x89PNG'
    text = report.report({'precise': r}, settings, ['precise.png'], 1.0)
    assert '| 0 | ' in text and 'scored higher in' in text
