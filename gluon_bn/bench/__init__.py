"""Measuring gluon_bn: speed against MXNet's own layer and PyTorch, and accuracy against the
reference.

- timing: contenders that take turns, round by round, and the medians of their rounds.
- bn: each batch-norm path against MXNet's fused nn.BatchNorm, and BN-LeNet training steps.
- epoch: a BN-LeNet epoch, the book's pipeline against the training recipe.
- predict: whole networks (BN-LeNet, GluonCV's cifar_resnet20_v1) predicting and taking
  training steps, gluon_bn's batch norm against nn.BatchNorm.
- peers: batch norm and BN-LeNet epochs against PyTorch, which runs in torch_peer.py, a worker
  in an environment of its own (run as a file: it imports neither MXNet nor gluon_bn).
- accuracy: the largest error of every path against the extended-precision reference.
"""
