"""The mode table is the one place a quantization mode is described: config, the form and the builders read it."""

from __future__ import annotations

import pytest

from tasks.core import modes
from tasks.core.config import load_config
from tasks.core.exceptions import ConfigError


def test_every_tfmot_mode_names_a_finetuning_that_exists():
    from tasks.ml.tfmot_variants import FINETUNES

    for name in modes.TFMOT_MODES:
        assert modes.get(name).tfmot in FINETUNES, name


def test_partition_and_calibration_follow_the_table():
    assert set(modes.PTQ_MODES) | set(modes.TFMOT_MODES) == set(modes.QUANT_MODES)
    assert not set(modes.PTQ_MODES) & set(modes.TFMOT_MODES)
    assert [m for m in modes.QUANT_MODES if modes.get(m).needs_calibration] == ["int8", "qat_int8"]
    assert load_config("tiny", {"quantize.modes": ["fp32", "fp16"]}).quantize.needs_calibration is False
    assert load_config("tiny", {"quantize.modes": ["fp32", "int8"]}).quantize.needs_calibration is True


@pytest.mark.parametrize(("mode", "io", "expected"), [
    ("fp32", "uint8", "float32"), ("pruned", "uint8", "float32"), ("int8", "uint8", "uint8"),
    ("qat_int8", "uint8", "uint8"), ("qat_int8", "int8", "int8"),
])
def test_io_dtype_of_each_variant(mode, io, expected):
    assert modes.get(mode).settings(io).io_dtype == expected


def test_a_tfmot_mode_has_no_post_training_settings():
    with pytest.raises(ValueError, match="built by tasks.ml.tfmot_variants"):
        modes.converter_settings("qat_int8")


def test_unknown_mode_is_refused_at_config_time_with_the_table_listed():
    with pytest.raises(ConfigError, match=r"unknown mode\(s\) \['int4'\].*qat_int8"):
        load_config("tiny", {"quantize.modes": ["fp32", "int4"]})
