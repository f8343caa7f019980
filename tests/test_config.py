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


# --------------------------------------------------------------------------------------------
# Data paths (issue 12, finding 1): a path that would make the workflow write, move or prune
# files that are not the project's is refused at config load, saying which key, where it
# resolves to and what to write instead.
# --------------------------------------------------------------------------------------------


def config_with_paths(**paths: str) -> dict:
    config = repo_config()
    config["paths"] = {**config["paths"], **paths}
    return config


@pytest.mark.parametrize(
    ("paths", "says"),
    [
        ({"qlib": "data/raw"}, ["paths.qlib: 'data/raw' resolves to {repo}/data/raw",
                                "same directory as paths.raw", "paths.qlib: 'data/qlib'"]),
        ({"qlib": "data/work"}, ["paths.qlib: 'data/work' resolves to {repo}/data/work",
                                 "same directory as paths.work"]),
        ({"qlib": "data/raw/qlib"}, ["lies inside paths.raw ({repo}/data/raw)"]),
        ({"raw": "data/work/raw"}, ["paths.work: 'data/work' resolves to {repo}/data/work, which contains paths.raw "
                                    "({repo}/data/work/raw)"]),
        ({"qlib": "data"}, ["paths.qlib: 'data' resolves to {repo}/data, which contains paths.raw"]),
        ({"qlib": "/"}, ["paths.qlib: '/' resolves to /, a system directory", "Set paths.qlib to a directory of its "
                                                                               "own, e.g. 'data/qlib'"]),
        ({"qlib": "../../etc"}, ["paths.qlib: '../../etc' resolves to {etc}", "system directory"]),
        ({"work": "/etc/feeder"}, ["paths.work: '/etc/feeder' resolves to {etc}/feeder, inside the system directory"]),
        ({"qlib": ".."}, ["paths.qlib: '..' resolves to {parent}, which contains the project checkout ({repo})"]),
        ({"qlib": "."}, ["paths.qlib: '.' resolves to {repo}, which is the project checkout"]),
        ({"raw": "{home}"}, ["paths.raw: '{home}' resolves to {home}", "the home directory"]),
        ({"work": ""}, ["paths.work is empty", "'data/work'"]),
    ],
)
def test_dangerous_data_paths_are_refused_at_load(paths, says, monkeypatch):
    monkeypatch.chdir(REPO)  # relative paths resolve against the working directory, as in the workflow
    home = str(Path.home().resolve())
    fill = {"repo": str(REPO), "parent": str(REPO.parent), "home": home, "etc": str(Path("/etc").resolve())}
    with pytest.raises(ConfigError) as refused:
        check_config(config_with_paths(**{k: v.format(**fill) for k, v in paths.items()}))
    for text in says:
        assert text.format(**fill) in str(refused.value), str(refused.value)


def test_data_paths_are_compared_after_following_symbolic_links(tmp_path, monkeypatch):
    (tmp_path / "store").mkdir()
    (tmp_path / "raw-link").symlink_to("store")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"paths.work: 'store' resolves to {tmp_path}/store, which is the same "
                                          r"directory as paths.raw"):
        check_config(config_with_paths(raw="raw-link", work="store", qlib="qlib"))


def test_separate_data_paths_are_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_config(config_with_paths(raw="data/raw", work="data/work", qlib="data/qlib"))
    assert check_config(config_with_paths(raw=str(tmp_path / "r"), work=str(tmp_path / "w"), qlib="../q"))
    # a published dataset: paths.qlib is our link into <paths.qlib>.versions (the link itself is compared)
    (tmp_path / "data" / "qlib.versions" / "v1").mkdir(parents=True)
    (tmp_path / "data" / "qlib").symlink_to("qlib.versions/v1")
    assert check_config(config_with_paths(raw="data/raw", work="data/work", qlib="data/qlib"))
