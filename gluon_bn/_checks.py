"""Input validation shared by every batch-norm entry point.

Each check raises a TypeError or ValueError that names what was expected and what was given, and
runs before any statistic is touched, so a bad call never changes the caller's state. No `assert`:
`python -O` would remove it.
"""
import numpy as np
from mxnet import nd

FLOAT_DTYPES = (np.float16, np.float32, np.float64)


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
