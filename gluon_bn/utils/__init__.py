"""What every part of gluon_bn may use; it imports neither MXNet nor any other part of gluon_bn.

- errors: `Error`, the base of every error gluon_bn names in one line with its way out.
- files: the one atomic file writer, and the check that a result file can be written.
- figures: matplotlib figures drawn and turned into image bytes without pyplot.
- patch: attributes replaced on modules and classes, and put back exactly.
- cuda: MXNet's GPU build loaded with the CUDA libraries of PyPI's wheels (run before mxnet is
  imported, by `import gluon_bn`).
"""
