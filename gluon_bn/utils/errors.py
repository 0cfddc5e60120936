"""The error type gluon_bn's own errors share."""


class Error(Exception):
    """A problem gluon_bn names in one line, with the way out: Fashion-MNIST files that are
    missing or damaged, a checkpoint of another run, an operator that cannot be built, a chapter
    that cannot be read, ... Each kind also derives from the built-in exception it is closest to
    (ValueError, RuntimeError, ...).

    `except gluon_bn.Error` catches all of them; the command line prints one as
    `gluon-bn COMMAND: error: MESSAGE` and exits with status 1.
    """
