"""Input validation shared by every batch-norm entry point.

Each check raises a TypeError or ValueError that names what was expected and what was given, and
runs before any statistic is touched, so a bad call never changes the caller's state. No `assert`:
`python -O` would remove it.
"""
import numbers

import numpy as np
from mxnet import nd

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
# What gluon_bn's C++ operators take: batch norm all three, SyncBatchNorm's float32 and float64.
OPERATOR_DTYPES = FLOAT_DTYPES
SYNC_DTYPES = (np.float32, np.float64)


def dtype_name(dtype):
    return np.dtype(dtype).name


def check_input(X, where):
    """X must be a floating-point NDArray of rank 2 (N, C) or 4 (N, C, H, W)."""
    if not isinstance(X, nd.NDArray):
        raise TypeError(f"{where}: X must be an mxnet NDArray, got {type(X).__name__}")
    if X.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where}: X must have a floating-point dtype (float16, float32 or "
                        f"float64), got {dtype_name(X.dtype)}")
    if X.ndim not in (2, 4):
        raise ValueError(f"{where}: X must be 2D (N, C) after a dense layer or 4D (N, C, H, W) "
                         f"after a convolution, got a {X.ndim}D input of shape {X.shape}")
    check_not_empty(X, where)


def check_not_empty(X, where):
    """A batch with no values has no statistics: updating with them would make NaN of the
    running statistics (nn.BatchNorm's do become NaN)."""
    if 0 in X.shape:
        raise ValueError(f"{where}: X of shape {X.shape} holds no values; a batch needs at "
                         f"least one sample")


def check_operator_dtype(X, where, slow_path, dtypes=OPERATOR_DTYPES):
    """Data the C++ operator computes in; for anything else, say what to do."""
    if X.dtype not in dtypes:
        names = ', '.join(dtype_name(d) for d in dtypes[:-1]) + f" or {dtype_name(dtypes[-1])}"
        raise TypeError(f"{where}: gluon_bn's C++ operator takes {names} data, got "
                        f"{dtype_name(X.dtype)}; cast the input, or use {slow_path}")


def check_textbook_dtype(X, where, instead):
    """The textbook formulas take MXNet's reductions in the input's own type, and a float16 sum
    overflows past 65504 (a mean over a LeNet feature map of 147,456 values is infinite)."""
    if X.dtype == np.float16:
        raise TypeError(f"{where}: the textbook formulation sums in the input's dtype, and "
                        f"float16 sums overflow; cast the input to float32, or use {instead}, "
                        f"which sums float16 data in double")


def check_hyperparameters(where, eps_name, eps, momentum_name, momentum):
    """eps a positive finite number, momentum a number in [0, 1]; each named when wrong."""
    for name, value in ((eps_name, eps), (momentum_name, momentum)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{where}: {name} must be a number, got {value!r}")
    if not 0 < eps < float('inf'):
        raise ValueError(f"{where}: {eps_name} must be a positive number, got {eps!r} (with 0, "
                         f"a channel whose values are all equal, as in a batch of one, divides "
                         f"by zero)")
    if not 0 <= momentum <= 1:
        raise ValueError(f"{where}: {momentum_name} must be in [0, 1], got {momentum!r}")


def check_array(name, array, expected_shape, X, where):
    """A parameter or statistic must be an NDArray of the expected shape and of X's dtype."""
    if not isinstance(array, nd.NDArray):
        raise TypeError(f"{where}: {name} must be an mxnet NDArray, got {type(array).__name__}")
    if array.shape != tuple(expected_shape):
        raise ValueError(f"{where}: {name} must have shape {tuple(expected_shape)} for an input of "
                         f"shape {X.shape}, got {array.shape}")
    if array.dtype != X.dtype:
        raise TypeError(f"{where}: {name} has dtype {dtype_name(array.dtype)} but X has "
                        f"{dtype_name(X.dtype)}; use one dtype for both (for a Block: "
                        f"net.cast('{dtype_name(X.dtype)}'))")
