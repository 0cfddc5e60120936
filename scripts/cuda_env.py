"""Print the shell line that lets any Python program import MXNet's GPU build directly.

`import gluon_bn` finds the CUDA libraries of the nvidia-*-cu11 wheels by itself; code that
imports mxnet first (the book's chapter code, as readers type it) needs them on the loader's
path instead:

    eval "$(python scripts/cuda_env.py)"
    python my_chapter_copy.py
"""
import os

from gluon_bn import cuda

folders = sorted({os.path.dirname(path) for path in cuda.loaded.values()})
if folders:
    print(f"export LD_LIBRARY_PATH={':'.join(folders)}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}")
else:
    print("# libmxnet.so loads as it is (CPU build, or a system CUDA): nothing to add")
