"""Storage dtypes of recurrent state: float32, float16, or bfloat16 kept as its 16 raw bits.

numpy has no bfloat16, so bf16 values live in ``uint16`` arrays holding the upper half of the
float32 bit pattern, rounded to nearest-even (NaN stays NaN), bit-identical to torch's
``.to(torch.bfloat16)`` (a test checks). It is plain numpy integer arithmetic: torch's
conversion was ~10x slower here on small chunks (thread start-up), and ml_dtypes would be a new
dependency for five lines.
"""

from __future__ import annotations

import numpy as np

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
        return float32_to_bfloat16_bits(np.asarray(values, dtype=np.float32))
    raise ValueError(f"state storage must be one of {tuple(STORAGE_NUMPY_DTYPE)}, got {storage!r}")


def decode(stored: np.ndarray, storage: str) -> np.ndarray:
    """Storage form -> float32 array of the same shape."""
    if storage == "bfloat16":
        return bfloat16_bits_to_float32(stored)
    if storage in ("float32", "float16"):
        return np.asarray(stored, dtype=np.float32)
    raise ValueError(f"state storage must be one of {tuple(STORAGE_NUMPY_DTYPE)}, got {storage!r}")


def float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> uint16 bfloat16 bits, rounding to nearest, ties to even; NaN -> quiet NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds the dropped 16 bits to nearest-even.
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1)))) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) | np.uint32(0x0040)).astype(np.uint16)
    return out


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bits -> float32 (exact): the bits become the upper half of each word."""
    bits = np.asarray(bits, dtype=np.uint16)
    out = np.zeros(bits.shape, dtype=np.float32)
    halves = out.reshape(-1).view(np.uint16)
    # One strided write instead of widen + shift + view (the upper half's index is endian-bound).
    upper = 1 if np.little_endian else 0
    halves[upper::2] = bits.reshape(-1)
    return out
