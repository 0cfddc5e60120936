"""The batch-norm layers and functions: what users put in their networks.

- scratch: the book's `batch_norm` and `BatchNorm` (an nn.Block) and the older tutorial's
  `batch_norm2D`, corrected.
- hybrid: `HybridBatchNorm`, an nn.BatchNorm computed by gluon_bn's C++ operator.
- sync: `SyncBatchNorm`, statistics over the whole batch split between devices, and
  `run_on_devices`, which runs each device's forward pass in a thread of its own.
- conv: `FirstConv2D`, the chapter's first convolution as an nn.Conv2D computed in C++.
- frozen: `FrozenBatchNorm`, statistics and affine as constants, and its converter.
- fold: `fold`, a copy of a network for prediction with each batch norm folded into the
  convolution or dense layer before it.
- precise: `update_bn_stats`, exact running statistics over many batches (PreciseBN).
- graphs: a graph per mode for hybridized networks with these layers: gluon_bn's operators for
  training, MXNet's own for prediction and export (installed on import).

Layers compute through gluon_bn.ops and check their input with _checks; they import nothing from
training, the book or the command line.
"""
from . import graphs
from .conv import FirstConv2D
from .fold import FoldWarning, fold, fold_plan
from .frozen import FrozenBatchNorm
from .graphs import export
from .hybrid import HybridBatchNorm
from .precise import update_bn_stats
from .scratch import BatchNorm, batch_norm, batch_norm2D
from .sync import SyncBatchNorm, SyncError, run_on_devices

graphs.install()

__all__ = ['BatchNorm', 'FirstConv2D', 'FoldWarning', 'FrozenBatchNorm', 'HybridBatchNorm',
           'SyncBatchNorm', 'SyncError', 'batch_norm', 'batch_norm2D', 'export', 'fold',
           'fold_plan', 'run_on_devices', 'update_bn_stats']
