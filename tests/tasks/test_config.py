"""Config: validated on construction, frozen, layered, serialisable."""

from __future__ import annotations

import dataclasses

import pytest

from tasks.config import PipelineConfig, load_config, profile_names, safe_run_id
from tasks.exceptions import ConfigError


def test_seed_profile_is_the_original_setup():
    cfg = load_config("seed")
    assert (cfg.model.backbone, cfg.data.image_size, cfg.data.source) == ("efficientnetb0", 224, "tfds:cats_vs_dogs")
    assert cfg.data.split == (0.7, 0.2, 0.1) and cfg.model.head_units == (512, 64)
    assert cfg.train.learning_rate == 1e-4 and cfg.model.weights == "imagenet"


@pytest.mark.parametrize("name", profile_names())
def test_profiles_round_trip(name):
    cfg = load_config(name)
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_config("demo").train.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"train.epochs": 0}, "train.epochs=0"), ({"data.split": [0.5, 0.5, 0.5]}, "summing to 1"),
     ({"quantize.int8_io_dtype": "int16"}, "int8_io_dtype"), ({"model.backbone": "resnet"}, "model.backbone"),
     ({"train.epochz": 3}, "unknown key"), ({"train.epochs": "3"}, "expected int"),
     ({"model.weights": "imagenet", "model.backbone": "tiny"}, "no pretrained weights"),
     ({"quantize.calibration_samples": 0}, "calibration_samples"), ({"evaluate.latency_runs": 10}, ">= 50"),
     ({"bench.runs": 99}, ">= 100"), ({"execution.runner": "lambda"}, "execution.runner"),
     ({"execution.memory_limit": "lots"}, "memory_limit")],
)
def test_invalid_values_name_the_field(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("demo", overrides)


def test_safe_run_id():
    assert safe_run_id("scheduled__2026-11-23T02:00:00+00:00") == "scheduled__2026-11-23T02_00_00_00_00"
    with pytest.raises(ConfigError):
        safe_run_id("::")
