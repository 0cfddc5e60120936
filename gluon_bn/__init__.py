"""gluon_bn: batch normalization for MXNet Gluon, as taught in Dive into Deep Learning (d2lzh)."""
from . import cuda

cuda.preload()   # before anything imports mxnet: the GPU build may need the nvidia-*-cu11 wheels

from . import reference
from .context import try_all_gpus, try_gpu
from .data import DataError, load_data_fashion_mnist
from .hybrid import HybridBatchNorm
from .model import lenet_bn
from .scratch import BatchNorm, batch_norm
from .sync import SyncBatchNorm, run_on_devices
from .train import evaluate_accuracy, train_ch5
from .tutorial import batch_norm2D

__version__ = '0.1.0'
__all__ = ['BatchNorm', 'DataError', 'HybridBatchNorm', 'batch_norm', 'batch_norm2D',
           'evaluate_accuracy',
           'lenet_bn', 'load_data_fashion_mnist', 'reference', 'run_on_devices', 'SyncBatchNorm',
           'train_ch5', 'try_all_gpus', 'try_gpu']
