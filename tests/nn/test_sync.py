"""SyncBatchNorm: the whole batch's statistics when the batch is split between devices.

Measured against the extended-precision reference on the concatenated batch (the same cases and
bounds as test_regression), against mxnet.gluon.contrib.nn.SyncBatchNorm, and in training,
against one device that holds the whole batch. MXNet treats cpu(i) as distinct devices.
"""
import functools
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import contrib, nn

from gluon_bn import SyncBatchNorm, lenet_bn, run_on_devices
from gluon_bn.nn import sync
from gluon_bn.testing import APIS, FIELDS, make_case, max_errors, reference_result, run_split, \
    term_magnitudes
from gluon_bn.train.loop import split

DEVICES = {n: [mx.cpu(i) for i in range(n)] for n in (2, 4)}
# 'uneven': 13 samples do not split evenly, so the devices hold different counts.
SHAPES = {'conv': (24, 6, 5, 5), 'dense': (24, 10), 'uneven': (13, 4, 3, 3)}
OUR_BOUND = 8   # unit roundoffs of each field's terms, as in test_regression


@functools.lru_cache(maxsize=None)
def measured(shape_id, dtype, num_devices, drive='joint', layer='ours', api='nd'):
    case = make_case(SHAPES[shape_id], dtype)
    make = OURS if layer == 'ours' else CONTRIB
    result = run_split(functools.partial(make, num_devices=num_devices), case,
                       DEVICES[num_devices], drive, api)
    truth = reference_result(case)
    unit = np.finfo(dtype).eps / 2
    scale = {k: unit * v for k, v in term_magnitudes(case, truth).items()}
    return result, truth, scale


def OURS(case, num_devices):
    return SyncBatchNorm(in_channels=case.channels, num_devices=num_devices,
                         momentum=case.momentum, epsilon=case.eps)


def CONTRIB(case, num_devices):
    return contrib.nn.SyncBatchNorm(in_channels=case.channels, num_devices=num_devices,
                                    momentum=case.momentum, epsilon=case.eps)


def in_units(result, truth, scale):
    errors = max_errors(result, truth)
    return {k: errors[k] / scale[k] for k in FIELDS}


@pytest.mark.parametrize('api', APIS)
@pytest.mark.parametrize('num_devices', DEVICES)
@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('shape_id', SHAPES)
def test_matches_reference_on_the_whole_batch(shape_id, dtype, num_devices, api):
    """In either array API (npx.set_np() reaches the devices' threads)."""
    result, truth, scale = measured(shape_id, dtype, num_devices, api=api)
    units = in_units(result, truth, scale)
    too_far = {k: round(v, 2) for k, v in units.items() if v > OUR_BOUND}
    assert not too_far, f"errors in unit roundoffs, bound {OUR_BOUND}: {too_far}"
    # Every device combines the same moments in the same order: the same bits everywhere.
    for mean, var in result['per_device']:
        assert np.array_equal(mean, result['running_mean'])
        assert np.array_equal(var, result['running_var'])


# contrib's SyncBatchNorm (float32 only) is less exact than ours: up to 22 unit roundoffs of the
# terms measured here (ours: under 1). The two must agree within a few times that, which tells
# the same semantics (whole-batch statistics, biased running variance, momentum) from different
# ones: an unbiased variance alone would move y by 1 / (2 n), thousands of unit roundoffs here.
CONTRIB_BOUND = 64


@pytest.mark.parametrize('num_devices', DEVICES)
@pytest.mark.parametrize('shape_id', ['conv', 'dense'])
def test_matches_contrib_sync_batch_norm(shape_id, num_devices):
    ours, _, scale = measured(shape_id, 'float32', num_devices)
    theirs, _, _ = measured(shape_id, 'float32', num_devices, 'per-thread', 'contrib')
    apart = {k: float(np.max(np.abs(ours[k].astype(np.float64) - theirs[k]))) / scale[k]
             for k in FIELDS}
    too_far = {k: round(v, 1) for k, v in apart.items() if v > CONTRIB_BOUND}
    assert not too_far, f"ours and contrib's apart, in unit roundoffs: {too_far}"
    for mean, var in theirs['per_device']:   # contrib too gives every device the same update
        np.testing.assert_allclose(mean, ours['running_mean'], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(var, ours['running_var'], rtol=1e-5)


@pytest.mark.parametrize('num_devices', DEVICES)
def test_contrib_is_wrong_when_devices_hold_different_counts(num_devices):
    # Found here: contrib's SyncBatchNorm averages the devices' means as if each held the same
    # number of samples, so a batch that does not split evenly (split_and_load with
    # even_split=False, as for an epoch's last batch) gets wrong statistics. Ours weighs each
    # device by its count.
    ours, truth, scale = measured('uneven', 'float32', num_devices)
    theirs, _, _ = measured('uneven', 'float32', num_devices, 'per-thread', 'contrib')
    assert in_units(ours, truth, scale)['y'] <= OUR_BOUND
    assert in_units(theirs, truth, scale)['y'] > 1000


def one_step(net, ctxs, X, y):
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    with autograd.record():
        ls = run_on_devices(lambda X_part, y_part: loss(net(X_part), y_part).sum(),
                            split(X, ctxs), split(y, ctxs))
    autograd.backward(ls)
    trainer.step(X.shape[0])


def test_two_devices_take_the_same_step_as_one_device(tmp_path):
    rng = np.random.default_rng(0)
    X = nd.array(rng.uniform(size=(64, 1, 28, 28)))
    y = nd.array(rng.integers(0, 10, 64), dtype='int32')
    first = lenet_bn('hybrid')
    first.initialize(init=init.Xavier())
    first(X[:1])
    first.save_parameters(str(tmp_path / 'start.params'))
    one = lenet_bn('sync', num_devices=1)   # HybridBatchNorm: the whole batch on one device
    two = lenet_bn('sync', num_devices=2)
    one.load_parameters(str(tmp_path / 'start.params'), ctx=mx.cpu(0))
    two.load_parameters(str(tmp_path / 'start.params'), ctx=DEVICES[2])
    one_step(one, [mx.cpu(0)], X, y)
    one_step(two, DEVICES[2], X, y)
    start = lenet_bn('hybrid')
    start.load_parameters(str(tmp_path / 'start.params'))
    for (name, p1), p2 in zip(one.collect_params().items(), two.collect_params().values()):
        expected = p1.data().asnumpy()
        for ctx in DEVICES[2]:   # parameters and running statistics alike
            np.testing.assert_allclose(p2.data(ctx).asnumpy(), expected, rtol=1e-5, atol=1e-6,
                                       err_msg=name)
    # The step changed every weight and statistic; only the biases of the layers before batch
    # norm may keep still (batch norm subtracts them again: their gradient is 0 up to rounding).
    still = [name for (name, p0), p1 in zip(start.collect_params().items(),
                                            one.collect_params().values())
             if np.allclose(p0.data().asnumpy(), p1.data().asnumpy())]
    assert len(still) <= 4 and all(name.endswith('bias') for name in still), still


@pytest.mark.parametrize('bad', [0, -1, 2.0, True, 'two'])
def test_num_devices_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match='num_devices must be a positive int'):
        SyncBatchNorm(num_devices=bad)


