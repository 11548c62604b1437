"""The fleet inventory: the dev stack's file, and one clear ConfigError per mistake."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tasks.cli import main
from tasks.core import names
from tasks.core.exceptions import ConfigError
from tasks.fleet.inventory import DEFAULT_FILE, XNNPACK, Inventory, load_inventory

BUDGETS = {"p95_latency_ms": 20.0, "peak_rss_mb": 200.0, "accuracy_tolerance": 0.02}
GOOD = {
    "groups": {"pi4": {"threads": 4, "budgets": BUDGETS},
               "coral": {"delegate": "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1", "budgets": BUDGETS,
                         "delegate_options": {"device": "usb"}}},
    "devices": [{"name": "kitchen", "group": "pi4", "wave": 0},
                {"name": "garage", "group": "coral", "wave": 1, "connection": "my_garage_pi"},
                {"name": "attic", "group": "pi4", "wave": 2, "optional": True}],
}


def edited(edit) -> dict:
    raw = copy.deepcopy(GOOD)
    edit(raw)
    return raw


def test_the_dev_stack_fleet_file() -> None:
    inv = load_inventory(DEFAULT_FILE)
    assert [[d.name for d in wave] for wave in inv.waves()] == [["pi1"], ["pi2", "pi_arm64"]]
    assert inv.device("pi1").connection == names.device_conn_id("pi1")
    assert inv.device("pi_arm64").optional and inv.group_of("pi_arm64").name != inv.group_of("pi1").name
    assert all(g.delegate == XNNPACK for g in inv.groups)


def test_groups_devices_waves_and_selection() -> None:
    inv = Inventory.from_dict(GOOD)
    assert Inventory.from_dict(inv.to_dict()) == inv
    assert inv.group("coral").external_delegate and inv.group("coral").delegate_options == {"device": "usb"}
    assert inv.group("pi4").threads == 4 and inv.group("coral").threads == 1
    assert inv.device("garage").connection == "my_garage_pi"
    assert [d.name for d in inv.waves()[0]] == ["kitchen"]
    assert [d.name for d in inv.select(groups=["pi4"])] == ["kitchen", "attic"]
    assert [d.name for d in inv.select(devices=["garage"], groups=["pi4"])] == ["kitchen", "garage", "attic"]
    assert inv.select() == inv.devices
    with pytest.raises(ConfigError, match="unknown device 'cellar'"):
        inv.select(devices=["cellar"])
    with pytest.raises(ConfigError, match="unknown group 'pi5'"):
        inv.select(groups=["pi5"])


MISTAKES = {
    "unknown group": (lambda r: r["devices"][0].update(group="pi5"), "device 'kitchen': unknown group 'pi5'"),
    "duplicate device": (lambda r: r["devices"][1].update(name="kitchen", connection=""), "duplicate device"),
    "shared connection": (lambda r: r["devices"][1].update(connection="edgeops_device_kitchen"),
                          "duplicate connection"),
    "wave gap": (lambda r: r["devices"][2].update(wave=3), r"wave\(s\) \[2\] have no device"),
    "no canary": (lambda r: r["devices"][0].update(wave=1), "no wave 0"),
    "optional canary only": (lambda r: r["devices"][0].update(optional=True), "only optional devices"),
    "negative wave": (lambda r: r["devices"][0].update(wave=-1), "wave=-1"),
    "zero latency budget": (lambda r: r["groups"]["pi4"]["budgets"].update(p95_latency_ms=0), "p95_latency_ms=0"),
    "negative rss budget": (lambda r: r["groups"]["pi4"]["budgets"].update(peak_rss_mb=-5), "peak_rss_mb=-5"),
    "tolerance > 1": (lambda r: r["groups"]["pi4"]["budgets"].update(accuracy_tolerance=2), "accuracy_tolerance=2"),
    "budget not a number": (lambda r: r["groups"]["pi4"]["budgets"].update(peak_rss_mb="big"), "peak_rss_mb|float"),
    "missing budget": (lambda r: r["groups"]["pi4"]["budgets"].pop("peak_rss_mb"), r"missing key\(s\)"),
    "relative delegate": (lambda r: r["groups"]["coral"].update(delegate="libedgetpu.so"), "absolute path"),
    "xnnpack with options": (lambda r: r["groups"]["pi4"].update(delegate_options={"a": "b"}), "external delegate"),
    "zero threads": (lambda r: r["groups"]["pi4"].update(threads=0), "threads=0"),
    "unknown device key": (lambda r: r["devices"][0].update(host="pi.local"), r"unknown key\(s\) \['host'\]"),
    "unknown group key": (lambda r: r["groups"]["pi4"].update(thread=2), r"unknown key\(s\) \['thread'\]"),
    "no devices": (lambda r: r.update(devices=[]), "at least one device"),
    "bad device name": (lambda r: r["devices"][0].update(name="kitchen pi"), "device 'kitchen pi'"),
    # "$" matches before a final newline: the name rule is a fullmatch (issue 19)
    "device name with a trailing newline": (lambda r: r["devices"][0].update(name="kitchen\n"),
                                            r"device 'kitchen\\n': use letters"),
    "group name with a trailing newline": (lambda r: r["groups"].update({"pi4\n": r["groups"].pop("pi4")}),
                                           r"group 'pi4\\n': use letters"),
}


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_each_mistake_is_one_clear_error(mistake: str) -> None:
    edit, message = MISTAKES[mistake]
    with pytest.raises(ConfigError, match=message):
        Inventory.from_dict(edited(edit))


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_inventory(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        load_inventory(tmp_path / "bad.json")
    (tmp_path / "gap.json").write_text(json.dumps(edited(lambda r: r["devices"][2].update(wave=5))))
    with pytest.raises(ConfigError, match=r"gap.json: wave\(s\) \[2, 3, 4\]"):
        load_inventory(tmp_path / "gap.json")


def test_cli_prints_the_inventory(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(GOOD))
    monkeypatch.setenv(names.ENV_FLEET, str(path))
    assert main(["fleet", "inventory"]) == names.EXIT_OK
    out = capsys.readouterr().out
    assert "0 (canary)  kitchen" in out and "my_garage_pi" in out and "libedgetpu.so.1" in out
    assert main(["fleet", "inventory", "--json"]) == names.EXIT_OK
    assert Inventory.from_dict(json.loads(capsys.readouterr().out)) == Inventory.from_dict(GOOD)
    path.write_text(json.dumps(edited(lambda r: r["devices"][0].update(group="nope"))))
    assert main(["fleet", "inventory"]) == names.EXIT_NO_RETRY
    assert "unknown group 'nope'" in capsys.readouterr().err


def test_group_app_hooks_are_checked_at_config_time() -> None:
    from tasks.device.app import AppHooks

    inv = Inventory.from_dict(edited(lambda r: r["groups"]["pi4"].update(
        app={"activate": "systemctl reload myapp", "health": "curl -fs localhost:8080/ok", "health_timeout_s": 5})))
    assert inv.group("pi4").app == AppHooks("systemctl reload myapp", "curl -fs localhost:8080/ok", 5.0)
    assert inv.group("coral").app == AppHooks()  # default: signal edgeops-serve, poll its /healthz
    assert Inventory.from_dict(inv.to_dict()) == inv
    assert load_inventory(DEFAULT_FILE).group_of("pi1").app.http_port == 0  # stand-ins share one loopback
    for app, match in [({"health_timeout_s": 0}, "health_timeout_s=0"), ({"http_port": 70000}, "http_port=70000"),
                       ({"activate": "a\nb"}, "one-line shell command"),
                       ({"reload": "x"}, r"unknown key\(s\) \['reload'\]"), ("nope", "expected an object")]:
        with pytest.raises(ConfigError, match=rf"group 'pi4'.*{match}"):
            Inventory.from_dict(edited(lambda r, a=app: r["groups"]["pi4"].update(app=a)))
