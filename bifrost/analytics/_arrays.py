"""numpy, imported when an array is first needed, and float64 arrays without a copy when they already are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bifrost._extras import require

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray


def numpy() -> Any:
    """The numpy module, or an ImportError naming the `analytics` extra."""
    return require("numpy", "analytics")


def floats(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """`values` as a contiguous 1-d float64 array: the same array when it is one already (no copy)."""
    array: NDArray[np.float64] = numpy().ascontiguousarray(values, dtype="float64")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-d, not of shape {array.shape}")
    return array


def flags(values: ArrayLike | None, name: str) -> NDArray[np.bool_] | None:
    """`values` as a contiguous 1-d bool array, or None."""
    if values is None:
        return None
    array: NDArray[np.bool_] = numpy().ascontiguousarray(values, dtype="bool")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-d, not of shape {array.shape}")
    return array
