"""HybridBatchNorm as a drop-in for nn.BatchNorm: flags, layouts, export, parameter files, and
GluonCV models that use it as their norm_layer."""

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo import get_model
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from gluon_bn import BatchNorm, HybridBatchNorm, lenet_bn, reference
from gluon_bn.nn import graphs

# Two float32 implementations of the same math, on small inputs: they differ by rounding, which
# stays below 1e-5 relative to each quantity's size here (measured: 4e-7).
RTOL = 1e-5


def assert_close(ours, theirs, what):
    scale = max(float(np.abs(theirs).max()), 1e-3)
    assert np.abs(ours - theirs).max() <= RTOL * scale, what


def train_and_predict(net, x, dy, hybridize, steps=2, layer=None):
    """Two training steps, then a prediction; returns what the comparisons look at (of `layer`,
    by default the net itself)."""
    layer = layer or net
    dtype = 'float16' if x.dtype == np.float16 else 'float32'
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    for _ in range(steps):
        X = nd.array(x, dtype=dtype)
        X.attach_grad()
        with autograd.record():
            Y = net(X)
        Y.backward(nd.array(dy, dtype=dtype))
    out = dict(y=Y.asnumpy(), dx=X.grad.asnumpy(), predict=net(nd.array(x, dtype=dtype)).asnumpy(),
               running_mean=layer.running_mean.data().asnumpy(),
               running_var=layer.running_var.data().asnumpy())
    for name in ('gamma', 'beta'):
        param = getattr(layer, name)
        if param.grad_req != 'null':
            out['d' + name] = param.grad().asnumpy()
    return out


def twins(x, dy, hybridize, **kwargs):
    """HybridBatchNorm and nn.BatchNorm with the same settings and parameters, trained alike."""
    channels = x.shape[kwargs.get('axis', 1)]
    rng = np.random.default_rng(0)
    values = dict(gamma=rng.uniform(0.5, 2, channels), beta=rng.normal(size=channels),
                  running_var=rng.uniform(0.5, 2, channels))
    results = []
    for make in (HybridBatchNorm, nn.BatchNorm):
        layer = make(in_channels=channels, **kwargs)
        layer.initialize()
        for name, value in values.items():
            getattr(layer, name).set_data(nd.array(value))
        results.append(train_and_predict(layer, x, dy, hybridize))
    return results


def data(shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) * 2 + 1, rng.normal(size=shape)


FLAGS = {'default': {}, 'use_global_stats': dict(use_global_stats=True),
         'no-center': dict(center=False), 'no-scale': dict(scale=False),
         'momentum-eps': dict(momentum=0.7, epsilon=1e-3)}
LAYOUTS = {'NCHW': ((6, 3, 5, 4), 1), 'NHWC-axis-1': ((6, 5, 4, 3), -1),
           'NHWC-axis3': ((6, 5, 4, 3), 3), 'dense': ((8, 5), 1)}


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('flags', FLAGS)
def test_matches_nn_batchnorm_twin(flags, layout, hybridize):
    shape, axis = LAYOUTS[layout]
    x, dy = data(shape)
    ours, theirs = twins(x, dy, hybridize, axis=axis, **FLAGS[flags])
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert_close(ours[key], theirs[key], key)


@pytest.mark.parametrize('axis', [-1, 3])
def test_channels_last_matches_the_reference(axis):
    x, dy = data((6, 5, 4, 3))
    layer = HybridBatchNorm(axis=axis, in_channels=3)
    layer.initialize()
    got = train_and_predict(layer, x, dy, hybridize=True, steps=1)
    def nchw(a):
        return a.transpose(0, 3, 1, 2)

    y, mean, var = reference.train_forward(nchw(x), np.ones(3), np.zeros(3), 1e-5)
    dx, _, _ = reference.train_backward(nchw(dy), nchw(x), np.ones(3), 1e-5)
    np.testing.assert_allclose(got['y'], y.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got['dx'], dx.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got['running_mean'], 0.1 * mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got['running_var'], 0.9 + 0.1 * var, rtol=1e-5)


