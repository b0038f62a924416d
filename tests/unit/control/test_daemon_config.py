"""The daemon's config file (control/config.py): defaults, one-line errors for bad fields, the example."""

from __future__ import annotations

import os

import pytest
import yaml
from support.daemon import write_config

from khaos_controller.control import config as daemon_config
from khaos_controller.errors import KhaosError


def load_error(tmp_path, model_file, **over) -> str:
    path = write_config(tmp_path, model_file, **over)
    with pytest.raises(KhaosError) as e:
        daemon_config.load_config(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg[len(str(path)) + 2 :]


def test_config_defaults(tmp_path, model_file):
    path = write_config(tmp_path, model_file, loop=..., ci=..., journal=..., metrics=..., mtbf_h=...)
    cfg = daemon_config.load_config(path)
    assert (cfg.loop.period_s, cfg.loop.window_s, cfg.loop.min_uptime_s, cfg.loop.forecast_horizon_s) == (
        300,
        300,
        600,
        300,
    )
    assert (cfg.ci.min, cfg.ci.max, cfg.ci.step, cfg.ci.dead_band_s, cfg.ci.cooldown_s) == (1, 120, 1, 5, 600)
    assert cfg.file.mtbf_h == 24 and cfg.mode == "process" and cfg.loop.sample_s == 1
    assert cfg.state_dir == tmp_path / "state"  # from the inventory's khaos_state_dir
    assert cfg.record == tmp_path / "state" / "tj.json"
    assert cfg.journal == tmp_path / "state" / "tj.journal.jsonl"
    assert (cfg.file.metrics.host, cfg.file.metrics.port) == ("127.0.0.1", 9790)
    assert cfg.inventory == tmp_path / "inventory.yml"  # relative to the config file
    assert (cfg.limits.latency_ms, cfg.limits.recovery_s) == (1000, 25)


def test_config_horizon_defaults_to_the_period_and_metrics_can_be_off(tmp_path, model_file):
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, loop={"period_s": 42}, metrics=None))
    assert cfg.loop.forecast_horizon_s == 42 and cfg.file.metrics is None


def test_missing_limits(tmp_path, model_file):
    assert load_error(tmp_path, model_file, limits=...).startswith("limits: missing (both limits are required")
    assert (
        load_error(tmp_path, model_file, limits={"latency_ms": 500, "recovery_s": None})
        == "limits.recovery_s: missing (the recovery time limit R_max in s)"
    )
    assert (
        load_error(tmp_path, model_file, limits={"recovery_s": 60, "latency_ms": None})
        == "limits.latency_ms: missing (the p99 latency limit L_max in ms)"
    )


@pytest.mark.parametrize("ci", [{"min": 30, "max": 10}, {"min": 20, "max": 20}])
def test_inverted_ci_range(tmp_path, model_file, ci):
    msg = load_error(tmp_path, model_file, ci=ci)
    assert msg.startswith(f"ci: min {ci['min']} >= max {ci['max']}") and "inverted" in msg


@pytest.mark.parametrize(
    "over,expected",
    [
        ({"loop": {"period_s": "fast"}}, "loop.period_s: 'fast' is not a number"),
        ({"limits": {"latency_ms": True, "recovery_s": 5}}, "limits.latency_ms: True is not a number"),
        ({"limits": {"latency_ms": -5, "recovery_s": 5}}, "limits.latency_ms: -5 must be > 0"),
        ({"metrics": {"port": 1.5}}, "metrics.port: 1.5 is not a whole number"),
        ({"limits": {"latency_ms": float("nan"), "recovery_s": 5}}, "limits.latency_ms: nan is not a finite number"),
        ({"ci": {"min": 2, "max": float("inf")}}, "ci.max: inf is not a finite number"),
        ({"metrics": {"port": 70000}}, "metrics.port: 70000 is not a TCP port"),
        ({"ci": {"step": 0}}, "ci.step: 0 must be > 0"),
        ({"ci": {"cooldown_s": -1}}, "ci.cooldown_s: -1 must be >= 0"),
        ({"ci": {"slack_s_per_h": -1}}, "ci.slack_s_per_h: -1 must be >= 0"),
        ({"ci": {"hysteresis": 1}}, "ci.hysteresis: 1 must be <= 0.9"),
        ({"loop": {"window_s": 0.1}}, "loop.window_s: 0.1 must be >= 2"),
        ({"mtbf_h": "1d"}, "mtbf_h: '1d' is not a number"),
        ({"flink": "http://x"}, "flink: must be a mapping"),
        ({"flink": {"rest_url": 8081}}, "flink.rest_url: 8081 is not a string"),
        ({"flink": {"rest_url": ""}}, "flink.rest_url: '' is not a non-empty string"),
        ({"flink": {"rest": "http://x"}}, "flink.rest: unknown field"),
        ({"loops": {}}, "loops: unknown field"),
        ({"job": ...}, "job: missing"),
        ({"model": "nowhere.json"}, "model: model file"),
        ({"mode": "network"}, "mode: 'network' was not profiled"),
        ({"log": {"format": "xml"}}, "log.format: 'xml' is not one of kv, json"),
    ],
)
def test_bad_fields(tmp_path, model_file, over, expected):
    assert load_error(tmp_path, model_file, **over).startswith(expected)


def test_example_config_is_valid(tmp_path, model_file):
    from khaos_controller import REPO_ROOT

    raw = yaml.safe_load((REPO_ROOT / "examples" / "controller.yml").read_text())
    raw["model"] = str(model_file)  # the example's model is made by khaos fit
    assert raw["inventory"] == "../inventories/local/khaos.yml"  # ... and its inventory by khaos lab up
    inventory = tmp_path / "khaos.yml"
    inventory.write_text(yaml.safe_dump({"all": {"vars": {"khaos_state_dir": str(tmp_path / "state")}}}))
    raw["inventory"] = str(inventory)
    path = REPO_ROOT / "examples" / f".test-{os.getpid()}.yml"
    path.write_text(yaml.safe_dump(raw))
    try:
        cfg = daemon_config.load_config(path)
    finally:
        path.unlink()
    assert cfg.inventory == inventory
    assert (
        cfg.loop.period_s,
        cfg.loop.window_s,
        cfg.loop.min_uptime_s,
        cfg.limits.latency_ms,
        cfg.limits.recovery_s,
    ) == (300, 300, 600, 1000, 60)


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("job: [unclosed\n")
    with pytest.raises(KhaosError, match=r"bad.yml: line \d+: malformed YAML"):
        daemon_config.load_config(bad)
    with pytest.raises(KhaosError, match="no such config file"):
        daemon_config.load_config(tmp_path / "none.yml")


@pytest.mark.parametrize(
    "host, warned",
    [
        ("127.0.0.1", None),
        ("10.213.0.14", None),
        ("::1", None),
        ("bastion.internal", None),
        ("0.0.0.0", "every interface"),
        ("::", "every interface"),
        ("[::]", "every interface"),
        ("8.8.8.8", "a public address"),
        ("2001:4860::8888", "a public address"),
    ],
)
def test_metrics_on_every_interface_or_a_public_address_are_warned_about(tmp_path, model_file, host, warned):
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, metrics={"host": host, "port": 0}))
    text = daemon_config.exposed_metrics(cfg)
    if warned is None:
        assert text is None
    else:
        assert warned in text and "\n" not in text and f"metrics.host {host.strip('[]')} " in text
