"""One set of rules for numbers and flags read from the environment: finite, well-formed, or a loud error."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from twinops.config.env import (
    env_bool,
    env_int,
    env_positive,
    env_time_zone,
    setting_positive,
    setting_positive_int,
)


@pytest.mark.parametrize("raw", ["inf", "-inf", "Infinity", "nan", "0", "-5", "soon", ""])
def test_a_positive_number_refuses_infinity_nan_and_typos_naming_the_variable(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("TWINOPS_TEST_PERIOD_S", raw)
    with pytest.raises(ImproperlyConfigured, match=f"TWINOPS_TEST_PERIOD_S must be a finite number > 0, not '{raw}'"):
        env_positive("TWINOPS_TEST_PERIOD_S", 1.0)


def test_an_unset_variable_gives_the_default_and_a_set_one_its_value(monkeypatch) -> None:
    monkeypatch.delenv("TWINOPS_TEST_PERIOD_S", raising=False)
    assert env_positive("TWINOPS_TEST_PERIOD_S", 2.5) == 2.5
    monkeypatch.setenv("TWINOPS_TEST_PERIOD_S", " 0.25 ")
    assert env_positive("TWINOPS_TEST_PERIOD_S", 2.5) == 0.25


@pytest.mark.parametrize("raw", ["lots", "1.5", "1e3", "inf"])
def test_an_integer_refuses_fractions_and_text(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("TWINOPS_TEST_COUNT", raw)
    with pytest.raises(ImproperlyConfigured, match="TWINOPS_TEST_COUNT must be an integer"):
        env_int("TWINOPS_TEST_COUNT", 1)


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("Yes", True), ("off", False), ("FALSE", False)])
def test_a_flag_reads_the_usual_spellings(monkeypatch, raw: str, value: bool) -> None:
    monkeypatch.setenv("TWINOPS_TEST_FLAG", raw)
    assert env_bool("TWINOPS_TEST_FLAG", not value) is value


def test_a_flag_refuses_anything_else(monkeypatch) -> None:
    monkeypatch.setenv("TWINOPS_TEST_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="TWINOPS_TEST_FLAG must be a boolean"):
        env_bool("TWINOPS_TEST_FLAG", False)


def test_an_app_setting_prefers_the_django_setting_to_the_environment(monkeypatch, settings) -> None:
    monkeypatch.setenv("TWINOPS_TEST_PERIOD_S", "7")
    assert setting_positive("TWINOPS_TEST_PERIOD_S", 1.0) == 7.0
    settings.TWINOPS_TEST_PERIOD_S = 3
    assert setting_positive("TWINOPS_TEST_PERIOD_S", 1.0) == 3.0
    settings.TWINOPS_TEST_PERIOD_S = float("inf")
    with pytest.raises(ImproperlyConfigured, match="TWINOPS_TEST_PERIOD_S must be a finite number > 0, not inf"):
        setting_positive("TWINOPS_TEST_PERIOD_S", 1.0)


def test_a_count_setting_must_be_at_least_one(settings) -> None:
    settings.TWINOPS_TEST_ATTEMPTS = 0
    with pytest.raises(ImproperlyConfigured, match="TWINOPS_TEST_ATTEMPTS must be an integer >= 1, not 0"):
        setting_positive_int("TWINOPS_TEST_ATTEMPTS", 3)


def test_a_plant_time_zone_is_an_iana_name_and_a_typo_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINOPS_TIME_ZONE", "Europe/Berlin")
    assert env_time_zone("TWINOPS_TIME_ZONE", "UTC") == "Europe/Berlin"
    monkeypatch.setenv("TWINOPS_TIME_ZONE", "Europe/Berlinn")
    with pytest.raises(ImproperlyConfigured, match="TWINOPS_TIME_ZONE='Europe/Berlinn' is not a time zone"):
        env_time_zone("TWINOPS_TIME_ZONE", "UTC")
    monkeypatch.delenv("TWINOPS_TIME_ZONE")
    assert env_time_zone("TWINOPS_TIME_ZONE", "UTC") == "UTC"
