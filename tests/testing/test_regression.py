"""Every from-scratch path against the NumPy reference and against mxnet.gluon.nn.BatchNorm, in
MXNet's legacy API and in its NumPy API (npx.set_np()).

Each case trains for three steps (forward, then backward with a given head gradient), then
predicts on a fresh batch and on a single sample; `gluon_bn.testing` drives all implementations
the same way. Errors are measured in unit roundoffs of the input dtype, relative to the size of the
terms each field is computed from (`term_magnitudes`), so one bound serves every shape, including
the ill-conditioned ones (a batch of 2, where terms nearly cancel).
"""
import functools

import numpy as np
import pytest

from gluon_bn.testing import (ADAPTERS, APIS, FIELDS, GluonBatchNorm, make_case, max_errors,
                              reference_result, run, term_magnitudes)

SHAPES = {
    'lenet-conv1': (256, 6, 24, 24), 'lenet-conv2': (256, 16, 8, 8),
    'lenet-dense1': (256, 120), 'lenet-dense2': (256, 84),
    'h-ne-w': (8, 3, 5, 7), 'batch2-conv': (2, 4, 3, 3), 'batch2-dense': (2, 10),
    'batch1-conv': (1, 3, 4, 5),
}
SETTINGS = {'default': (1e-5, 0.9), 'eps1e-3-momentum0.8': (1e-3, 0.8)}
# The numerics: one path per computation, every shape, dtype and setting. The other paths run
# the same computations through other plumbing (parameter shapes, autograd, a graph or not; a
# hybridized layer predicts with MXNet's own operator: gluon_bn.nn.graphs).
KERNELS = {'operator': 'HybridBatchNorm',               # gluon_bn's C++ operator
           'textbook': 'batch_norm',                     # the book's formulas, under autograd
           'tutorial': 'batch_norm2D(fast=False)'}       # the older tutorial's formulas
OPERATOR_PATHS = ('BatchNorm', 'HybridBatchNorm', 'HybridBatchNorm hybridized', 'batch_norm2D')
# float16 only through the operator: the textbook formulas sum in float16 and overflow (they
# refuse it, tests/test_bad_input.py).
DTYPES = {path: ('float16', 'float32', 'float64') if path in OPERATOR_PATHS
          else ('float32', 'float64') for path in ADAPTERS}
# The plumbing: every path, each dtype it takes, on a 4D and a 2D shape.
PLUMBING_SHAPES = ('h-ne-w', 'batch2-dense')
OURS = [name for name in ADAPTERS if name != 'nn.BatchNorm']

# Our bound: each field is a few rounded operations on top of compensated (Kahan) reductions, so
# its error stays within a few unit roundoffs of its terms (measured: at most 2.2; float16 through
# the operator, at most 0.9). A real defect is orders of magnitude larger: an unbiased variance
# moves y by 1/(2N) relative, a wrong momentum or a missed update moves the statistics by whole
# per cents.
OUR_BOUND = 8
# Below this, a result is as exact as its format allows: y passes through six rounded operations
# (subtract, add eps, square root, divide, multiply, add), so any implementation that rounds each
# one may be 3 unit roundoffs off, and which of two such implementations lands closer is luck.
EXACT_ENOUGH = 3


@functools.lru_cache(maxsize=None)
def measured(shape_id, dtype, setting_id='default'):
    """Case, per-field error scale (u * term magnitude), and nn.BatchNorm's errors."""
    eps, momentum = SETTINGS[setting_id]
    case = make_case(SHAPES[shape_id], dtype, eps, momentum)
    truth = reference_result(case)
    unit = np.finfo(dtype).eps / 2
    scale = {k: unit * v for k, v in term_magnitudes(case, truth).items()}
    return case, truth, scale, max_errors(run(GluonBatchNorm, case), truth)


def in_units(errors, scale):
    return {k: errors[k] / scale[k] for k in FIELDS}


def check_path(path, shape_id, dtype, setting_id='default', api='nd'):
    """One run of `path`: within OUR_BOUND of the reference, and no worse than nn.BatchNorm."""
    case, truth, scale, builtin_errors = measured(shape_id, dtype, setting_id)
    ours = in_units(max_errors(run(ADAPTERS[path], case, api=api), truth), scale)
    too_far = {k: round(v, 2) for k, v in ours.items() if v > OUR_BOUND}
    assert not too_far, f"{path} errors in unit roundoffs, bound {OUR_BOUND}: {too_far}"
    builtin = in_units(builtin_errors, scale)
    worse = {k: (round(ours[k], 2), round(builtin[k], 2)) for k in FIELDS
             if ours[k] > max(builtin[k], EXACT_ENOUGH)}
    assert not worse, f"{path} worse than nn.BatchNorm, (ours, builtin) in unit roundoffs: {worse}"


@pytest.mark.parametrize('api', APIS)
@pytest.mark.parametrize('shape_id', SHAPES)
@pytest.mark.parametrize('kernel, dtype', [(kernel, dtype) for kernel, path in KERNELS.items()
                                           for dtype in DTYPES[path]])
def test_each_computation_on_every_shape(kernel, dtype, shape_id, api):
    check_path(KERNELS[kernel], shape_id, dtype, api=api)


@pytest.mark.parametrize('api', APIS)
@pytest.mark.parametrize('setting_id', SETTINGS)
@pytest.mark.parametrize('shape_id', PLUMBING_SHAPES)
@pytest.mark.parametrize('path, dtype', [(path, dtype) for path in OURS
                                         for dtype in DTYPES[path]])
def test_every_path(path, dtype, shape_id, setting_id, api):
    """Every path, with both settings and in both APIs: eps and momentum reach the computation
    through it."""
    check_path(path, shape_id, dtype, setting_id, api)


# nn.BatchNorm itself, so that the suite's picture of it stays true: statistics updated with the
# biased variance, momentum on the old value. Its float32 kernel sums naively (109 unit roundoffs
# measured on lenet-conv1), and it keeps momentum as a C float, so in float64 its running
# statistics, and predictions made with them, are only float32-accurate.
BUILTIN_BOUND = 256
BUILTIN_STATISTICS_RTOL = 1e-6
STATISTIC_FIELDS = ('running_mean', 'running_var', 'y_predict', 'y_predict_one')


@pytest.mark.parametrize('dtype', ('float16', 'float32', 'float64'))
@pytest.mark.parametrize('shape_id', SHAPES)
def test_builtin_follows_reference(shape_id, dtype):
    case, truth, scale, builtin_errors = measured(shape_id, dtype)
    for k in FIELDS:
        if dtype == 'float64' and k in STATISTIC_FIELDS:
            magnitude = scale[k] / (np.finfo(dtype).eps / 2)
            assert builtin_errors[k] <= BUILTIN_STATISTICS_RTOL * magnitude, k
        else:
            assert builtin_errors[k] <= BUILTIN_BOUND * scale[k], k
