"""The linear cores' feature-map activation: the authors' relu can zero a step's key outright,
elu+1 cannot; an unknown name is an error naming the allowed ones."""

import pytest
import torch

from memrl.models import make_core
from memrl.models.linear_attention import GatedFeatures
from memrl.models.relit import ReLiTFeatures

D, H, DH, NU = 8, 2, 4, 2


def _p1_all_negative(features: torch.nn.Module) -> None:
    """Bias the nu-expansion p1 of every head well below zero (relu(p1) = 0 for these inputs)."""
    with torch.no_grad():
        if isinstance(features, ReLiTFeatures):
            bias = features.first.bias.view(H, 5 * DH + 2 * NU)
            bias[:, 5 * DH : 5 * DH + NU] = -10.0
        else:
            features.p123.bias.view(H, 3, NU)[:, 0] = -10.0


@pytest.mark.parametrize("cls", [ReLiTFeatures, GatedFeatures])
def test_relu_can_zero_a_key_and_elu1_cannot(cls) -> None:
    x = torch.randn(3, 5, D, dtype=torch.float64)
    keys = {}
    for name in ("relu", "elu1"):
        torch.manual_seed(0)
        features = cls(D, H, DH, NU, name).double()
        _p1_all_negative(features)
        keys[name] = features(x)["key"]
    assert torch.count_nonzero(keys["relu"]) == 0  # the step is never written to memory
    assert (keys["elu1"] > 0).all()


@pytest.mark.parametrize("core", ["relit", "arelit"])
def test_unknown_feature_map_names_the_allowed_ones(core: str) -> None:
    with pytest.raises(ValueError, match=r"feature_map must be one of \('relu', 'elu1'\)"):
        make_core(core, 4, d_model=8, num_layers=1, num_heads=2, feature_map="softmax")
