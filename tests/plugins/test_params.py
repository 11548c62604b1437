"""Params map onto real config fields; malformed input fails with one clear error."""

from __future__ import annotations

import pytest

from tasks.config import PipelineConfig
from tasks.exceptions import ConfigError


def test_every_param_maps_to_a_config_field():
    from edgeops_airflow.params import PARAM_TO_CONFIG

    fields = PipelineConfig().to_dict()
    for param, dotted in PARAM_TO_CONFIG.items():
        section, key = dotted.split(".")
        assert key in fields[section], f"{param} -> {dotted}"


def test_empty_params_keep_profile_values():
    from edgeops_airflow.params import resolve

    out = resolve({"profile": "tiny", "epochs": None, "devices": ["pi1", "pi1"]}, "manual__2026-11-23T02:00:00+00:00")
    assert out["config"]["train"]["epochs"] == 2
    assert out["run_id"] == "manual__2026-11-23T02_00_00_00_00"
    assert out["devices"] == ["pi1"]


def test_params_override_profile():
    from edgeops_airflow.params import resolve

    out = resolve({"profile": "tiny", "epochs": 5, "modes": ["fp32", "int8"]}, "r1")
    assert out["config"]["train"]["epochs"] == 5
    assert out["config"]["quantize"]["modes"] == ["fp32", "int8"]


@pytest.mark.parametrize(
    ("params", "match"),
    [({"modes": ["fp32", "int4"]}, "unknown mode"), ({"modes": ["int8"]}, "must include 'fp32'"),
     ({"data_source": "/tmp/x"}, "data.source"), ({"profile": "nope"}, "profile 'nope' not found"),
     ({"deploy_variants": ["fp16"], "modes": ["fp32", "int8"]}, "not in quantize.modes")],
)
def test_malformed_params_give_one_clear_error(params, match):
    from edgeops_airflow.params import resolve

    with pytest.raises(ConfigError, match=match):
        resolve({"profile": "tiny", **params}, "r1")
