"""Folding batch norms into the layer before them, for prediction (PyTorch's fuse_conv_bn_eval and
fuse_linear_bn_eval, mmcv's fuse_conv_bn, for whole Gluon networks).

In prediction a batch norm is a per-channel affine map, y = (x - mean) / sqrt(var + eps) * gamma +
beta. Straight after a convolution or a dense layer, whose output channel c is W[c] . input +
b[c], it is that layer with W[c] * s[c] and (b[c] - mean[c]) * s[c] + beta[c], where s = gamma /
sqrt(var + eps): one layer less to run.

Which batch norm may fold is read from the network's graph (traced in prediction mode, nothing
runs) where the network hybridizes, and from the order of a Sequential's layers where it does
not (the book's from-scratch BatchNorm): a batch norm folds when its input is the output of a
Conv1D/2D/3D (FirstConv2D included) or Dense layer without an activation, on the same channel
axis, and nothing else reads that output. Every other one stays, and `fold` says why.
"""
import collections
import dataclasses
import json
import warnings

import numpy as np
from mxnet.gluon import Block, HybridBlock, nn

from . import graphs
from ._norms import BATCH_NORMS, channel_axis, epsilon, running_statistics, write_everywhere
from ._tree import check_block, copy_network, replace, walk

LAYERS = (nn.Conv1D, nn.Conv2D, nn.Conv3D, nn.Dense)   # FirstConv2D is an nn.Conv2D


class FoldWarning(UserWarning):
    """Some batch norms of a network stay: the message names each and says why."""


@dataclasses.dataclass
class Fold:
    """One batch norm of a network: the layer it folds into, or why it stays."""
    norm: Block
    layer: Block = None
    why: str = None

    @property
    def folded(self):
        return self.why is None

    def __str__(self):
        if self.folded:
            return f"{self.norm.name} folds into {self.layer.name}"
        return f"{self.norm.name} stays: {self.why}"


class Folded(HybridBlock):
    """Where a batch norm was before `fold`: passes its input on. Its repr names the layer that
    now computes it."""

    def __init__(self, norm, layer):
        super().__init__(prefix=norm.prefix)
        self._what = f"{norm.name} into {layer.name}"

    def hybridize(self, active=True, **kwargs):
        """Nothing to compile: it adds no operator to its parent's graph, and alone it is x."""

    def hybrid_forward(self, F, x):
        return x

    def __repr__(self):
        return f"Folded({self._what})"


def fold(net):
    """A copy of `net` for prediction, with every batch norm that directly follows a convolution
    or dense layer folded into it.

    Parameters
    ----------
    net : Block
        Initialized, with its batch norms' running statistics as they should predict: any mix of
        nn.BatchNorm, HybridBatchNorm, FrozenBatchNorm, gluon_bn's and contrib's
        SyncBatchNorm, and the book's BatchNorm, inside Sequential, HybridSequential or blocks
        of their own (GluonCV's residual units), channels first or last.

    Returns
    -------
    Block
        A copy: the same classes and parameter names, where each folded layer has the folded
        weight and bias (a bias added, named `<layer>bias`, where it had none) and each folded
        batch norm is a `Folded` block that passes its input on. It hybridizes, exports and
        converts to ONNX as the original does; `net` itself is not changed. A batch norm that
        cannot fold stays, and a FoldWarning names it and why (`fold_plan(net)` lists them
        without folding).

    Raises ValueError when `net` has no batch norm (nothing to fold) or a layer to fold is not
    initialized.
    """
    check_block(net, 'fold')
    twin = copy_network(net)
    plan = fold_plan(twin)
    place = {id(block): (parent, key) for parent, key, block in walk(twin)}
    for step in plan:
        if step.folded:
            _fold_into(step.layer, step.norm)
            parent, key = place[id(step.norm)]
            replace(parent, key, Folded(step.norm, step.layer))
    stayed = [step for step in plan if not step.folded]
    if stayed:
        warnings.warn(FoldWarning(f"fold: {len(stayed)} of {len(plan)} batch norms stay: "
                                  + "; ".join(f"{step.norm.name} ({step.why})"
                                              for step in stayed)), stacklevel=2)
    return twin


