#!/usr/bin/env python3
"""The PyTorch worker of `gluon-bn bench-peers`, under its earlier name: it runs
gluon_bn/bench/torch_peer.py as a file (in .venv-peers, where neither MXNet nor gluon_bn is)."""
import os
import runpy

runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'gluon_bn',
                            'bench', 'torch_peer.py'), run_name='__main__')
