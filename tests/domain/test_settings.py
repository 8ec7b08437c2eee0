"""Settings come from the environment in one place; the defaults are pinned here."""

from __future__ import annotations

import pytest

from drpilot.domain.settings import Settings, SettingsError, TemporalSettings, load_settings


def test_defaults_are_a_local_dev_server_at_real_time():
    settings = load_settings({})
    assert settings == Settings()
    assert settings.temporal == TemporalSettings(
        address="127.0.0.1:7233", namespace="default", task_queue="drpilot", tls=False
    )
    assert settings.speed == 1.0
    assert settings.providers.endpoint_map == {}
    assert settings.webhook_listen == "127.0.0.1:8787"
    assert settings.health_listen == "127.0.0.1:0"


def test_environment_overrides():
    settings = load_settings(
        {
            "DRPILOT_TEMPORAL_ADDRESS": "temporal.internal:7233",
            "DRPILOT_TEMPORAL_NAMESPACE": "dr",
            "DRPILOT_TEMPORAL_API_KEY": "k",
            "DRPILOT_SPEED": "60",
            "DRPILOT_SANDBOX": "1",
            "DRPILOT_ENDPOINT_MAP": '{"https://a.example.com": "http://127.0.0.1:9000"}',
        }
    )
    assert settings.temporal.address == "temporal.internal:7233"
    assert settings.temporal.namespace == "dr"
    assert settings.temporal.tls is True  # an API key implies TLS
    assert settings.speed == 60
    assert settings.providers.endpoint_map == {"https://a.example.com": "http://127.0.0.1:9000"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DRPILOT_SPEED": "fast"}, "DRPILOT_SPEED='fast': expected a number >= 1"),
        ({"DRPILOT_SPEED": "0.5"}, "DRPILOT_SPEED='0.5': expected a number >= 1"),
        ({"DRPILOT_TEMPORAL_TLS": "maybe"}, "DRPILOT_TEMPORAL_TLS='maybe': expected true or false"),
        ({"DRPILOT_SPEED": "60", "DRPILOT_SANDBOX": "perhaps"}, "DRPILOT_SANDBOX='perhaps': expected true or false"),
        (
            {"DRPILOT_SPEED": "60"},
            "DRPILOT_SPEED='60': a speed above 1 shortens every bake, TTL wait and health gate, so it is "
            "only for a sandbox (DRPILOT_SANDBOX=1, set by `source DIR/env` of `drpilot sandbox up`), "
            "and DRPILOT_SANDBOX is not set; unset DRPILOT_SPEED to run at real time",
        ),
        ({"DRPILOT_ENDPOINT_MAP": "[1]"}, "DRPILOT_ENDPOINT_MAP: expected a JSON object of URL -> URL"),
    ],
)
def test_bad_values_are_named(env, message):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value) == message


def test_speed_above_1_is_allowed_only_in_a_sandbox():
    assert load_settings({"DRPILOT_SPEED": "60", "DRPILOT_SANDBOX": "1"}).speed == 60
    assert load_settings({"DRPILOT_SPEED": "1"}).speed == 1  # real time needs no mark
    assert load_settings({"DRPILOT_SANDBOX": "1"}).sandbox is True
    with pytest.raises(SettingsError, match="^DRPILOT_SPEED='2': a speed above 1 .*unset DRPILOT_SPEED"):
        load_settings({"DRPILOT_SPEED": "2", "DRPILOT_SANDBOX": "0"})

def test_health_listen_must_be_host_port():
    assert load_settings({"DRPILOT_HEALTH_LISTEN": "0.0.0.0:8788"}).health_listen == "0.0.0.0:8788"
    with pytest.raises(SettingsError) as caught:
        load_settings({"DRPILOT_HEALTH_LISTEN": "8788"})
    assert str(caught.value) == "DRPILOT_HEALTH_LISTEN='8788': expected HOST:PORT, e.g. 127.0.0.1:8788"
