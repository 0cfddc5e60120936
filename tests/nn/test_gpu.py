"""Every batch-norm path on gpu(0), against its own CPU result and the extended-precision
reference, and one epoch of BN-LeNet there. `pytest -m gpu` runs these alone; without a GPU (or
with the CPU build of MXNet) they are skipped.

On a GPU, HybridBatchNorm runs MXNet's CUDA BatchNorm kernel (its C++ operator is CPU-only) and
the scratch paths run MXNet's elementwise and reduction kernels. nn.BatchNorm is not among the
paths: it runs cuDNN there, whose running variance is the unbiased one (MXNet issues #14357,
#21111), and on the CPU its float64 kernel is float32-accurate.
"""
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, init

from gluon_bn import lenet_bn, train_ch5, try_gpu
from gluon_bn.train.data import ArrayLoader, load_fashion_mnist
from gluon_bn.testing import (ADAPTERS, FIELDS, make_case, max_errors, reference_result, run,
                              term_magnitudes)

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(try_gpu() == mx.cpu(), reason='no gpu(0): no GPU, or the CPU '
                                                              'build of MXNet')]

SHAPES = {'lenet-conv1': (256, 6, 24, 24), 'lenet-dense1': (256, 120), 'batch2-conv': (2, 4, 3, 3)}
# In unit roundoffs of each field's terms, as in test_regression, whose CPU bound is 8. MXNet's
# CUDA reductions add in trees in the input type, which errs by up to about log2(n) units, 17 for
# LeNet's first layer; twice that is the bound. A defect is far larger: an unbiased variance moves
# y by 1/(2n) relative, thousands of units.
BOUND = 40
OURS = [name for name in ADAPTERS if name != 'nn.BatchNorm']


def in_units(errors, case, truth):
    unit = np.finfo(case.dtype).eps / 2
    scale = term_magnitudes(case, truth)
    return {k: errors[k] / (unit * scale[k]) for k in errors}


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('shape_id', SHAPES)
@pytest.mark.parametrize('path', OURS)
def test_every_path_on_gpu_matches_the_cpu_and_the_reference(path, shape_id, dtype):
    case = make_case(SHAPES[shape_id], dtype)
    truth = reference_result(case)
    on_gpu = run(ADAPTERS[path], case, mx.gpu(0))
    on_cpu = run(ADAPTERS[path], case, mx.cpu())
    errors = in_units(max_errors(on_gpu, truth), case, truth)
    too_far = {f: round(v, 2) for f, v in errors.items() if v > BOUND}
    assert not too_far, f"{path} on gpu(0), unit roundoffs from the reference: {too_far}"
    cpu_as_truth = {f: on_cpu[f].astype(np.longdouble) for f in FIELDS}
    apart = in_units(max_errors(on_gpu, cpu_as_truth), case, truth)
    too_far = {f: round(v, 2) for f, v in apart.items() if v > BOUND}
    assert not too_far, f"{path}: gpu(0) and cpu(0) apart, in unit roundoffs: {too_far}"


@pytest.mark.parametrize('bn', ['scratch', 'hybrid'])
def test_one_epoch_of_bn_lenet_on_gpu(bn, capsys):
    ctx = mx.gpu(0)
    mx.random.seed(0)
    train = ArrayLoader(*load_fashion_mnist(True), 256, True, ctx=ctx)
    test = ArrayLoader(*load_fashion_mnist(False), 256, False, ctx=ctx)
    net = lenet_bn(bn)
    net.initialize(ctx=ctx, init=init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    start = time.time()
    history = train_ch5(net, train, test, 256, trainer, ctx, 1)
    seconds = time.time() - start
    with capsys.disabled():
        print(f"\n--bn {bn}: one epoch of BN-LeNet on gpu(0) in {seconds:.1f} s, test acc "
              f"{history[0]['test_acc']:.3f}")
    assert history[0]['test_acc'] > 0.7   # one epoch on the CPU: 0.78 to 0.85
