"""python -m gluon_bn: the gluon-bn command line."""
import sys

from gluon_bn.cli import main

sys.exit(main())