def fold_plan(net):
    """What `fold` would do, without doing it: a Fold for each batch norm of `net`, in the
    order of the network's blocks (`.folded`, `.layer`, `.why`). Raises ValueError when `net`
    has no batch norm."""
    check_block(net, 'fold')
    norms = {id(block) for _, _, block in walk(net) if isinstance(block, BATCH_NORMS)}
    if not norms:
        raise ValueError(f"fold: {net.name} has no batch-norm layer: nothing to fold")
    found = {}
    _read(net, found)
    plan, seen = [], set()
    for parent, _, norm in walk(net):
        if id(norm) not in norms or id(norm) in seen:
            continue
        seen.add(id(norm))
        if id(norm) in found:
            plan.append(found[id(norm)])
        elif parent is None:
            plan.append(Fold(norm, why="it is the whole network: no layer before it"))
        else:
            plan.append(Fold(norm, why=f"its input comes from the Python forward of "
                                       f"{parent.name} ({type(parent).__name__}), which fold "
                                       f"cannot follow (a HybridBlock or a Sequential it can)"))
    return plan


def _read(block, found):
    """Fill `found` (id of a batch norm -> Fold) for the batch norms under `block`."""
    if isinstance(block, BATCH_NORMS):
        return
    failed = None
    if isinstance(block, HybridBlock) and _hybrid_throughout(block):
        try:
            symbol = graphs.trace(block)
        except Exception as error:   # noqa: BLE001 - any block one input cannot trace
            first = str(error).strip().splitlines()[0] if str(error).strip() else ''
            failed = f"the graph of {block.name} could not be traced with one input " \
                     f"({type(error).__name__}: {first})"
        else:
            return _read_graph(block, symbol, found)
    if isinstance(block, (nn.Sequential, nn.HybridSequential)):
        _read_chain(block, found)
    for child in block._children.values():
        _read(child, found)
    if failed:   # what neither the graph nor a Sequential's order told
        for _, _, inner in walk(block):
            if isinstance(inner, BATCH_NORMS) and id(inner) not in found:
                found[id(inner)] = Fold(inner, why=failed)


def _hybrid_throughout(block):
    return all(isinstance(b, HybridBlock) for _, _, b in walk(block))


def _read_graph(root, symbol, found):
    graph = json.loads(symbol.tojson())
    nodes = graph['nodes']
    owners = {}   # parameter name -> the block that has it
    for _, _, block in walk(root):
        for param in block._reg_params.values():
            owners.setdefault(param.name, block)
    readers = collections.Counter()    # (node, output) -> how many read it (graph outputs too)
    op_uses = collections.Counter()    # parameter name -> how many operators take it
    for node in nodes:
        for source, output, _ in node['inputs']:
            readers[source, output] += 1
            if nodes[source]['op'] == 'null':
                op_uses[nodes[source]['name']] += 1
    for source, output, _ in graph['heads']:
        readers[source, output] += 1

    def params_of(node):
        return [nodes[s]['name'] for s, _, _ in node['inputs'] if nodes[s]['op'] == 'null']

    for node in nodes:
        norm = next((owners[p] for p in params_of(node) if isinstance(owners.get(p), BATCH_NORMS)
                     and owners[p].gamma.name == p), None)
        if node['op'] == 'null' or norm is None or id(norm) in found:
            continue
        source, output, _ = node['inputs'][0]
        before = nodes[source]
        layer = next((owners[p] for p in params_of(before) if p in owners
                      and getattr(owners[p], 'weight', None) is not None
                      and owners[p].weight.name == p), None)
        if op_uses[norm.gamma.name] > 1:
            why = f"it runs {op_uses[norm.gamma.name]} times in the graph"
        elif before['op'] == 'null':
            why = f"its input is the input of {root.name}"
        elif layer is None:
            why = f"it follows {_describe_node(before)}, not a convolution or dense layer"
        else:
            why = _cannot_fold(layer, norm)
            if why is None and readers[source, output] > 1:
                why = f"the output of {layer.name} is read by {readers[source, output] - 1} " \
                      f"other layer(s) too"
            if why is None and op_uses[layer.weight.name] > 1:
                why = f"{layer.name} runs {op_uses[layer.weight.name]} times in the graph"
        found[id(norm)] = Fold(norm, layer if why is None else None, why)


