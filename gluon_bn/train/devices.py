"""Which device to train on, d2lzh-style."""
import mxnet as mx
from mxnet import nd


def works(ctx):
    """Whether MXNet can put an array on ctx."""
    if ctx.device_type == 'gpu' and ctx.device_id >= mx.context.num_gpus():
        return False   # asking MXNet would print its own error log first
    try:
        nd.zeros(1, ctx=ctx).wait_to_read()
        return True
    except mx.base.MXNetError:
        return False


def try_gpu():
    """gpu(0) if a GPU works, else cpu(0)."""
    ctx = mx.gpu(0)
    return ctx if works(ctx) else mx.cpu()


def try_all_gpus():
    """Every GPU that works, or [cpu(0)] if none does."""
    gpus = [mx.gpu(i) for i in range(mx.context.num_gpus())]
    return [ctx for ctx in gpus if works(ctx)] or [mx.cpu()]


def parse_context(text):
    """'cpu', 'gpu', 'cpu:0', 'gpu:1' -> an MXNet context (for command-line options)."""
    kind, _, index = text.partition(':')
    if kind not in ('cpu', 'gpu') or not (index or '0').isdigit():
        raise ValueError(f"expected cpu, gpu, cpu:N or gpu:N, got {text!r}")
    return mx.Context(kind, int(index or 0))