def test_in_channels_is_inferred_on_first_use():
    layer = HybridBatchNorm()
    layer.initialize()
    layer.hybridize()
    assert repr(layer).endswith('in_channels=None)')
    layer(nd.ones((2, 7, 3, 3)))
    assert layer.gamma.shape == (7,)
    assert repr(layer) == ('HybridBatchNorm(axis=1, eps=1e-05, momentum=0.9, fix_gamma=False, '
                           'use_global_stats=False, in_channels=7)')
    assert repr(layer).replace('HybridBatchNorm', 'BatchNorm') == repr(
        nn.BatchNorm(in_channels=7))


@pytest.mark.filterwarnings('ignore:Cannot decide type')   # imports cannot know the input dtype
def test_export_and_symbolblock_imports(tmp_path):
    net = lenet_bn('hybrid')
    net.initialize(init=init.Xavier())
    net.hybridize()
    X = nd.random.uniform(shape=(16, 1, 28, 28))
    with autograd.record():
        net(X).backward()
    prefix = str(tmp_path / 'lenet')
    net.export(prefix)
    imported = gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'], prefix + '-0000.params')
    np.testing.assert_array_equal(imported(X).asnumpy(), net(X).asnumpy())


def test_parameter_files_are_interchangeable_with_nn_batchnorm(tmp_path):
    X = nd.random.uniform(shape=(32, 1, 28, 28))
    for source, target in (('gluon', 'hybrid'), ('hybrid', 'gluon')):
        net = lenet_bn(source)
        net.initialize(init=init.Xavier())
        with autograd.record():
            net(X).backward()    # moves the running statistics away from their initial values
        path = str(tmp_path / f'{source}.params')
        net.save_parameters(path)
        twin = lenet_bn(target)
        twin.load_parameters(path)
        assert_close(twin(X).asnumpy(), net(X).asnumpy(), f'{source} -> {target}')


GLUONCV_MODELS = {'cifar_resnet20_v1': (8, 3, 32, 32), 'resnet18_v1b': (4, 3, 64, 64)}
# In float64 both twins compute exactly enough to compare tightly: outputs and gradients agree
# to 1e-12 of their size (measured: 6e-14). nn.BatchNorm keeps its momentum as a C float, so
# its running statistics, and predictions made with them, are float32-accurate (measured: 3e-7).
GRADIENT_RTOL, STATISTICS_RTOL = 1e-12, 1e-6


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
@pytest.mark.parametrize('name', GLUONCV_MODELS)
def test_gluoncv_model_trains_like_its_nn_batchnorm_twin(name, hybridize, tmp_path):
    X = nd.random.normal(shape=GLUONCV_MODELS[name], dtype='float64')
    label = nd.array(np.arange(X.shape[0]) % 10, dtype='float64')
    nets = [get_model(name, classes=10), get_model(name, classes=10, norm_layer=HybridBatchNorm)]
    nets[0].initialize(init=init.Xavier())
    nets[0].cast('float64')
    nets[0](X)
    nets[0].save_parameters(str(tmp_path / 'start.params'))
    nets[1].cast('float64')
    nets[1].load_parameters(str(tmp_path / 'start.params'))
    results = []
    for net in nets:
        if hybridize:
            net.hybridize()
        with autograd.record():
            out = net(X)
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(out, label)
        loss.backward()
        # Structural names ('features.1.gamma'), as save_parameters writes them: the same for
        # both twins, whatever each layer's class is called.
        params = net._collect_params_with_prefix()
        results.append(dict(
            out=out.asnumpy(), predict=net(X).asnumpy(),
            **{f'grad {k}': p.grad().asnumpy() for k, p in params.items() if p.grad_req != 'null'},
            **{k: p.data().asnumpy() for k, p in params.items() if 'running' in k}))
    theirs, ours = results
    assert theirs.keys() == ours.keys() and len(theirs) > 50
    for key in theirs:
        rtol = STATISTICS_RTOL if key == 'predict' or 'running' in key else GRADIENT_RTOL
        scale = max(float(np.abs(theirs[key]).max()), 1e-3)
        assert np.abs(ours[key] - theirs[key]).max() <= rtol * scale, key


@pytest.mark.parametrize('make, hybridize', [
    (lambda: HybridBatchNorm(in_channels=3), False), (lambda: HybridBatchNorm(in_channels=3), True),
    (lambda: BatchNorm(3, num_dims=4), False)], ids=['HybridBatchNorm', 'hybridized', 'BatchNorm'])
