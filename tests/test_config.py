"""The settings: one table (SETTINGS) and the typed, frozen Settings read from it."""
import dataclasses

import pytest

from kf_plugin.config import SETTINGS, Settings, field_of
from kf_plugin.errors import ConfigError


def test_settings_has_one_field_per_setting_of_the_table():
    assert [f.name for f in dataclasses.fields(Settings)] == [field_of(name) for name in SETTINGS]


def test_settings_read_converts_and_falls_back_to_defaults_then_the_table():
    settings = Settings.read({"KF_TOKEN": "t", "KF_DEDUPE_TTL": "5", "KF_APPID": ""},
                             defaults={"KF_APPID": "wxdefault", "KF_MAX_BODY": 1024, "KF_DEDUPE_TTL": 9})
    assert (settings.token, settings.dedupe_ttl, settings.appid, settings.max_body) == ("t", 5.0, "wxdefault", 1024)
    assert settings.url == SETTINGS["KF_URL"].default and settings.has_api is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.token = "other"  # type: ignore[misc]


def test_settings_read_names_the_setting_of_a_bad_value():
    with pytest.raises(ConfigError, match="KF_MAX_BODY must be a number"):
        Settings.read({"KF_MAX_BODY": "lots"})


@pytest.mark.parametrize("given,kept", [({}, 30 * 86400), ({"KF_HANDOFF_RECORDS_FOR": "3600"}, 3600.0)])
def test_hand_off_records_are_kept_for_the_setting(given, kept):
    from kf_plugin.services import open_shared
    settings = Settings.read(given)
    assert settings.handoff_records_for == kept
    assert open_shared(settings).handoffs.keep_records == kept


def test_hand_off_records_for_must_be_seconds():
    with pytest.raises(ConfigError, match="KF_HANDOFF_RECORDS_FOR must not be negative"):
        Settings.read({"KF_HANDOFF_RECORDS_FOR": "-1"})
