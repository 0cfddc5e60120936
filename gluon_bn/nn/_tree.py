"""A network as a tree of blocks: walking it, copying it, putting one block in another's place.

Gluon 1.x keeps a block's children in `_children` (attribute name or position -> block), and a
child assigned as an attribute also under that attribute; these helpers keep both in step.
"""
import copy

from mxnet.gluon import Block, HybridBlock

# What a hybridized block caches of its traced graph: a copy starts without it (it traces again
# on its first call), and a CachedOp cannot be copied anyway.
_CACHED = {'_cached_op': None, '_cached_graph': (), '_cached_op_args': []}


def walk(block, parent=None, key=None):
    """Every block of the tree, parents first: (parent, key, block); the root's parent is None."""
    yield parent, key, block
    for name, child in list(block._children.items()):
        yield from walk(child, block, name)


def replace(parent, key, new):
    """Put `new` where parent's child `key` is (position in a Sequential, or attribute)."""
    old = parent._children[key]
    parent._children[key] = new
    if parent.__dict__.get(key) is old:   # Block.__setattr__ refuses a change of type
        object.__setattr__(parent, key, new)


def copy_network(net):
    """A deep copy of `net`: its own parameters (same names and values), nothing shared, the
    original untouched; hybridized blocks trace their graph again on the first call."""
    memo = {}
    for _, _, block in walk(net):
        for name in (*_CACHED, '_gluon_bn_graphs'):
            if name in block.__dict__:
                memo[id(block.__dict__[name])] = None
    twin = copy.deepcopy(net, memo)
    for _, _, block in walk(twin):
        if isinstance(block, HybridBlock):
            for name, empty in _CACHED.items():
                block.__dict__[name] = copy.copy(empty)
            block.__dict__.pop('_gluon_bn_graphs', None)
    return twin


def check_block(net, who):
    if not isinstance(net, Block):
        raise TypeError(f"{who}: expects a Gluon Block (a network or a layer), got "
                        f"{type(net).__name__}")
