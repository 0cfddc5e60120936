"""The largest errors of every batch-norm path against the reference, per LeNet shape
(`gluon-bn accuracy`).

Each case trains for a few steps (forward, backward) and then predicts, as the regression suite
does; the reference runs in extended precision. Columns are absolute errors.
"""
from ..testing import ADAPTERS, FIELDS, make_case, max_errors, reference_result, run

LENET_SHAPES = [(256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84)]
DTYPES = ('float32', 'float64')


def report(dtypes=DTYPES, steps=3):
    """Print one line per shape, dtype and implementation."""
    print(f"{'shape':18} {'dtype':8} {'implementation':13} "
          + ' '.join(f'{name:>13}' for name in FIELDS))
    for shape in LENET_SHAPES:
        for dtype in dtypes:
            case = make_case(shape, dtype, steps=steps)
            truth = reference_result(case)
            for name, adapter in ADAPTERS.items():
                errors = max_errors(run(adapter, case), truth)
                print(f'{str(shape):18} {dtype:8} {name:13} '
                      + ' '.join(f'{errors[k]:13.2e}' for k in FIELDS))
