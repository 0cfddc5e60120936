"""The chapter's LeNet with batch normalization after every convolution and dense layer."""
from mxnet.gluon import nn

from .conv import FirstConv2D
from .hybrid import HybridBatchNorm
from .scratch import BatchNorm
from .sync import SyncBatchNorm

# Batch-norm layers by name: (num_features, num_dims, num_devices) -> layer
BN_LAYERS = {
    'scratch': lambda channels, num_dims, num_devices: BatchNorm(channels, num_dims=num_dims),
    'gluon': lambda channels, num_dims, num_devices: nn.BatchNorm(),
    'hybrid': lambda channels, num_dims, num_devices: HybridBatchNorm(in_channels=channels),
    'sync': lambda channels, num_dims, num_devices: SyncBatchNorm(in_channels=channels,
                                                                  num_devices=num_devices),
}
BN_CHOICES = tuple(BN_LAYERS) + ('none',)


def _block(sequential, layer, bn, channels, num_dims, num_devices):
    """layer, then batch norm, then the sigmoid: BN sits between the affine map and the
    activation."""
    sequential.add(layer, BN_LAYERS[bn](channels, num_dims, num_devices),
                   nn.Activation('sigmoid'))


def lenet_bn(bn='scratch', num_devices=1):
    """LeNet as in d2lzh's batch-norm chapter.

    Parameters
    ----------
    bn : {'scratch', 'gluon', 'hybrid', 'sync', 'none'}
        'scratch': the book's BatchNorm (gluon_bn.BatchNorm); 'gluon': nn.BatchNorm; 'hybrid':
        gluon_bn.HybridBatchNorm, the fast from-scratch drop-in; 'sync': gluon_bn.SyncBatchNorm,
        statistics over the batch of all `num_devices` devices; 'none': the previous chapter's
        LeNet, without batch norm, for comparison.
    num_devices : int, default 1
        The devices that 'sync' layers share each batch with.

    Returns an nn.HybridSequential when every layer can be hybridized, else an nn.Sequential; both
    save their parameters under the same names. The first convolution is a FirstConv2D
    (nn.Conv2D computed by gluon_bn: MXNet's kernel is slow on one input channel), the same
    parameters as the book's nn.Conv2D.
    """
    if bn not in BN_CHOICES:
        raise ValueError(f"bn must be one of {', '.join(BN_CHOICES)}; got {bn!r}")
    if bn == 'none':
        net = nn.HybridSequential()
        net.add(FirstConv2D(6, activation='sigmoid'),
                nn.MaxPool2D(pool_size=2, strides=2),
                nn.Conv2D(16, kernel_size=5, activation='sigmoid'),
                nn.MaxPool2D(pool_size=2, strides=2),
                nn.Dense(120, activation='sigmoid'),
                nn.Dense(84, activation='sigmoid'),
                nn.Dense(10))
        return net
    hybrid = bn in ('gluon', 'hybrid') or (bn == 'sync' and num_devices == 1)
    net = nn.HybridSequential() if hybrid else nn.Sequential()
    _block(net, FirstConv2D(6), bn, 6, 4, num_devices)
    net.add(nn.MaxPool2D(pool_size=2, strides=2))
    _block(net, nn.Conv2D(16, kernel_size=5), bn, 16, 4, num_devices)
    net.add(nn.MaxPool2D(pool_size=2, strides=2))
    _block(net, nn.Dense(120), bn, 120, 2, num_devices)
    _block(net, nn.Dense(84), bn, 84, 2, num_devices)
    net.add(nn.Dense(10))
    return net
