"""gluon_bn's C++ MXNet operators: how they are built and loaded (library), and the one place
that calls them (operators). The layers of gluon_bn.nn compute through these; nothing here knows
a layer.

Why C++: MXNet's Python CustomOp calls back into Python on every use (which costs as much as the
whole fused op at LeNet's sizes) and, with oneDNN, can be handed inputs in a layout it then
misreads; a library operator runs like a built-in one, imperatively, in hybridized graphs and in
exported models, and MXNet gives it plain-layout inputs.
"""
from .library import (BuildError, FLAGS, build, cache_dir, compiler, intact, library_path,
                      load)
from .operators import (PROBE_ROW, array_api, batch_norm, combine, conv, is_numpy, mode_flag,
                        moments, mxnet_batch_norm, normalize)

__all__ = ['BuildError', 'FLAGS', 'PROBE_ROW', 'array_api', 'batch_norm', 'build', 'cache_dir',
           'combine', 'compiler', 'conv', 'intact', 'is_numpy', 'library_path', 'load',
           'mode_flag', 'moments', 'mxnet_batch_norm', 'normalize']