def _read_chain(sequence, found):
    """In a Sequential each layer's input is the previous layer's output, and nothing else's."""
    children = list(sequence._children.values())
    for i, child in enumerate(children):
        if not isinstance(child, BATCH_NORMS) or id(child) in found:
            continue
        if i == 0:
            why = f"it is the first layer of {sequence.name}, whose input comes from outside"
        else:
            why = _cannot_fold(children[i - 1], child)
        found[id(child)] = Fold(child, children[i - 1] if why is None else None, why)


def _cannot_fold(layer, norm):
    """Why `norm`, reading the output of `layer`, cannot fold into it; None when it can."""
    if not isinstance(layer, LAYERS):
        if getattr(layer, 'weight', None) is not None:
            return f"it follows {type(layer).__name__} {layer.name}, a layer kind fold does not " \
                   f"fold into (Conv1D, Conv2D, Conv3D and Dense only)"
        return f"it follows {_describe_block(layer)}, not a convolution or dense layer"
    if layer.act is not None:
        return f"it follows the activation ({layer.act._act_type}) inside {layer.name}"
    axis = channel_axis(norm)
    if isinstance(layer, nn.Dense):
        if layer._flatten and axis in (1, -1) or not layer._flatten and axis == -1:
            return None
        where = 'axis 1' if layer._flatten else 'the last axis (flatten=False)'
        return f"it normalizes axis {axis}, but {layer.name} has its outputs on {where}"
    layout = layer._kwargs.get('layout') or 'NC' + 'DHW'[3 - len(layer._kwargs['kernel']):]
    channels = layout.index('C')
    if axis % len(layout) != channels:
        return f"it normalizes axis {axis}, but {layer.name} has its channels on axis " \
               f"{channels} ({layout})"
    return None


def _describe_node(node):
    op, attrs = node['op'], node.get('attrs', {})
    kind = {'Activation': f"an activation ({attrs.get('act_type')})",
            'LeakyReLU': f"an activation ({attrs.get('act_type', 'leaky')})",
            'Pooling': f"a {attrs.get('pool_type', 'max')} pooling",
            'elemwise_add': 'an addition', '_Plus': 'an addition', '_plus': 'an addition',
            'broadcast_add': 'an addition', '_npi_add': 'an addition',
            'Concat': 'a concatenation', 'Flatten': 'a flatten'}.get(op, f"a {op} operator")
    return f"{kind} ({node['name']})"


def _describe_block(block):
    if isinstance(block, nn.Activation):
        return f"an activation ({block._act_type}, {block.name})"
    if 'Pool' in type(block).__name__:
        return f"a pooling ({block.name})"
    return f"{type(block).__name__} {block.name}"


def _values(param, who):
    try:
        return param.data(param.list_ctx()[0]).asnumpy().astype(np.float64)
    except Exception as error:   # noqa: BLE001 - RuntimeError or DeferredInitializationError
        raise ValueError(f"fold: {who} is not initialized ({param.name}): initialize the "
                         f"network and run it once before folding") from error


def _fold_into(layer, norm):
    """Fold the batch norm `norm` into `layer` (of the copy), in float64, then the layer's dtype."""
    fix_gamma = isinstance(norm, nn.BatchNorm) and norm._kwargs['fix_gamma']
    gamma, beta, mean, var = (_values(param, norm.name).reshape(-1) for param in
                              (norm.gamma, norm.beta, *running_statistics(norm)))
    scale = (1.0 if fix_gamma else gamma) / np.sqrt(var + epsilon(norm))
    weight = _values(layer.weight, layer.name)
    if weight.shape[0] != scale.shape[0]:
        raise ValueError(f"fold: {layer.name} has {weight.shape[0]} outputs, but {norm.name} "
                         f"normalizes {scale.shape[0]} channels")
    bias = (_values(layer.bias, layer.name) if layer.bias is not None
            else np.zeros(weight.shape[0]))
    if layer.bias is None:
        layer.bias = layer.params.get('bias', shape=(weight.shape[0],), init='zeros',
                                      dtype=layer.weight.dtype, allow_deferred_init=True)
        layer.bias.initialize(ctx=layer.weight.list_ctx())
        if 'no_bias' in layer._kwargs:   # a convolution passes it to its operator
            layer._kwargs['no_bias'] = False
    write_everywhere(layer.weight, weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1)))
    write_everywhere(layer.bias, (bias - mean) * scale + beta)
