"""Prediction with batch norms folded (gluon_bn.fold) against the same network with them, without
them, and with MXNet's own fusion, optimize_for(backend='MKLDNN'): BN-LeNet and GluonCV's
cifar_resnet20_v1, built with nn.BatchNorm and with HybridBatchNorm, hybridized with static
memory; each network's contenders in turns, each with one thread and with every processor.

MXNet runs synchronously (NaiveEngine), so that each contender's thread count is the OpenMP
setting of this thread, set before each of its rounds.
"""
import ctypes
import warnings

import mxnet as mx
import numpy as np
from mxnet import init, nd
from mxnet.gluon import HybridBlock, nn

from ..nn import HybridBatchNorm, fold
from ..train import engine
from ..train.models import lenet_bn
from .predict import calls_per_round
from .timing import Local, interleaved


class NoNorm(HybridBlock):
    """A batch norm's place in a network built without batch norm."""

    def __init__(self, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k in ('prefix', 'params')}
        super().__init__(**kwargs)

    def hybrid_forward(self, F, x):
        return x


def lenet(layer, with_bn):
    """BN-LeNet or the same layers without batch norm (each sigmoid a layer)."""
    kind = 'gluon' if layer is nn.BatchNorm else 'hybrid'
    return lenet_bn(kind) if with_bn else lenet_bn(kind, placement='none')


def resnet(layer, with_bn):
    from gluoncv.model_zoo import get_model   # a test dependency, loaded when measured
    return get_model('cifar_resnet20_v1', classes=10, norm_layer=layer if with_bn else NoNorm)


NETWORKS = {'BN-LeNet': (lenet, (256, 1, 28, 28)),
            'cifar_resnet20_v1': (resnet, (128, 3, 32, 32))}
LAYERS = {'nn.BatchNorm': nn.BatchNorm, 'HybridBatchNorm': HybridBatchNorm}


def built(make, layer, shape, with_bn):
    mx.random.seed(0)
    net = make(layer, with_bn)
    net.initialize(init.Xavier())
    X = nd.array(np.random.default_rng(0).uniform(size=shape))
    net(X)   # shapes
    if with_bn:   # running statistics of a trained network's kind, not 0 and 1
        for name, param in net.collect_params().items():
            if name.endswith(('running_mean', 'running_var', 'gamma', 'beta')):
                low = 0.5 if name.endswith(('running_var', 'gamma')) else -0.5
                param.set_data(nd.random.uniform(low, low + 1, shape=param.shape))
    return net, X


def contenders(name, layer):
    """label -> a callable predicting a batch, each network hybridized with static memory;
    '+ MKLDNN': then optimize_for(backend='MKLDNN'), which fuses convolutions with their batch
    norm and activation, and dense layers with their activation."""
    make, shape = NETWORKS[name]
    nets = {}
    for label in ('with BN', 'folded', 'without BN'):
        for mkldnn in (False, True):
            net, X = built(make, layer, shape, label != 'without BN')
            if label == 'folded':
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')   # all fold here; a test checks it
                    net = fold(net)
            net.hybridize(static_alloc=True, static_shape=True)
            if mkldnn:
                net.optimize_for(X, backend='MKLDNN', static_alloc=True, static_shape=True)
            nets[label + (' + MKLDNN' if mkldnn else '')] = net
    return {label: (lambda net=net: net(X)) for label, net in nets.items()}


ROUND_S = 0.3   # seconds of calls per contender and round: rounds of one ResNet call are noisy


def with_threads(step, threads):
    def call():
        mx.base.check_call(mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(threads)))
        return step()
    return call


def bench(rounds=7):
    """The table: ms per batch (median of the rounds) and each contender's ratio to the network
    without batch norm, with 1 thread and with every processor, all in turns."""
    if not engine.synchronous_cpu():
        print("note: MXNet's engine was running already: thread counts cannot be set per "
              "contender")
    counts = sorted({1, engine.processors()})
    print(f"MXNet {mx.__version__}, synchronous engine; prediction, ms per batch (median of "
          f"{rounds} rounds, contenders in turns), hybridized with static memory")
    print(f"batch {', '.join(f'{n} for {name}' for name, (_, (n, *_)) in NETWORKS.items())}; "
          f"'+MKLDNN': after optimize_for(backend='MKLDNN'); ratios: f/w folded / without BN, "
          f"f/+ folded / with BN +MKLDNN (MXNet's own fusion), f+/+ folded +MKLDNN / with BN "
          f"+MKLDNN")
    print(f"{'network':18} {'layer':15} {'threads':>7} {'with BN':>8} {'folded':>8} "
          f"{'without':>8} {'+MKLDNN':>8} {'folded+':>8} {'without+':>8}  {'f/w':>5} "
          f"{'f/+':>5} {'f+/+':>5}")
    for name, (_, shape) in NETWORKS.items():
        for layer_name, layer in LAYERS.items():
            steps = contenders(name, layer)
            timed = {(label, n): Local(with_threads(step, n), nd.waitall)
                     for label, step in steps.items() for n in counts}
            for contender in timed.values():
                contender.warm()
            reps = min(calls_per_round(c, ROUND_S) for c in timed.values())
            t = interleaved(timed, rounds, reps, warmed=True)
            for n in counts:
                row = {label.replace(' + MKLDNN', '+'): t[label, n] for label in steps}
                print(f"{name:18} {layer_name:15} {n:7d} {row['with BN']:8.3f} "
                      f"{row['folded']:8.3f} {row['without BN']:8.3f} {row['with BN+']:8.3f} "
                      f"{row['folded+']:8.3f} {row['without BN+']:8.3f}  "
                      f"{row['folded'] / row['without BN']:5.2f} "
                      f"{row['folded'] / row['with BN+']:5.2f} "
                      f"{row['folded+'] / row['with BN+']:5.2f}", flush=True)
    mx.base.check_call(mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(counts[-1])))
