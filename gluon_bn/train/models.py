"""The chapter's LeNet, with batch norm of any kind, wherever the exercises put it."""
from mxnet.gluon import nn

from ..nn import BatchNorm, FirstConv2D, HybridBatchNorm, SyncBatchNorm

BN_CHOICES = ('scratch', 'gluon', 'hybrid', 'sync', 'none')
PLACEMENTS = ('after_affine', 'after_activation', 'conv_only', 'dense_only', 'none')


def batch_norm_layer(bn, channels, num_dims, num_devices=1, **kwargs):
    """A batch-norm layer of kind `bn` for `channels` channels after a layer whose output has
    `num_dims` dimensions (4 after a convolution, 2 after a dense layer)."""
    if bn == 'scratch':
        return BatchNorm(channels, num_dims=num_dims, **kwargs)
    if bn == 'gluon':
        return nn.BatchNorm(**kwargs)
    if bn == 'hybrid':
        return HybridBatchNorm(in_channels=channels, **kwargs)
    return SyncBatchNorm(in_channels=channels, num_devices=num_devices, **kwargs)


def lenet_bn(bn='scratch', num_devices=1, placement='after_affine', use_bias=True,
             **bn_kwargs):
    """LeNet as in d2lzh's batch-norm chapter, and the variants its exercises ask about.

    Parameters
    ----------
    bn : {'scratch', 'gluon', 'hybrid', 'sync', 'none'}
        'scratch': the book's BatchNorm (gluon_bn.BatchNorm); 'gluon': nn.BatchNorm; 'hybrid':
        gluon_bn.HybridBatchNorm, the fast from-scratch drop-in; 'sync': gluon_bn.SyncBatchNorm,
        statistics over the batch of all `num_devices` devices; 'none': the previous chapter's
        LeNet as the book writes it (each sigmoid inside its conv or dense layer), for
        comparison.
    num_devices : int, default 1
        The devices that 'sync' layers share each batch with.
    placement : {'after_affine', 'after_activation', 'conv_only', 'dense_only', 'none'}
        Where batch norm goes: between each conv/dense layer and its sigmoid (the book's), after
        each sigmoid, after the two convolutions only, after the two hidden dense layers only, or
        nowhere (the same network with each sigmoid a layer of its own, so that the first
        layer's output is the first sigmoid's input).
    use_bias : bool, default True
        Whether the layers followed by a batch norm have a bias (batch norm cancels it).
    bn_kwargs
        For every batch-norm layer (use_global_stats=True, scale=False, ...).

    Returns an nn.HybridSequential when every layer can be hybridized, else an nn.Sequential;
    both save their parameters under the same names. The first convolution is a FirstConv2D
    (nn.Conv2D computed by gluon_bn: MXNet's kernel is slow on one input channel), with the same
    parameters as the book's nn.Conv2D.
    """
    if bn not in BN_CHOICES:
        raise ValueError(f"bn must be one of {', '.join(BN_CHOICES)}; got {bn!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
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
    conv_bn = placement in ('after_affine', 'after_activation', 'conv_only')
    dense_bn = placement in ('after_affine', 'after_activation', 'dense_only')

    def block(layer, channels, num_dims, with_bn):
        """The layer, its batch norm and its sigmoid, in the order `placement` says."""
        if not with_bn:
            return net.add(layer, nn.Activation('sigmoid'))
        norm = batch_norm_layer(bn, channels, num_dims, num_devices, **bn_kwargs)
        if placement == 'after_activation':
            return net.add(layer, nn.Activation('sigmoid'), norm)
        return net.add(layer, norm, nn.Activation('sigmoid'))

    block(FirstConv2D(6, use_bias=use_bias or not conv_bn), 6, 4, conv_bn)
    net.add(nn.MaxPool2D(pool_size=2, strides=2))
    block(nn.Conv2D(16, kernel_size=5, use_bias=use_bias or not conv_bn), 16, 4, conv_bn)
    net.add(nn.MaxPool2D(pool_size=2, strides=2))
    block(nn.Dense(120, use_bias=use_bias or not dense_bn), 120, 2, dense_bn)
    block(nn.Dense(84, use_bias=use_bias or not dense_bn), 84, 2, dense_bn)
    net.add(nn.Dense(10))
    return net
