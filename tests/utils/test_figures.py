"""Figures drawn without pyplot: drawing one changes no matplotlib setting of the process (a
Jupyter kernel that imports gluon_bn keeps its inline backend)."""
import importlib

import matplotlib
import pytest

from gluon_bn.teach import report
from gluon_bn.train import recipe
from gluon_bn.utils import figures

HISTORY = [{'epoch': e, 'loss': 1 / e, 'train_acc': 0.5 + e / 10, 'test_acc': 0.4 + e / 10}
           for e in (1, 2, 3)]


@pytest.fixture
def svg_backend():
    """A backend that is not Agg, as a user's may be; put back afterwards."""
    before = matplotlib.get_backend()
    matplotlib.use('svg')
    yield
    matplotlib.use(before)


def test_importing_and_drawing_leave_the_backend_alone(svg_backend):
    importlib.reload(report)   # what an import runs
    images = report.figures({'4': {'4/frozen=False': {'history': HISTORY},
                                   '4/frozen=True': {'history': HISTORY}}}, {'epochs': 3})
    assert images['exercise-4.png'][:8] == b'\x89PNG\r\n\x1a\n'
    assert recipe.plot(HISTORY, 'pdf')[:5] == b'%PDF-'
    assert matplotlib.get_backend() == 'svg'


def test_a_file_name_says_the_format():
    assert figures.format_of('curves.PNG') == 'png' and figures.format_of('curves') == 'png'
    assert {'png', 'svg', 'pdf'} <= set(figures.formats()) and 'xyz' not in figures.formats()
