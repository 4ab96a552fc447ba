"""Array type aliases and the input checks of the kernels' typed wrappers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F8 = npt.NDArray[np.float64]
F4 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]


def want(arr: npt.NDArray[np.generic], dtype: type[np.generic], name: str) -> None:
    """Raise ValueError unless ``arr`` is a contiguous 1-D array of ``dtype``."""
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D {np.dtype(dtype).name} array")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be contiguous")


def want_2d(arr: F8, columns: int, name: str) -> None:
    """Raise ValueError unless ``arr`` is a contiguous float64 array of ``columns`` columns."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D float64 array")
    if arr.shape[1] != columns or not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be contiguous with {columns} columns")


def same_size(*arrays: npt.NDArray[np.generic]) -> None:
    """Raise ValueError unless all arrays have the same length."""
    sizes = {len(a) for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"arrays differ in length: {sorted(sizes)}")
