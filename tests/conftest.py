# gluon_bn before mxnet, in every test module: on the GPU build it loads the CUDA libraries.
import gluon_bn  # noqa: F401
