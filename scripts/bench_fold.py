#!/usr/bin/env python3
"""`gluon-bn bench-fold` under this script's earlier name (--help says more)."""
import sys

from gluon_bn.cli import script

sys.exit(script('bench-fold'))
