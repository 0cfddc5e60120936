"""gluon_bn: batch normalization for MXNet Gluon, as taught in Dive into Deep Learning (d2lzh)."""
from . import reference
from .scratch import BatchNorm, batch_norm
from .tutorial import batch_norm2D

__version__ = '0.1.0'
__all__ = ['BatchNorm', 'batch_norm', 'batch_norm2D', 'reference']
