"""Training, d2l-style: the chapter's LeNet on Fashion-MNIST, on one device or several.

- devices: d2lzh's try_gpu and try_all_gpus, and device names as the command line writes them.
- data: Fashion-MNIST from local files, verified, as one NDArray per split (ArrayLoader).
- models: the chapter's LeNet with any batch norm, placed where the exercises put it.
- loop: d2lzh's train_ch5 and evaluate_accuracy (the one loop), data parallelism, and the plan
  for SyncBatchNorm's devices.
- recipe: the one training recipe (Recipe, Run) and the command line's whole run (train).
- checkpoint: everything needed to continue a run exactly, one file per epoch.
- engine: MXNet's engine and threads for one CPU device.
- dist: the launcher of a distributed KVStore run on this machine.

It builds on gluon_bn.nn (the layers) and knows the one that needs it (SyncBatchNorm); no layer
imports it.
"""
from .data import DataError, load_data_fashion_mnist
from .devices import try_all_gpus, try_gpu
from .loop import evaluate_accuracy, train_ch5
from .models import BN_CHOICES, PLACEMENTS, lenet_bn
from .recipe import Recipe, Run

__all__ = ['BN_CHOICES', 'DataError', 'PLACEMENTS', 'Recipe', 'Run', 'evaluate_accuracy',
           'lenet_bn', 'load_data_fashion_mnist', 'train_ch5', 'try_all_gpus', 'try_gpu']
