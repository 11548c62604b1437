"""Params map onto real config fields; malformed input fails with one clear error."""

from __future__ import annotations

import pytest

from tasks.core.config import PipelineConfig, load_config, load_profile
from tasks.core.exceptions import ConfigError
from tasks.core.names import device_conn_id


def test_every_param_maps_to_a_config_field():
    from edgeops_airflow.params import PARAM_TO_CONFIG

    fields = PipelineConfig().to_dict()
    for param, dotted in PARAM_TO_CONFIG.items():
        section, key = dotted.split(".")
        assert key in fields[section], f"{param} -> {dotted}"


@pytest.fixture
def pi1_connection(monkeypatch):
    from tests.helpers import export_connections

    export_connections(monkeypatch, {device_conn_id("pi1"): {"conn_type": "ssh", "host": "127.0.0.1"}})


def test_empty_params_keep_profile_values(pi1_connection):
    from edgeops_airflow.params import resolve

    out = resolve({"profile": "tiny", "epochs": None}, "manual__2026-11-23T02:00:00+00:00")
    assert out.config["train"]["epochs"] == load_profile("tiny")["train"]["epochs"]
    assert out.run_id.startswith("manual__2026-11-23T02_00_00_00_00-")


def test_params_override_profile():
    from edgeops_airflow.params import resolve

    out = resolve({"profile": "tiny", "epochs": 5, "modes": ["fp32", "int8"]}, "r1")
    assert out.config["train"]["epochs"] == 5
    assert out.config["quantize"]["modes"] == ["fp32", "int8"] and out.modes == ("fp32", "int8")


def _bounds(schema: dict) -> list[tuple[object, bool]]:
    """(value, should the config accept it) at each edge a Param's JSON schema declares."""
    out: list[tuple[object, bool]] = []
    step = 1 if "integer" in schema["type"] else 1e-9
    if "minimum" in schema:
        out += [(schema["minimum"], True), (schema["minimum"] - step, False)]
    if "exclusiveMinimum" in schema:
        out += [(schema["exclusiveMinimum"], False), (schema["exclusiveMinimum"] + step, True)]
    if "maximum" in schema:
        out += [(schema["maximum"], True), (schema["maximum"] + step, False)]
    if "exclusiveMaximum" in schema:
        out += [(schema["exclusiveMaximum"], False), (schema["exclusiveMaximum"] - step, True)]
    return out


def test_param_bounds_match_the_config_validation():
    """The trigger form's bounds and the dataclass validation agree at every edge (one test, both homes)."""
    from edgeops_airflow.params import PARAM_TO_CONFIG, dag_params

    params = dag_params()
    checked = 0
    for name, dotted in PARAM_TO_CONFIG.items():
        for value, accepted in _bounds(params[name].schema):
            try:
                load_config("demo", {dotted: value})
                ok = True
            except ConfigError:
                ok = False
            assert ok == accepted, f"Param {name}={value!r}: form {'accepts' if accepted else 'refuses'} it, config not"
            checked += 1
    assert checked >= 10


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


def test_a_cleared_run_gets_fresh_keys_never_the_first_attempts():
    from edgeops_airflow.params import resolve

    from tasks.core.keys import run_key

    first, again = run_key("manual__2026-11-23T02:00:00+00:00"), run_key("manual__2026-11-23T02:00:00+00:00", 1)
    assert first != again and run_key("nightly", 2) not in {run_key("nightly"), run_key("nightly", 1)}
    assert resolve({"profile": "tiny"}, "r1", clear_number=1).run_id == run_key("r1", 1) != "r1"


def test_the_trigger_form_offers_exactly_the_table():
    from edgeops_airflow.params import dag_params

    from tasks.core import modes

    form = dag_params()["modes"]
    assert tuple(form.schema["items"]["enum"]) == modes.QUANT_MODES
    assert all(m.summary in form.description for m in modes.MODES.values())


def test_the_form_says_which_profiles_never_ship():
    from edgeops_airflow.params import dag_params, non_shipping_profiles

    from tasks.core.config import load_config

    assert "tiny" in non_shipping_profiles() and load_config("demo").ships
    assert "never roll out" in dag_params()["profile"].description and "'tiny'" in dag_params()["profile"].description
