"""Config: validated on construction, frozen, layered, serialisable."""

from __future__ import annotations

import dataclasses

import pytest

from tasks.core.config import PipelineConfig, load_config, profile_names
from tasks.core.exceptions import ConfigError
from tasks.core.keys import safe_run_id


def test_seed_profile_is_the_original_setup():
    cfg = load_config("seed")
    assert (cfg.model.backbone, cfg.data.image_size, cfg.data.source) == ("efficientnetb0", 224, "tfds:cats_vs_dogs")
    assert cfg.data.split == (0.7, 0.2, 0.1) and cfg.model.head_units == (512, 64)
    assert cfg.train.learning_rate == 1e-4 and cfg.model.weights == "imagenet"


@pytest.mark.parametrize("name", profile_names())
def test_profiles_round_trip(name):
    cfg = load_config(name)
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg


def test_the_folder_profile_is_a_demo_style_recipe_for_your_own_images():
    """``folder`` (what benchmarks/small_dataset.py trains with, no overrides): demo-sized, and told that a class
    of a user's images does not depend on pose or colour."""
    cfg = load_config("folder", {"data.source": "s3://datasets/my-shapes"})
    assert "folder" in profile_names() and cfg.ships
    assert cfg.model.backbone == "auto" and cfg.model.weights == "none" and 48 <= cfg.data.image_size <= 64
    augment = cfg.train.augment
    assert augment.flip == "horizontal_and_vertical" and augment.rotation == 0.5 and augment.color
    assert cfg.train.early_stopping_patience > 0 and cfg.train.lr_floor > 0 and cfg.train.deterministic
    assert {"pruned", "qat_int8"} <= set(cfg.quantize.modes) and cfg.quantize.int8_rescue
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


def test_safe_run_id_is_stable_and_injective():
    scheduled = safe_run_id("scheduled__2026-11-23T02:00:00+00:00")
    assert scheduled.startswith("scheduled__2026-11-23T02_00_00_00_00-") and safe_run_id(scheduled) == scheduled
    assert safe_run_id("nightly-42") == "nightly-42"  # already safe: unchanged
    assert len({safe_run_id(r) for r in ("a:b", "a+b", "a b", "a_b")}) == 4
    assert safe_run_id("::").startswith("run-")


@pytest.mark.parametrize("bad", ["-rf", ".hidden", "x.partial", "r\n", "a\tb", "", "x" * 201])
def test_run_ids_a_path_or_shell_could_misread_are_refused(bad):
    with pytest.raises(ConfigError, match="run id"):
        safe_run_id(bad)


@pytest.mark.parametrize(("override", "message"), [
    ({"data.seed": -1}, "data.seed"),
    ({"model.head_units": [1.5, 2]}, r"model.head_units\[0\]: expected int"),
    ({"data.split": "0.7,0.2,x"}, r"data.split\[2\]: expected float"),
])
def test_bad_values_fail_at_config_time(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("demo", override)


def test_lists_parse_the_way_the_readme_shows():
    assert load_config("demo", {"data.split": "0.7,0.2,0.1"}).data.split == (0.7, 0.2, 0.1)
