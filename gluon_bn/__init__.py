"""gluon_bn: batch normalization for MXNet Gluon, as taught in Dive into Deep Learning (d2lzh).

The package, by concern (each subpackage's docstring says more; README, "Layout"):
- nn: the layers and functions users put in their networks;
- ops: the C++ operators they compute with;
- testing: the NumPy reference and the harness that measures every batch norm against it;
- train: the chapter's LeNet trained d2l-style, checkpoints, several devices or processes;
- book: rerunning the book's own chapters, offline;
- teach: the older tutorial, the bug zoo, the chapter's exercises as experiments;
- bench: speed and accuracy measured against MXNet's own layer and PyTorch;
- cli: the `gluon-bn` command line;
- utils: what all of them share (files, figures, the error type, CUDA libraries).
"""
from .utils import cuda

cuda.preload()   # before anything imports mxnet: the GPU build may need the nvidia-*-cu11 wheels

from .nn import BatchNorm, FirstConv2D, FoldWarning, FrozenBatchNorm, HybridBatchNorm, \
    SyncBatchNorm, batch_norm, batch_norm2D, export, fold, fold_plan, run_on_devices, \
    update_bn_stats
from .testing import reference
from .train import (DataError, evaluate_accuracy, lenet_bn, load_data_fashion_mnist, train_ch5,
                    try_all_gpus, try_gpu)
from .utils.errors import Error

__version__ = '0.1.0'
__all__ = ['BatchNorm', 'DataError', 'Error', 'FirstConv2D', 'FoldWarning', 'FrozenBatchNorm',
           'HybridBatchNorm', 'SyncBatchNorm', 'batch_norm', 'batch_norm2D', 'evaluate_accuracy',
           'export', 'fold', 'fold_plan', 'lenet_bn', 'load_data_fashion_mnist', 'reference',
           'run_on_devices', 'train_ch5', 'try_all_gpus', 'try_gpu', 'update_bn_stats']
