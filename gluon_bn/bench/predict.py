"""Whole networks predicting, and taking training steps: gluon_bn's batch norm against
nn.BatchNorm in BN-LeNet and GluonCV's cifar_resnet20_v1, hybridized with and without static
memory, contenders taking turns (and PyTorch's BN-LeNet in eval(), where its worker runs).

A network that only predicts runs the graph Gluon traces for prediction, where gluon_bn's layers
are MXNet's own operators (gluon_bn.nn.graphs); a training step runs gluon_bn's operators.
"""
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from ..nn import HybridBatchNorm
from ..train.models import lenet_bn
from .timing import Local, interleaved, mxnet_contender

ROUND_S = 0.03   # calls per round: about this many seconds of them


def lenet(layer):
    return lenet_bn('gluon' if layer is nn.BatchNorm else 'hybrid')


def resnet(layer):
    from gluoncv.model_zoo import get_model   # a test dependency, loaded when measured
    return get_model('cifar_resnet20_v1', classes=10, norm_layer=layer)


NETWORKS = {'BN-LeNet': (lenet, (1, 28, 28)), 'cifar_resnet20_v1': (resnet, (3, 32, 32))}
LAYERS = {'nn.BatchNorm': nn.BatchNorm, 'gluon_bn': HybridBatchNorm}


def network(name, layer, static):
    make, _ = NETWORKS[name]
    mx.random.seed(0)
    net = make(layer)
    net.initialize(init.Xavier())
    net.hybridize(static_alloc=static, static_shape=static)
    return net


def batch(name, size):
    return nd.array(np.random.default_rng(0).uniform(size=(size,) + NETWORKS[name][1]))


def predicting(name, layer, static, size):
    net, X = network(name, layer, static), batch(name, size)
    return mxnet_contender(lambda: net(X))


def training(name, layer, size):
    """One SGD step (forward, backward, update), with static memory."""
    net, X = network(name, layer, True), batch(name, size)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01})

    def step():
        with autograd.record():
            loss = net(X).mean()
        loss.backward()
        trainer.step(size)
    return mxnet_contender(step)


def calls_per_round(contender, seconds=ROUND_S):
    """How many calls of a warmed contender take about `seconds`, from one timed call."""
    start = time.perf_counter()
    contender.step()
    contender.sync()
    return max(1, round(seconds / max(time.perf_counter() - start, 1e-6)))


def timed(contenders, rounds):
    """Median milliseconds per call, the contenders in turns, each round about ROUND_S (of the
    slowest of this process's contenders), each warmed up once."""
    for contender in contenders.values():
        contender.warm()
    slowest = min(calls_per_round(c) for c in contenders.values() if isinstance(c, Local))
    return interleaved(contenders, rounds, slowest, warmed=True)


def bench_prediction(rounds, peer=None, remote=None):
    """The prediction table. `remote(shape)`: PyTorch's BN-LeNet predicting, when measured."""
    print("Prediction, ms per batch (median of the rounds): hybridized networks that only "
          "predict")
    torch = peer is not None
    print(f"{'network':18} {'memory':7} {'batch':>5} {'nn.BatchNorm':>13} {'gluon_bn':>9} "
          f"{'ratio':>6}" + (f" {'torch eval':>11}" if torch else ''))
    for name in NETWORKS:
        for static in (False, True):
            for size in (1, 32, 128):
                contenders = {label: predicting(name, layer, static, size)
                              for label, layer in LAYERS.items()}
                if torch and name == 'BN-LeNet':
                    contenders['torch'] = remote((size,) + NETWORKS[name][1])
                t = timed(contenders, rounds)
                print(f"{name:18} {'static' if static else 'plain':7} {size:5d} "
                      f"{t['nn.BatchNorm']:13.3f} {t['gluon_bn']:9.3f} "
                      f"{t['gluon_bn'] / t['nn.BatchNorm']:6.2f}"
                      + (f" {t['torch']:11.3f}" if 'torch' in t else ''), flush=True)


def bench_training_steps(rounds):
    """The training-step table: the same networks learning, static memory."""
    print("Training steps, ms per step (forward, backward, SGD update), static memory")
    print(f"{'network':18} {'batch':>5} {'nn.BatchNorm':>13} {'gluon_bn':>9} {'ratio':>6}")
    for name, sizes in (('BN-LeNet', (256,)), ('cifar_resnet20_v1', (32, 128))):
        for size in sizes:
            t = timed({label: training(name, layer, size) for label, layer in LAYERS.items()},
                      rounds)
            print(f"{name:18} {size:5d} {t['nn.BatchNorm']:13.3f} {t['gluon_bn']:9.3f} "
                  f"{t['gluon_bn'] / t['nn.BatchNorm']:6.2f}", flush=True)
