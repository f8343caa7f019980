"""config.yaml validation: bad values are refused with a message that says what to write."""

import datetime as dt
from pathlib import Path

import pytest
import yaml

from feeder.config import ConfigError, build_days, check_config, last_complete_day, load_config

REPO = Path(__file__).resolve().parent.parent


def repo_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_config_is_valid_and_defaults_are_filled():
    config = check_config(repo_config())
    assert config["universe"]["size"] == 50
    assert config["universe"]["rank_by"] == "quote_volume"
    assert config["frequencies"] == ["1min", "5min", "60min", "day"]


@pytest.mark.parametrize(
    ("freq", "advice"),
    [("1h", "use '60min'"), ("1d", "use 'day'"), ("5m", "use '5min'"), ("60m", "use '60min'")],
)
def test_non_qlib_frequency_names_get_the_right_spelling(freq, advice):
    config = repo_config() | {"frequencies": ["1min", freq]}
    with pytest.raises(ConfigError, match=advice):
        check_config(config)


def test_schema_errors_name_the_key():
    config = repo_config()
    config["universe"]["rank_by"] = "market_cap"
    with pytest.raises(ConfigError, match=r"universe\.rank_by"):
        check_config(config)


def test_signed_funding_rate_ranking_is_explained():
    config = repo_config()
    config["universe"]["rank_by"] = "funding_rate"
    with pytest.raises(ConfigError, match="abs_funding_rate"):
        check_config(config)


def test_unknown_key_is_refused():
    config = repo_config() | {"frequncies": ["1min"]}
    with pytest.raises(ConfigError, match="frequncies"):
        check_config(config)


def test_bad_dates_and_reversed_range():
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        check_config(repo_config() | {"start": "03/01/2024"})
    with pytest.raises(ConfigError, match="before start"):
        check_config(repo_config() | {"start": "2024-03-02", "end": "2024-03-01"})


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="copy config.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_last_complete_day_respects_grace():
    assert last_complete_day(dt.datetime(2024, 3, 5, 0, 10, tzinfo=dt.timezone.utc), 15) == dt.date(2024, 3, 3)
    assert last_complete_day(dt.datetime(2024, 3, 5, 0, 20, tzinfo=dt.timezone.utc), 15) == dt.date(2024, 3, 4)


def test_build_days_inclusive_and_refuses_empty_range():
    config = check_config(repo_config() | {"start": "2024-03-01", "end": "2024-03-03"})
    assert build_days(config) == [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)]
    config = check_config(repo_config() | {"start": "2030-01-01"})
    with pytest.raises(ConfigError, match="nothing to build yet"):
        build_days(config, now=dt.datetime(2029, 12, 31, tzinfo=dt.timezone.utc))