def test_a_missing_device_is_reported(monkeypatch):
    monkeypatch.setattr(sync, 'TIMEOUT_S', 0.5)
    layer = SyncBatchNorm(in_channels=3, num_devices=2)
    layer.initialize(ctx=DEVICES[2])
    with pytest.raises(sync.SyncError, match=r'waited 0.5 s for 2 devices and got 1 '
                                             r'\(cpu ids \[0\]\).*run_on_devices'):
        with autograd.record():
            layer(nd.ones((4, 3)))
    with autograd.record():   # the layer is usable again
        ys = run_on_devices(layer, [nd.ones((4, 3), ctx=ctx) for ctx in DEVICES[2]])
    assert all(np.isfinite(y.asnumpy()).all() for y in ys)


def test_a_failing_device_stops_the_others_at_once():
    layer = SyncBatchNorm(in_channels=3, num_devices=2)
    layer.initialize(ctx=DEVICES[2])
    good, bad = nd.ones((4, 3), ctx=mx.cpu(0)), nd.ones((4, 5), ctx=mx.cpu(1))
    start = time.time()
    with pytest.raises(ValueError, match=r"\(4, 5\) does not have the layer's 3 channels"):
        with autograd.record():
            run_on_devices(layer, [good, bad])
    assert time.time() - start < sync.TIMEOUT_S / 4
    # The meeting is usable again.
    with autograd.record():
        ys = run_on_devices(layer, [nd.ones((4, 3), ctx=ctx) for ctx in DEVICES[2]])
    assert all(np.isfinite(y.asnumpy()).all() for y in ys)


def test_prediction_needs_no_other_device():
    layer = SyncBatchNorm(in_channels=3, num_devices=2)
    layer.initialize(ctx=DEVICES[2])
    x = nd.array(np.arange(12.).reshape(4, 3))
    expected = x / np.sqrt(1 + 1e-5)   # running statistics 0 and 1
    np.testing.assert_allclose(layer(x).asnumpy(), expected.asnumpy(), rtol=1e-6)


def test_hybridization():
    single = SyncBatchNorm(in_channels=3, num_devices=1)
    single.initialize()
    single.hybridize()
    x = nd.random.normal(shape=(5, 3))
    with autograd.record():
        single(x)
    assert single._cached_op is not None   # one device: computed as HybridBatchNorm, hybridized

    layer = SyncBatchNorm(in_channels=3, num_devices=2)
    layer.initialize(ctx=DEVICES[2])
    layer.hybridize()   # several devices: stays imperative
    xs = [nd.ones((4, 3), ctx=ctx) for ctx in DEVICES[2]]
    with autograd.record():
        run_on_devices(layer, xs)

    graph = nn.HybridSequential()
    graph.add(nn.Dense(3, in_units=3), SyncBatchNorm(in_channels=3, num_devices=2))
    graph.initialize(ctx=DEVICES[2])
    graph.hybridize()
    with pytest.raises(TypeError, match='cannot be part of a hybridized graph'):
        with autograd.record():
            graph(xs[0])   # the error comes while the graph is traced, before any meeting


def resident_mb():
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS')) / 1024


def test_memory_stays_flat_over_many_synchronized_steps():
    """A thread per call kept MXNet's per-thread state forever: about 10 MB a step here."""
    devices = DEVICES[2]
    bn = SyncBatchNorm(in_channels=4, num_devices=2)
    bn.initialize(ctx=devices)
    parts = [nd.random.normal(shape=(8, 4, 3, 3), ctx=ctx) for ctx in devices]

    def step():
        with autograd.record():
            losses = run_on_devices(lambda x: (bn(x) ** 2).sum(), parts)
        autograd.backward(losses)
        nd.waitall()

    for _ in range(20):
        step()
    before = resident_mb()
    for _ in range(200):
        step()
    assert resident_mb() - before < 50
