"""Every backbone builds with the seed's head; ImageNet weights are supported but never required."""

from __future__ import annotations

import pytest

from tasks.config import load_config
from tasks.exceptions import ConfigError
from tasks.models import build_model


@pytest.mark.parametrize("backbone", ["efficientnetb0", "mobilenetv2", "tiny"])
def test_backbone_with_seed_head(backbone):
    cfg = load_config("seed", {"model.backbone": backbone, "model.weights": "none", "data.image_size": 32})
    model = build_model(cfg, num_classes=2)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 2)
    dense = [layer.units for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert dense == [512, 64, 2]
    assert any(layer.__class__.__name__ == "BatchNormalization" for layer in model.layers)
    assert any(layer.__class__.__name__ == "Dropout" for layer in model.layers)


def test_imagenet_weights_need_three_channels():
    cfg = load_config("seed", {"data.channels": 1, "data.image_size": 32})
    with pytest.raises(ConfigError, match="needs data.channels=3"):
        build_model(cfg, num_classes=2)
