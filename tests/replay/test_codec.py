"""bfloat16 / float16 state storage round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memrl.replay import codec


def test_bfloat16_bits_match_torch_rounding():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.standard_normal(10_000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 10_000),
            np.array(
                [0.0, -0.0, np.inf, -np.inf, 1e-40, 3.4e38, 1.00390625, 1.01171875],
                dtype=np.float32,
            ),
        ]
    ).astype(np.float32)
    ours = codec.encode(values, "bfloat16")
    want = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, want)
    back = codec.decode(ours, "bfloat16")
    np.testing.assert_array_equal(back, torch.from_numpy(values).to(torch.bfloat16).float().numpy())
    nan = codec.decode(codec.encode(np.array([np.nan], dtype=np.float32), "bfloat16"), "bfloat16")
    assert np.isnan(nan).all()


@pytest.mark.parametrize("storage,rtol", [("float32", 0), ("float16", 1e-3), ("bfloat16", 8e-3)])
def test_round_trip_precision(storage, rtol):
    values = np.random.default_rng(1).uniform(-4, 4, size=(7, 3, 5)).astype(np.float32)
    stored = codec.encode(values, storage)
    assert stored.dtype == codec.STORAGE_NUMPY_DTYPE[storage]
    back = codec.decode(stored, storage)
    assert back.dtype == np.float32 and back.shape == values.shape
    np.testing.assert_allclose(back, values, rtol=rtol, atol=1e-3 if rtol else 0)
    with pytest.raises(ValueError, match="state storage must be one of"):
        codec.encode(values, "int8")