def test_gradients_accumulate_with_grad_req_add(make, hybridize):
    x, dy = data((8, 3, 4, 4))
    grads = []
    for req, steps in (('write', 1), ('add', 2)):
        layer = make()
        layer.initialize()
        layer.collect_params().setattr('grad_req', req)
        if hybridize:
            layer.hybridize()
        X = nd.array(x)
        X.attach_grad(grad_req=req)
        for _ in range(steps):
            with autograd.record():
                Y = layer(X)
            Y.backward(nd.array(dy))
        grads.append([X.grad.asnumpy(), layer.gamma.grad().asnumpy(), layer.beta.grad().asnumpy()])
    for once, twice in zip(*grads):
        np.testing.assert_allclose(twice, 2 * once, rtol=1e-6, atol=1e-7)


def batch_norm_layers(net):
    found = [net] if isinstance(net, nn.BatchNorm) else []
    for child in net._children.values():
        found += batch_norm_layers(child)
    return found


def test_it_is_an_nn_batchnorm_that_gluoncvs_freeze_bn_freezes():
    from gluoncv.utils import freeze_bn
    net = get_model('cifar_resnet20_v1', classes=10, norm_layer=HybridBatchNorm)
    layers = batch_norm_layers(net)
    assert len(layers) == 21 and all(type(layer) is HybridBatchNorm for layer in layers)
    freeze_bn(net)
    assert all(layer._kwargs['use_global_stats'] for layer in layers)
    net.initialize(init=init.Xavier())
    net.hybridize()
    X = nd.random.normal(shape=(4, 3, 32, 32))
    net(X)
    before = [layer.running_mean.data().asnumpy() for layer in layers]
    with autograd.record():
        net(X).sum().backward()
    for layer, mean in zip(layers, before):   # frozen: normalized with, and keeping, the statistics
        np.testing.assert_array_equal(layer.running_mean.data().asnumpy(), mean)
    assert repr(layers[0]) == ("HybridBatchNorm(axis=1, eps=1e-05, momentum=0.9, fix_gamma=False, "
                               "use_global_stats=True, in_channels=16)")


def test_cast_float16_keeps_the_statistics_in_float32_as_nn_batchnorm_does():
    """(MXNet's CPU build has no float16 convolution or dense layer, so a whole GluonCV model
    cannot run in float16 here; the batch-norm layers can, below and in test_regression.)"""
    net = get_model('cifar_resnet20_v1', classes=10, norm_layer=HybridBatchNorm)
    net.initialize(init=init.Xavier())
    net(nd.random.normal(shape=(2, 3, 32, 32)))
    net.cast('float16')
    dtypes = {k: np.dtype(p.dtype).name for k, p in net._collect_params_with_prefix().items()}
    assert {v for k, v in dtypes.items() if k.endswith(('gamma', 'beta', 'running_mean',
                                                       'running_var'))} == {'float32'}
    assert {v for k, v in dtypes.items() if k.endswith('weight')} == {'float16'}


# float16 data, float32 parameters: both twins round y and dx to float16 (unit roundoff 4.9e-4)
# after computing in float32 or wider, so they agree to a few of its units (measured: 1.5e-3).
FLOAT16_RTOL = 4e-3


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
def test_float16_layers_train_like_their_nn_batchnorm_twins(hybridize):
    x, dy = data((16, 4, 6, 6))
    results = []
    for make in (HybridBatchNorm, nn.BatchNorm):
        net = nn.HybridSequential()
        net.add(make(in_channels=4), nn.Activation('relu'), nn.MaxPool2D(), make(in_channels=4))
        net.initialize()
        net.cast('float16')
        results.append(train_and_predict(net, x.astype(np.float16), dy[:, :, :3, :3], hybridize,
                                         layer=net[3]))
    ours, theirs = results
    assert ours['y'].dtype == np.float16
    for key in theirs:
        scale = max(float(np.abs(theirs[key].astype(np.float64)).max()), 1e-3)
        assert np.abs(ours[key].astype(np.float64) - theirs[key]).max() <= FLOAT16_RTOL * scale, key


