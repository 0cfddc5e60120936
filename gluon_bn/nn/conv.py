"""FirstConv2D: the chapter's first convolution (one input channel, 5x5 windows) as
mxnet.gluon.nn.Conv2D, computed by gluon_bn."""
import mxnet as mx
from mxnet import nd
from mxnet.gluon import nn

from .. import ops
from . import graphs


class FirstConv2D(nn.Conv2D):
    """nn.Conv2D(channels, kernel_size=5, in_channels=1) whose convolution gluon_bn's C++
    operator computes on the CPU: the first layer of the chapter's LeNet, which MXNet's oneDNN
    kernel runs slowly (README, Speed: one input channel into six).

    Parameters `weight` (channels, 1, 5, 5) and `bias` (channels,), as nn.Conv2D names and
    shapes them, so parameter files move between the two. `activation` and `use_bias` as
    nn.Conv2D's (without a bias, MXNet's kernel computes). Each output sums its 25 products in
    the same order; the gradients of the weights and bias are summed over the batch in double,
    in fixed blocks of samples, so the bits do not depend on the number of threads (they differ
    from MXNet's in the last places). Where a GPU may run the graph (a machine with one),
    MXNet's own kernel computes.

    Inputs:
        - **data**: float32 (N, 1, H, W), H and W at least 5.

    Outputs:
        - **out**: (N, channels, H - 4, W - 4).
    """

    def __init__(self, channels, activation=None, use_bias=True, **kwargs):
        super().__init__(channels, kernel_size=5, in_channels=1, activation=activation,
                         use_bias=use_bias, **kwargs)
        ops.load()

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray) and (x.ndim != 4 or x.shape[1] != 1 or min(x.shape[2:]) < 5):
            raise ValueError(f"{self.name}: expects input of shape (N, 1, H, W) with H and W at "
                             f"least 5, got {x.shape}")
        return super().forward(x, *args)

    def hybrid_forward(self, F, x, weight, bias=None):
        # A traced graph has no device yet: where a GPU exists, it might run there.
        on_cpu = x.context.device_type == 'cpu' if F is nd else mx.context.num_gpus() == 0
        if not on_cpu or bias is None:   # the operator always adds a bias
            return super().hybrid_forward(F, x, weight, bias)
        if F is not nd and graphs.tracing() == graphs.PREDICT:
            # nn.Conv2D's graph, with the convolution of the input's API (nn.Conv2D takes the one
            # of the API it was built in)
            convolution = F.npx.convolution if ops.is_numpy(x) else F.Convolution
            out = convolution(x, weight, bias, name='fwd', **self._kwargs)
        else:
            out = ops.conv(F, x, weight, bias)
        return self.act(out) if self.act is not None else out
