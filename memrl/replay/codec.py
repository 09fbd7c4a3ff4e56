"""Storage dtypes of recurrent state: float32, float16, or bfloat16 kept as its 16 raw bits.

numpy has no bfloat16, so bf16 values live in ``uint16`` arrays holding the upper half of the
float32 bit pattern. The conversion goes through torch (already a dependency of memrl.models),
which rounds to nearest-even and handles NaN/inf; no extra package is needed.
"""

from __future__ import annotations

import numpy as np
import torch

STORAGE_NUMPY_DTYPE = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(np.uint16),
}


def encode(values: np.ndarray, storage: str) -> np.ndarray:
    """float array -> its storage form (dtype ``STORAGE_NUMPY_DTYPE[storage]``)."""
    if storage == "float32":
        return np.asarray(values, dtype=np.float32)
    if storage == "float16":
        return np.asarray(values, dtype=np.float16)
    if storage == "bfloat16":
        as_f32 = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        return as_f32.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    raise ValueError(f"state storage must be one of {tuple(STORAGE_NUMPY_DTYPE)}, got {storage!r}")


def decode(stored: np.ndarray, storage: str) -> np.ndarray:
    """Storage form -> float32 array of the same shape."""
    if storage == "bfloat16":
        bits = torch.from_numpy(np.ascontiguousarray(stored).view(np.int16))
        return bits.view(torch.bfloat16).to(torch.float32).numpy()
    if storage in ("float32", "float16"):
        return np.asarray(stored, dtype=np.float32)
    raise ValueError(f"state storage must be one of {tuple(STORAGE_NUMPY_DTYPE)}, got {storage!r}")