def test_a_seeded_run_draws_the_same_random_numbers_as_with_nn_batchnorm():
    """The training-mode flag used to come from a Dropout, which drew a random number per call."""
    draws = []
    for bn in ('gluon', 'hybrid'):
        mx.random.seed(3)
        net = lenet_bn(bn)
        net.initialize(init=init.Xavier())
        net.hybridize()
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
        for _ in range(3):
            X = nd.random.uniform(shape=(16, 1, 28, 28))
            with autograd.record():
                loss = net(X).sum()
            loss.backward()
            trainer.step(16)
        net(X)                                  # and a prediction
        draws.append(nd.random.uniform(shape=5).asnumpy())
    np.testing.assert_array_equal(draws[0], draws[1])


def graph_for_both_modes(layer, x):
    """The layer's graph that reads the mode as it runs (gluon_bn.nn.graphs: what
    export(..., training=True) writes), as a block of its own over the layer's parameters."""
    layer.hybridize()
    with autograd.record():
        layer(x)
    symbol = graphs.graph(layer, training=True)
    return gluon.SymbolBlock(symbol, mx.sym.var('data'), params=layer.collect_params())


@pytest.mark.filterwarnings('ignore:Cannot decide type')   # a SymbolBlock over a graph
@pytest.mark.parametrize('mean, var', [(0.0, 0.0), (3e6, 1e-30), (-1e30, 1e30), (-0.0, 1.0)])
def test_the_graphs_mode_probe_holds_for_any_running_statistics(mean, var):
    """In a graph that serves both modes, the mode comes from a BatchNorm probe on the running
    statistics; it must say the mode whatever they are, and leave every bit of them as it
    was."""
    x = nd.array(np.random.default_rng(2).normal(size=(6, 3)))
    outputs = []
    for in_graph in (False, True):   # imperatively the mode is known, not probed
        layer = HybridBatchNorm(in_channels=3, momentum=1.0)   # statistics stay as set
        layer.initialize()
        run = graph_for_both_modes(layer, x) if in_graph else layer
        layer.running_mean.set_data(nd.full(3, mean))
        layer.running_var.set_data(nd.full(3, var))
        with autograd.record():
            training = run(x).asnumpy()
        outputs.append((training, run(x).asnumpy(), layer.running_mean.data().asnumpy(),
                        layer.running_var.data().asnumpy()))
    imperative, probed = outputs
    for ours, theirs in zip(probed, imperative):
        np.testing.assert_array_equal(ours, theirs)
    # With use_global_stats the layer itself writes no statistic: every bit left is the probe's.
    frozen = HybridBatchNorm(in_channels=3, use_global_stats=True)
    frozen.initialize()
    frozen.running_mean.set_data(nd.full(3, mean))
    frozen.running_var.set_data(nd.full(3, var))
    frozen.hybridize()
    before = [frozen.running_mean.data().asnumpy(), frozen.running_var.data().asnumpy()]
    with autograd.record():
        frozen(x).backward()
    after = [frozen.running_mean.data().asnumpy(), frozen.running_var.data().asnumpy()]
    assert [a.tobytes() for a in after] == [b.tobytes() for b in before]


@pytest.mark.parametrize('addto', ['0', '1'])
def test_gradients_accumulate_inside_a_graph(addto, monkeypatch):
    """BN's input made by another operator in the same graph, and used twice (MXNet adds the
    two gradients): grad_req='add' on every parameter still doubles every gradient in two
    steps, also where MXNet may add gradients in place."""
    monkeypatch.setenv('MXNET_EXEC_ENABLE_ADDTO', addto)

    class Net(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.conv = gluon.nn.Conv2D(3, 3, padding=1, in_channels=3)
            self.bn = HybridBatchNorm(in_channels=3)

        def hybrid_forward(self, F, x):
            h = self.conv(x)
            return self.bn(h) * h

    x, dy = data((8, 3, 4, 4))
    grads = []
    for req, steps in (('write', 1), ('add', 2)):
        mx.random.seed(0)
        net = Net()
        net.initialize(init=mx.init.Xavier())
        net.collect_params().setattr('grad_req', req)
        net.hybridize(static_alloc=True, static_shape=True)
        for _ in range(steps):
            with autograd.record():
                Y = net(nd.array(x))
            Y.backward(nd.array(dy))
        grads.append([p.grad().asnumpy() for p in net.collect_params().values()
                      if p.grad_req != 'null'])
    for once, twice in zip(*grads):
        np.testing.assert_allclose(twice, 2 * once, rtol=1e-5, atol=1e-6)


