"""Settings: one frozen object from the environment, with clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from stream_processor.config import Settings
from stream_processor.errors import ConfigError


def test_defaults_match_the_reference_table_names() -> None:
    settings = Settings.from_env({})
    assert (
        settings.task_state_table,
        settings.container_instance_state_table,
        settings.deployment_state_table,
    ) == ("ECSTaskState", "ECSCtrInstanceState", "ECSDeploymentState")
    assert (settings.history_prefix, settings.quarantine_prefix) == ("ecs-history/", "quarantine/")


def test_environment_and_overrides() -> None:
    settings = Settings.from_env(
        {
            "TASK_STATE_TABLE": "t",
            "HISTORY_BUCKET": "env-bucket",
            "STATE_WRITE_CONCURRENCY": "4",
            "AWS_RETRY_MODE": "adaptive",
        },
        history_bucket="flag-bucket",
    )
    assert settings.task_state_table == "t" and settings.history_bucket == "flag-bucket"
    assert settings.state_write_concurrency == 4 and settings.retry_mode == "adaptive"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.history_bucket = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STATE_WRITE_CONCURRENCY": "many"}, "STATE_WRITE_CONCURRENCY must be an integer"),
        ({"STATE_WRITE_CONCURRENCY": "0"}, "STATE_WRITE_CONCURRENCY must be >= 1"),
        ({"HISTORY_PREFIX": "no-slash"}, "HISTORY_PREFIX must end with '/'"),
        ({"AWS_RETRY_MODE": "yolo"}, "AWS_RETRY_MODE must be one of"),
        ({"STATE_WRITE_MODE": "batch"}, "STATE_WRITE_MODE must be one of"),
        (
            {"STATE_WRITE_MODE": "transact", "RECONCILE_GAPS": "true"},
            "RECONCILE_GAPS=true needs STATE_WRITE_MODE=put",
        ),
    ],
)
def test_bad_settings_raise_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_missing_bucket_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="HISTORY_BUCKET is not set"):
        Settings().require_bucket()


def test_every_setting_has_an_environment_name_and_a_meaning() -> None:
    """A field without an environment name could not be configured, and one without a
    meaning would be missing from the settings page: both fail here, not in production."""
    from stream_processor.config import DESCRIPTIONS, ENV_NAMES

    names = [f.name for f in dataclasses.fields(Settings)]
    assert [n for n in names if n not in ENV_NAMES] == []
    assert [n for n in names if n not in DESCRIPTIONS] == []
    assert len(set(ENV_NAMES.values())) == len(ENV_NAMES)  # no variable sets two fields


def test_each_setting_is_declared_once_with_its_variable_meaning_and_parse() -> None:
    """Issue 38: the field's declaration is the one home of its default, variable, meaning
    and validation; a typed field's bad text names its variable; a state table's field
    (the dataset registry's) refuses to be empty."""
    from stream_processor.config import _TABLE_FIELDS

    for spec in dataclasses.fields(Settings):
        assert set(spec.metadata) == {"env", "meaning", "check"}, spec.name
        assert spec.metadata["meaning"], spec.name
        env = spec.metadata["env"]
        if spec.type in ("int", "float", "bool"):
            with pytest.raises(ConfigError, match=f"^{env} must be"):
                Settings.from_env({env: "not-a-value"})
    for name in _TABLE_FIELDS.values():
        env = next(s.metadata["env"] for s in dataclasses.fields(Settings) if s.name == name)
        with pytest.raises(ConfigError, match=f"^{env} must not be empty"):
            Settings(**{name: ""})  # type: ignore[arg-type]
