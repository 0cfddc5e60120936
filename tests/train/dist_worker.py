"""A worker for tests/test_dist.py: three steps of BN-LeNet on a dist_sync KVStore, printing a
digest of the trained parameters after each step."""
import hashlib
import os

import gluon_bn  # noqa: F401  first: on the GPU build it loads the CUDA libraries (gluon_bn.utils.cuda)
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd

from gluon_bn import lenet_bn

kv = mx.kv.create('dist_sync')
mx.random.seed(0)   # the same starting parameters on every worker
net = lenet_bn('hybrid')
net.initialize(init=init.Xavier())
net.hybridize()
trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5}, kvstore=kv)
rng = np.random.default_rng(kv.rank)   # each worker its own data
loss = gluon.loss.SoftmaxCrossEntropyLoss()
for step in range(3):
    X, y = nd.array(rng.uniform(size=(32, 1, 28, 28))), nd.array(rng.integers(0, 10, 32))
    with autograd.record():
        l = loss(net(X), y)
    l.backward()
    trainer.step(32 * kv.num_workers)
    digest = hashlib.sha256()
    for name, p in sorted(net._collect_params_with_prefix().items()):
        if p.grad_req != 'null':   # trained parameters; BN statistics stay per worker
            digest.update(p.data().asnumpy().tobytes())
    # One write per line: both workers share the launcher's stdout.
    os.write(1, f'rank {kv.rank} step {step} {digest.hexdigest()}\n'.encode())
