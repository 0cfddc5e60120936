"""PyTorch's side of `gluon-bn bench-peers` (gluon_bn.bench.peers): a worker that times what it
is asked to, one turn at a time, in an environment of its own.

    .venv-peers/bin/python gluon_bn/bench/torch_peer.py --threads 2 --data data.npz

(gluon_bn.bench.peers starts it by its path: it is run as a file, never imported.) GluonCV 0.11,
which gluon_bn's tests and users import, refuses to load beside torch 2, so PyTorch lives in its
own virtual environment (`make peers` creates .venv-peers), and this file imports neither MXNet
nor gluon_bn.

Protocol: one JSON object per line on stdin, one JSON answer per line on stdout.
  {"cmd": "hello"}                               -> {"torch": version, "threads": n}
  {"cmd": "warm", "bn": B, "shape": [...]}       -> {}  (B: "builtin" or "book")
  {"cmd": "round", "bn": B, "shape": [...], "reps": n} -> {"ms": per call}
  (with "predict": true, warm and round time BN-LeNet's prediction, eval() and no_grad(), on a
  batch of that shape instead of one batch-norm layer's forward and backward)
  {"cmd": "epoch", "bn": B}                      -> {"seconds": s, "test_acc": a}
An error comes back as {"error": text}.
"""
import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn

BATCH_SIZE, LR = 256, 1.0


def book_batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """The book's PyTorch port's from-scratch batch_norm (seed 001), as it is written there."""
    if not torch.is_grad_enabled():
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        if X.dim() == 2:
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            mean = X.mean(dim=(0, 2, 3), keepdim=True)
            var = ((X - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        X_hat = (X - mean) / torch.sqrt(var + eps)
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    return gamma * X_hat + beta, moving_mean.data, moving_var.data


class BookBatchNorm(nn.Module):
    """The port's BatchNorm module (seed 001)."""

    def __init__(self, num_features, num_dims):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean, self.moving_var = torch.zeros(shape), torch.ones(shape)

    def forward(self, X):
        Y, self.moving_mean, self.moving_var = book_batch_norm(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var, eps=1e-5, momentum=0.9)
        return Y


def batch_norm_layer(bn, channels, num_dims):
    if bn == 'book':
        return BookBatchNorm(channels, num_dims)
    return (nn.BatchNorm2d if num_dims == 4 else nn.BatchNorm1d)(channels)


class BatchNormStep:
    """One forward + backward of a batch-norm layer on a fixed random batch."""

    def __init__(self, bn, shape):
        self.layer = batch_norm_layer(bn, shape[1], len(shape))
        self.X = torch.randn(shape, requires_grad=True)
        self.dy = torch.randn(shape)

    def __call__(self):
        self.layer(self.X).backward(self.dy)


def lenet(bn):
    """The book port's BN-LeNet (seed 001's network, max-pooling), Xavier-uniform weights."""
    norm = [batch_norm_layer(bn, c, d) for c, d in ((6, 4), (16, 4), (120, 2), (84, 2))]
    net = nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), norm[0], nn.Sigmoid(),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), norm[1], nn.Sigmoid(),
        nn.MaxPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), norm[2], nn.Sigmoid(),
        nn.Linear(120, 84), norm[3], nn.Sigmoid(), nn.Linear(84, 10))
    for m in net.modules():   # the port's init_weights
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
    return net


class PredictStep:
    """BN-LeNet predicting a fixed random batch, as PyTorch predicts: eval() and no_grad()."""

    def __init__(self, bn, shape):
        self.net = lenet(bn).eval()
        self.X = torch.randn(shape)

    def __call__(self):
        with torch.no_grad():
            self.net(self.X)


class LeNetRun:
    """The book port's BN-LeNet trained with SGD at lr 1.0, batch 256, on data preloaded as
    tensors, one epoch (train, then test) per call."""

    def __init__(self, bn, data, seed=0):
        torch.manual_seed(seed)
        self.net = lenet(bn)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR)
        self.loss = nn.CrossEntropyLoss()
        images = lambda x: torch.from_numpy(x[:, None].astype(np.float32) / 255)  # noqa: E731
        labels = lambda y: torch.from_numpy(y).long()  # noqa: E731
        self.train_x, self.train_y = images(data['train_x']), labels(data['train_y'])
        self.test_x, self.test_y = images(data['test_x']), labels(data['test_y'])

    def epoch(self):
        start = time.perf_counter()
        self.net.train()
        order = torch.randperm(len(self.train_x))
        for i in range(0, len(order), BATCH_SIZE):
            index = order[i:i + BATCH_SIZE]
            self.optimizer.zero_grad()
            self.loss(self.net(self.train_x[index]), self.train_y[index]).backward()
            self.optimizer.step()
        self.net.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(self.test_x), BATCH_SIZE):
                y_hat = self.net(self.test_x[i:i + BATCH_SIZE])
                correct += int((y_hat.argmax(dim=1) == self.test_y[i:i + BATCH_SIZE]).sum())
        return {'seconds': time.perf_counter() - start, 'test_acc': correct / len(self.test_x)}


def serve(data_path, lines, answer):
    steps, runs, data = {}, {}, None
    for line in lines:
        request = json.loads(line)
        try:
            cmd = request['cmd']
            if cmd == 'hello':
                answer({'torch': torch.__version__, 'threads': torch.get_num_threads()})
            elif cmd in ('warm', 'round'):
                key = (request.get('predict', False), request['bn'], tuple(request['shape']))
                if key not in steps:
                    steps[key] = (PredictStep if key[0] else BatchNormStep)(*key[1:])
                step = steps[key]
                reps = request.get('reps', 3)
                step()   # untimed: wakes the threads, as the MXNet contenders do
                start = time.perf_counter()
                for _ in range(reps):
                    step()
                answer({'ms': (time.perf_counter() - start) / reps * 1000})
            elif cmd == 'epoch':
                if data is None:
                    data = dict(np.load(data_path))
                if request['bn'] not in runs:
                    runs[request['bn']] = LeNetRun(request['bn'], data)
                answer(runs[request['bn']].epoch())
            else:
                answer({'error': f'unknown command {cmd!r}'})
        except Exception as error:   # the orchestrator shows it and stops
            answer({'error': f'{type(error).__name__}: {error}'})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, required=True)
    parser.add_argument('--data', help='.npz of train_x, train_y, test_x, test_y (for epochs)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = sys.stdout

    def answer(obj):
        out.write(json.dumps(obj) + '\n')
        out.flush()
    serve(args.data, sys.stdin, answer)


if __name__ == '__main__':
    main()
