"""The frozen settings object and where its values come from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from riskmon.settings import Settings


def test_defaults_follow_the_contract_topic_names() -> None:
    """Without configuration, topic names are the contract's defaults."""
    s = Settings.load(env={}, config_file=None)
    assert s.topics.inputs == {
        "loan.applications": "application",
        "device.events": "device",
        "loan.transactions": "transaction",
        "risk.labels": "label",
    }
    assert s.topics.deadletter == "risk.deadletter"


def test_environment_overrides_yaml_which_overrides_defaults(tmp_path: Path) -> None:
    """Priority: defaults < YAML file < RISKMON_* environment < keyword overrides."""
    cfg = tmp_path / "riskmon.yaml"
    cfg.write_text("kafka:\n  port: 19092\n  host: kafka\nthresholds:\n  review: 0.4\n")
    env = {"RISKMON_KAFKA__PORT": "29092", "RISKMON_ENV": "prod", "OTHER": "x"}
    s = Settings.load(env=env, config_file=cfg)
    assert s.kafka.host == "kafka"
    assert s.kafka.port == 29092
    assert s.env == "prod"
    assert s.thresholds.review == 0.4


def test_config_file_is_taken_from_riskmon_config(tmp_path: Path) -> None:
    """RISKMON_CONFIG names the YAML file."""
    cfg = tmp_path / "x.yaml"
    cfg.write_text("redis:\n  port: 16379\n")
    s = Settings.load(env={"RISKMON_CONFIG": str(cfg)})
    assert s.redis.url == "redis://127.0.0.1:16379/0"


def test_settings_are_frozen_and_unknown_keys_rejected() -> None:
    """Nothing can change the settings after the start, and typos fail loudly."""
    s = Settings.load(env={}, config_file=None)
    with pytest.raises(ValidationError):
        s.worker.batch_size = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Settings.load(env={"RISKMON_KAFKA__PROT": "1"}, config_file=None)


def test_thresholds_must_be_ordered() -> None:
    """A review threshold above the decline threshold is refused."""
    with pytest.raises(ValidationError):
        Settings.load(
            env={"RISKMON_THRESHOLDS__REVIEW": "0.9", "RISKMON_THRESHOLDS__DECLINE": "0.5"},
            config_file=None,
        )
