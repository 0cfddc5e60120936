"""A graph per mode: hybridized networks with gluon_bn layers predict with MXNet's own operators.

MXNet tells a library operator nothing about the mode, and Gluon traces a hybridized network
once, so a gluon_bn layer in a graph reads the mode as the graph runs (ops.mode_flag), and its
operator runs in prediction too. There it costs more than it computes: oneDNN keeps the outputs
of convolutions in a blocked layout of its own, and MXNet converts every array to the plain
layout a library operator takes, and back, around each layer (a GluonCV ResNet predicted in
1.5x nn.BatchNorm's time, although the operator alone is faster than MXNet's).

So a network with gluon_bn layers gets a graph for each mode, traced the first time it runs in
that mode: for training, the layers compute with gluon_bn's operators (the graph still reads the
mode, so it is right in either); for prediction, they are MXNet's own (nn.BatchNorm's and
nn.Conv2D's graphs: the same math, with running statistics). Each call runs the graph of the
mode autograd is in. install() teaches Gluon's HybridBlock this, by wrapping three of its
methods; a block whose graph holds no gluon_bn layer is left as it was. Exporting writes the
prediction graph (export, or HybridBlock.export): a model that loads and predicts wherever MXNet
runs, without gluon_bn, and that mx.onnx converts; export(..., training=True) writes the
training graph, gluon_bn's exact computation, which needs gluon_bn (its operators) to load.
"""
import contextlib
import threading
import types

from mxnet import autograd, nd
from mxnet import symbol as mx_sym
from mxnet import numpy as mx_np
from mxnet.gluon import HybridBlock
from mxnet.gluon.block import _regroup
from mxnet.util import is_np_array

from ..ops import is_numpy

TRAIN, PREDICT = 'train', 'predict'
_state = threading.local()   # the mode of the graph being traced in this thread, and whether
                             # a gluon_bn layer asked for it


def tracing():
    """For a layer whose graph depends on the mode, while it is traced: the mode of the graph
    (TRAIN or PREDICT), or None when the graph is for both. Asking says that the graph depends
    on it: the block being traced then keeps a graph for each mode."""
    mode = getattr(_state, 'mode', None)
    if mode is not None:
        _state.used = True
    return mode


@contextlib.contextmanager
def _traced_for(mode):
    """Graphs traced in this thread are for `mode`; yields a record whose `used` says,
    afterwards, whether a layer asked (tracing())."""
    saved = getattr(_state, 'mode', None), getattr(_state, 'used', False)
    _state.mode, _state.used = mode, False
    record = types.SimpleNamespace(used=False)
    try:
        yield record
    finally:
        record.used = _state.used
        _state.mode, _state.used = saved


def current_mode():
    return TRAIN if autograd.is_training() else PREDICT


_CACHE = ('_cached_graph', '_cached_op', '_cached_op_args')


def _switch(block, mode):
    """Put away the block's graph of the other mode and take out the one for `mode` (None: it
    is traced on this call)."""
    graphs = block.__dict__['_gluon_bn_graphs']
    graphs[graphs['mode']] = tuple(getattr(block, name) for name in _CACHE)
    block._cached_graph, block._cached_op, block._cached_op_args = graphs.pop(
        mode, ((), None, block._cached_op_args))
    graphs['mode'] = mode


def _call_cached_op(original):
    def call(self, *args):
        graphs = self.__dict__.get('_gluon_bn_graphs')
        if graphs is None and self._cached_op is not None:   # no gluon_bn layer: as Gluon does
            return original(self, *args)
        mode = current_mode()
        if graphs is not None and graphs['mode'] != mode:
            _switch(self, mode)
        if self._cached_op is not None:
            return original(self, *args)
        with _traced_for(mode) as traced:
            out = original(self, *args)
        if traced.used:
            self.__dict__.setdefault('_gluon_bn_graphs', {})['mode'] = mode
        return out
    return call


def _clear_cached_op(original):
    def clear(self):
        original(self)
        self.__dict__.pop('_gluon_bn_graphs', None)
    return clear


def graph(block, training=False):
    """The block's graph (a Symbol) for training or for prediction, traced if it was not yet
    (without running anything). The block must have run once, hybridized."""
    if not block._cached_graph:
        raise RuntimeError("Please first call block.hybridize() and then run forward with this "
                           "block at least once before calling export.")
    mode = TRAIN if training else PREDICT
    graphs = block.__dict__.get('_gluon_bn_graphs')
    if graphs is None or graphs['mode'] == mode:
        return block._cached_graph[1]
    if mode in graphs:
        return graphs[mode][0][1]
    # Traced from dummy inputs of the same kinds: tracing reads only their structure and API.
    data = [mx_np.zeros(1) if is_numpy(symbol) else nd.zeros(1)
            for symbol in block._cached_graph[0]]
    saved = block._cached_graph
    block._cached_graph = ()
    try:
        with _traced_for(mode):
            return block._get_graph(*_regroup(data, block._in_format))[1]
    finally:
        block._cached_graph = saved


def trace(block, training=False):
    """The graph of `block` called on one input symbol `data`, for prediction (or training), as a
    legacy Symbol: what it computes, layer by layer, with each parameter a variable of its name.
    Nothing runs, and the block's own cached graph is left as it is."""
    data = mx_sym.var('data')
    if is_np_array():
        data = data.as_np_ndarray()
    with _traced_for(TRAIN if training else PREDICT):
        out = block(data)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    outs = [o.as_nd_ndarray() if is_numpy(o) else o for o in outs]
    return outs[0] if len(outs) == 1 else mx_sym.Group(outs)


def _export(original):
    def export_prediction_graph(self, path, epoch=0, remove_amp_cast=True):
        return export(self, path, epoch, remove_amp_cast=remove_amp_cast, _export=original)
    return export_prediction_graph


def export(block, path, epoch=0, training=False, remove_amp_cast=True, _export=None):
    """HybridBlock.export (path-symbol.json, path-NNNN.params) of the graph for prediction: one
    of MXNet's own operators only, which gluon.SymbolBlock.imports loads and mx.onnx converts
    wherever MXNet runs, gluon_bn or not. training=True: the graph gluon_bn trains with, exact in
    both modes, which needs gluon_bn's operators to load (gluon_bn.ops.load()). The block must
    have run once, hybridized."""
    symbol = graph(block, training)
    # A hybridized block with static memory updates running statistics in place after a read
    # of them may already have been served the old values (MXNet 1.9, nn.BatchNorm's too):
    # let every pending operation finish before the parameters are copied.
    nd.waitall()
    saved = block._cached_graph
    block._cached_graph = (saved[0], symbol)
    try:
        return (_export or _original['export'])(block, path, epoch, remove_amp_cast)
    finally:
        block._cached_graph = saved


_original = {}


def install():
    """Teach Gluon's HybridBlock a graph per mode (once per process)."""
    if _original:
        return
    for name, wrap in (('_call_cached_op', _call_cached_op), ('_clear_cached_op',
                                                              _clear_cached_op),
                       ('export', _export)):
        _original[name] = getattr(HybridBlock, name)
        setattr(HybridBlock, name, wrap(_original[name]))
