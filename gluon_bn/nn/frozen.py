"""FrozenBatchNorm: a batch norm whose statistics and affine are constants (torchvision's
FrozenBatchNorm2d, detectron2's convert_frozen_batchnorm), for fine-tuning with small batches."""
from mxnet.gluon import HybridBlock, nn

from .. import ops
from . import scratch
from ._norms import BATCH_NORMS, channel_axis, epsilon
from ._tree import check_block, replace, walk


class FrozenBatchNorm(nn.BatchNorm):
    """nn.BatchNorm with everything fixed: it always normalizes with its running statistics, and
    neither they nor gamma and beta change, whatever autograd says.

    Not what `use_global_stats=True` does: that fixes the statistics but still trains gamma and
    beta (MXNet issues #9419, #14596). Here the four parameters are not differentiable
    (grad_req 'null', which setting it to 'write' does not change, as for nn.BatchNorm's running
    statistics): no gradient is kept for them and Trainer.step leaves them as they are. The
    input's gradient still flows through, so the layers before it train.

    A subclass of nn.BatchNorm with its parameters' names and shapes (`gamma`, `beta`,
    `running_mean`, `running_var`): parameter files move between the two, `isinstance(layer,
    nn.BatchNorm)` holds, and its graph is MXNet's own BatchNorm operator (with use_global_stats),
    so it exports, loads without gluon_bn and converts to ONNX. Tools that set
    `use_global_stats` on every nn.BatchNorm (GluonCV's `freeze_bn(net, False)`) do not unfreeze
    it: it reads its statistics in every mode. `update_bn_stats` leaves it out; `fold` folds it.

    Parameters
    ----------
    axis : int, default 1
        The channel axis (-1 or 3 for channels-last).
    epsilon : float, default 1e-5
    scale : bool, default True
        False: gamma is taken as 1 (nn.BatchNorm's scale=False).
    in_channels : int, default 0
        0 infers it from the first input.
    Other keywords as nn.BatchNorm's (initializers, prefix, params; momentum and center are
    accepted and have no effect: nothing is updated or trained).

    Inputs:
        - **data**: any shape with the channels on `axis`.

    Outputs:
        - **out**: (data - running_mean) / sqrt(running_var + epsilon) * gamma + beta.
    """

    def __init__(self, axis=1, epsilon=1e-5, scale=True, in_channels=0, **kwargs):
        if kwargs.get('use_global_stats') is False:
            raise ValueError("FrozenBatchNorm always uses its running statistics; "
                             "use_global_stats=False is nn.BatchNorm's")
        kwargs.pop('use_global_stats', None)
        kwargs.pop('center', None)
        # scale=False and center=False make gamma and beta non-differentiable parameters, as
        # the running statistics are; fix_gamma then says whether gamma is used.
        super().__init__(axis=axis, epsilon=epsilon, center=False, scale=False,
                         use_global_stats=True, in_channels=in_channels, **kwargs)
        self._kwargs['fix_gamma'] = not scale

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        settings = dict(self._kwargs, use_global_stats=True)   # whatever a tool set there
        return ops.mxnet_batch_norm(F, x, gamma, beta, running_mean, running_var, name='fwd',
                                    **settings)

    @classmethod
    def convert(cls, net):
        """Replace every batch norm in `net` by a FrozenBatchNorm with its values, in place.

        Every nn.BatchNorm, and its subclasses (HybridBatchNorm, gluon_bn's and contrib's
        SyncBatchNorm), becomes a FrozenBatchNorm with the same axis, epsilon, scale, parameter
        names and values (or initializers, if the network is not initialized yet): parameter
        files written before or after keep loading, and the network predicts as before. Convert
        before creating the Trainer (it holds the parameters it was given).

        Returns `net` (or a new FrozenBatchNorm when `net` is itself a batch norm). Raises
        ValueError when there is no batch norm to convert, TypeError for the book's
        from-scratch BatchNorm (its parameters have other names and shapes), before changing
        anything.
        """
        check_block(net, 'FrozenBatchNorm.convert')
        found = [(parent, key, block) for parent, key, block in walk(net)
                 if isinstance(block, BATCH_NORMS)]
        for _, _, block in found:
            if isinstance(block, scratch.BatchNorm):
                raise TypeError(f"FrozenBatchNorm.convert: {block.name} is the book's "
                                f"from-scratch BatchNorm, whose parameters (moving_mean, "
                                f"moving_var of shape (1, C, ...)) a FrozenBatchNorm cannot "
                                f"keep under their names; build the network with nn.BatchNorm "
                                f"or HybridBatchNorm to freeze it")
        todo = [(parent, key, block) for parent, key, block in found
                if not isinstance(block, FrozenBatchNorm)]
        if not found:
            raise ValueError(f"FrozenBatchNorm.convert: {net.name} has no batch-norm layer: "
                             f"nothing to freeze")
        for parent, key, block in todo:
            frozen = cls.like(block)
            if parent is None:
                return frozen
            replace(parent, key, frozen)
        for _, _, block in walk(net):   # a graph traced before holds the layers replaced
            if isinstance(block, HybridBlock):
                block._clear_cached_op()
        return net

    @classmethod
    def like(cls, bn):
        """A FrozenBatchNorm with the settings, parameter names and values of `bn`."""
        params = {name: getattr(bn, name) for name in
                  ('gamma', 'beta', 'running_mean', 'running_var')}
        initializers = dict(gamma_initializer=params['gamma'].init,
                            beta_initializer=params['beta'].init,
                            running_mean_initializer=params['running_mean'].init,
                            running_variance_initializer=params['running_var'].init)
        channels = params['gamma'].shape[0] if params['gamma'].shape else 0
        frozen = cls(axis=channel_axis(bn), epsilon=epsilon(bn), scale=not bn._kwargs['fix_gamma'],
                     in_channels=max(channels, 0), prefix=bn.prefix, **initializers)
        try:
            contexts = params['gamma'].list_ctx()
        except RuntimeError:   # not initialized yet: it will be, with the network
            return frozen
        frozen.initialize(ctx=contexts)
        if channels > 0:   # else its shape waits for the first input, as the layer's did
            for name, param in params.items():
                getattr(frozen, name).set_data(param.data(contexts[0]).copy())
        return frozen
