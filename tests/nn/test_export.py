"""Deploying a network with gluon_bn layers: its exported graph holds MXNet's own operators only
(gluon_bn.nn.graphs), so it loads and predicts in a process that never imports gluon_bn, in
either array API, and mx.onnx converts it for onnxruntime; the training graph exports too,
exact, for where gluon_bn is."""
import json
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo import get_model
from mxnet import autograd, gluon, init

import gluon_bn
from gluon_bn import HybridBatchNorm, lenet_bn
from gluon_bn.testing import array, array_api
from tests.helpers import checkout_env

NETWORKS = {   # name -> (network, input shape)
    'cifar_resnet20_v1': (lambda: get_model('cifar_resnet20_v1', classes=10,
                                            norm_layer=HybridBatchNorm), (8, 3, 32, 32)),
    'BN-LeNet': (lambda: lenet_bn('hybrid'), (8, 1, 28, 28)),
}


def trained(name, api='nd'):
    """The network after two SGD steps (hybridized with static memory), an input, and what it
    predicts for it."""
    make, shape = NETWORKS[name]
    with array_api(api):
        mx.random.seed(3)
        net = make()
        net.initialize(init.Xavier())
        net.hybridize(static_alloc=True, static_shape=True)
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
        x = array(np.random.default_rng(3).uniform(size=shape), 'float32')
        for _ in range(2):
            with autograd.record():
                loss = (net(x) ** 2).mean()
            loss.backward()
            trainer.step(shape[0])
        return net, x, net(x).asnumpy()


def operators(prefix):
    with open(f'{prefix}-symbol.json') as f:
        return {node['op'] for node in json.load(f)['nodes']}


LOAD_AND_PREDICT = '''
    import sys
    import mxnet as mx
    import numpy as np
    if sys.argv[1] == 'np':
        mx.npx.set_np()
    net = mx.gluon.SymbolBlock.imports(sys.argv[2] + '-symbol.json', ['data'],
                                       sys.argv[2] + '-0000.params')
    x = np.load(sys.argv[2] + '-x.npy')
    y = net((mx.np if sys.argv[1] == 'np' else mx.nd).array(x)).asnumpy()
    assert 'gluon_bn' not in sys.modules
    np.save(sys.argv[2] + '-y.npy', y)
'''


def load_elsewhere(prefix, api):
    """What the exported model predicts in a fresh process that never imports gluon_bn."""
    ran = subprocess.run([sys.executable, '-W', 'ignore', '-c', textwrap.dedent(LOAD_AND_PREDICT),
                          api, prefix], capture_output=True, text=True, timeout=300,
                         env=checkout_env())
    assert ran.returncode == 0, ran.stderr
    return np.load(prefix + '-y.npy')


@pytest.mark.slow
@pytest.mark.parametrize('name, api', [('cifar_resnet20_v1', 'nd'), ('BN-LeNet', 'nd'),
                                       # GluonCV 0.11's models call legacy operators
                                       # (F.Activation): they do not run in NumPy mode
                                       ('BN-LeNet', 'np')])
def test_an_exported_network_predicts_the_same_where_gluon_bn_is_not(tmp_path, name, api):
    net, x, y = trained(name, api)
    prefix = str(tmp_path / 'model')
    with array_api(api):   # MXNet saves the parameters of the API it runs in
        net.export(prefix)   # HybridBlock.export: the graph for prediction
    assert not any('gluon_bn' in op for op in operators(prefix))
    np.save(prefix + '-x.npy', x.asnumpy())
    np.testing.assert_array_equal(load_elsewhere(prefix, api), y)


@pytest.mark.slow
@pytest.mark.parametrize('name', NETWORKS)
def test_an_exported_network_converts_to_onnx_and_onnxruntime_agrees(tmp_path, name):
    pytest.importorskip('onnx', reason="onnx is not installed (pip install '.[onnx]')")
    onnxruntime = pytest.importorskip('onnxruntime', reason="onnxruntime is not installed")
    net, x, y = trained(name)
    prefix = str(tmp_path / 'model')
    gluon_bn.export(net, prefix)
    path = mx.onnx.export_model(f'{prefix}-symbol.json', f'{prefix}-0000.params', [x.shape],
                                [np.float32], str(tmp_path / 'model.onnx'))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3   # no warnings about initializers listed as graph inputs
    session = onnxruntime.InferenceSession(path, options)
    out, = session.run(None, {session.get_inputs()[0].name: x.asnumpy()})
    np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-5 * np.abs(y).max())


@pytest.mark.filterwarnings('ignore:Cannot decide type')   # SymbolBlock over parameters
def test_the_training_graph_exports_and_trains_exactly_where_gluon_bn_is(tmp_path):
    net, x, _ = trained('BN-LeNet')
    prefix = str(tmp_path / 'model')
    gluon_bn.export(net, prefix, training=True)
    assert 'gluon_bn_batch_norm' in operators(prefix)
    loaded = gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'], prefix + '-0000.params')
    for mode in (True, False):   # the graph reads the mode as it runs
        with autograd.record(train_mode=mode):
            ours, theirs = loaded(x).asnumpy(), net(x).asnumpy()
        if mode:   # the same batch statistics, the same operator
            np.testing.assert_array_equal(ours, theirs)
        else:      # running statistics: gluon_bn's operator against MXNet's (net predicts so)
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings('ignore:Cannot decide type')   # SymbolBlock over parameters
def test_a_network_run_only_to_predict_exports_before_training_too(tmp_path):
    """Exported from whichever mode the network last ran in: the graph for prediction."""
    net = lenet_bn('hybrid')
    net.initialize(init.Xavier())
    net.hybridize()
    x = array(np.random.default_rng(4).uniform(size=(4, 1, 28, 28)), 'float32')
    y = net(x).asnumpy()
    prefix = str(tmp_path / 'fresh')
    net.export(prefix)
    assert operators(prefix) >= {'BatchNorm', 'Convolution'} and \
        not any('gluon_bn' in op for op in operators(prefix))
    loaded = gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'], prefix + '-0000.params')
    np.testing.assert_array_equal(loaded(x).asnumpy(), y)


def test_export_says_what_it_needs(tmp_path):
    net = lenet_bn('hybrid')
    net.initialize()
    net.hybridize()
    with pytest.raises(RuntimeError, match='run forward with this block at least once'):
        gluon_bn.export(net, str(tmp_path / 'never-ran'))
