"""config.yaml validation: bad values are refused with a message that says what to write."""

import datetime as dt
import os
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
        ({"qlib": "{to_etc}"}, ["paths.qlib: '{to_etc}' resolves to {etc}", "system directory"]),
        ({"work": "/etc/feeder"}, ["paths.work: '/etc/feeder' resolves to {etc}/feeder, inside the system directory"]),
        # the checkout's parent: refused as a parent of the checkout, or as a system directory when the
        # checkout sits right below one (a clone in /tmp); either way the message names where it resolves
        ({"qlib": ".."}, ["paths.qlib: '..' resolves to {parent}, "]),
        ({"qlib": "."}, ["paths.qlib: '.' resolves to {repo}, which is the project checkout"]),
        ({"raw": "{home}"}, ["paths.raw: '{home}' resolves to {home}", "the home directory"]),
        ({"work": ""}, ["paths.work is empty", "'data/work'"]),
    ],
)
def test_dangerous_data_paths_are_refused_at_load(paths, says, monkeypatch):
    monkeypatch.chdir(REPO)  # relative paths resolve against the working directory, as in the workflow
    home = str(Path.home().resolve())
    fill = {"repo": str(REPO), "parent": str(REPO.parent), "home": home, "etc": str(Path("/etc").resolve()),
            "to_etc": os.path.relpath("/etc", REPO)}  # e.g. ../../etc from a checkout two levels below /
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
# --------------------------------------------------------------------------- command-line overrides and date limits
# (issue 12: nested `--config` overrides, dates checked at load)

import subprocess  # noqa: E402
import sys  # noqa: E402

from snakemake.cli import parse_config  # noqa: E402  (Snakemake's own --config parser)
from snakemake.utils import update_config, validate  # noqa: E402

from feeder.config import EARLIEST_DAY, date_range_problems, explain_mistakes, merge_overrides  # noqa: E402


def with_command_line(*entries: str) -> dict:
    """The shipped config with ``--config`` entries applied exactly as Snakemake applies them."""
    config = repo_config()
    update_config(config, parse_config(list(entries)))
    return config


def test_nested_command_line_overrides_are_read_as_the_schema_types():
    config = with_command_line("universe={size: 10, settle_ccy: null}", "exchange={timeout_s: 2.5}",
                               "collector={s3: null, metrics_port: 0}", "end=null", "frequencies=[1min, day]")
    assert config["universe"]["size"] == "10"  # what Snakemake hands over: text
    # the hints (which read the text as the schema's types), then Snakemake's own validate against the schema
    assert explain_mistakes(config) == []
    validate(config, schema=str(REPO / "feeder" / "schemas" / "config.schema.yaml"))
    assert config["universe"]["size"] == 10 and config["universe"]["settle_ccy"] is None
    assert config["universe"]["rank_by"] == "quote_volume"  # the file's other universe keys are kept
    assert config["exchange"]["timeout_s"] == 2.5 and config["collector"]["metrics_port"] == 0
    assert config["collector"]["s3"] is None and config["end"] is None
    assert config["frequencies"] == ["1min", "day"]
    # the one check (the workflow's, the collector's and the scheduler's) gives the same reading
    assert check_config(with_command_line("universe={size: 10}"))["universe"]["size"] == 10


def test_text_stays_text_where_the_schema_wants_text_and_bad_numbers_are_refused_by_name():
    config = check_config(with_command_line("universe={inst_category: [1], exclude_bases: [ON, NO]}"))
    assert config["universe"]["inst_category"] == ["1"] and config["universe"]["exclude_bases"] == ["ON", "NO"]
    with pytest.raises(ConfigError, match=r"universe\.size: 'ten' is not of type 'integer'"):
        check_config(with_command_line("universe={size: ten}"))
    with pytest.raises(ConfigError, match=r"universe\.size must be at least 1"):
        check_config(with_command_line("universe={size: 0}"))  # read as the number 0, then explained


def test_load_config_merges_nested_overrides_like_snakemake(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text((REPO / "config.yaml").read_text())
    config = load_config(path, overrides={"universe": {"size": "7"}, "start": "2024-02-01"})
    assert config["universe"]["size"] == 7 and config["universe"]["window_days"] == 7
    assert merge_overrides({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_snakemake_dry_run_takes_a_nested_override(tmp_path):
    config = repo_config() | {"start": "2024-03-01", "end": "2024-03-02"}
    config["paths"] = {key: str(tmp_path / key) for key in ("raw", "work", "qlib")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
                          "--cores", "1", "--config", "universe={size: 10}"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "This was a dry-run" in res.stdout + res.stderr


def test_start_before_okx_has_history_is_refused_at_load_with_the_first_day():
    with pytest.raises(ConfigError, match=r"start: 1970-01-01 is before OKX has any SWAP 1-minute history.*"
                                          r"write start: 2018-08-28 or later"):
        check_config(repo_config() | {"start": "1970-01-01", "end": "2024-01-01"})
    assert date_range_problems({"start": EARLIEST_DAY["SWAP"].isoformat()}) == []
    spot = repo_config() | {"start": "2016-06-01"}
    spot["universe"]["inst_type"] = "SPOT"
    assert "2017-01-01" in date_range_problems(spot)[0]


def test_end_in_the_future_is_refused_at_load_with_the_newest_complete_day():
    now = dt.datetime(2024, 3, 5, 0, 10, tzinfo=dt.timezone.utc)  # within grace: 2024-03-04 is not complete yet
    problems = date_range_problems({"start": "2024-01-01", "end": "2024-03-04", "grace_minutes": 15}, now=now)
    assert len(problems) == 1
    assert "end: 2024-03-04 is not over yet" in problems[0] and "2024-03-05 00:15 UTC" in problems[0]
    assert "Write end: 2024-03-03 (or earlier), or end: null" in problems[0]
    assert date_range_problems({"start": "2024-01-01", "end": "2024-03-03"}, now=now) == []
    next_year = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    with pytest.raises(ConfigError, match=rf"end: {next_year} is not over yet"):
        check_config(repo_config() | {"end": next_year})  # against the real clock


# --------------------------------------------------------------------------- one config check (issue 13)
# The schema ships inside the package; the workflow, the collector and the scheduler all check a
# config with feeder.config.check_config and refuse a bad one in the same words; universe.rank_by
# takes only the rankings feeder.universe.RANKINGS builds.

import os  # noqa: E402
import shutil  # noqa: E402


def test_a_non_editable_install_loads_a_config_outside_the_checkout(tmp_path):
    """``pip install .`` (not editable) carries the schema: load_config works from the installed package."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("feeder", "okxsim", "collector", "harness", "research", "bench", "driver"):
        if (REPO / package).is_dir():
            shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (target / "feeder" / "schemas" / "config.schema.yaml").is_file()
    config = repo_config() | {"start": "2024-03-01", "end": "2024-03-02"}
    config["paths"] = {key: str(tmp_path / "data" / key) for key in ("raw", "work", "qlib")}
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "config.yaml").write_text(yaml.safe_dump(config))
    probe = ("import feeder.config as c, sys; cfg = c.load_config('config.yaml'); "
             "print(c.__file__); print(cfg['universe']['rank_by'], cfg['grace_minutes'])")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / "elsewhere", env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    where, values = res.stdout.splitlines()
    assert Path(where).is_relative_to(target), where  # the installed copy, not the checkout
    assert values == "quote_volume 15"  # validated and filled with the schema's defaults


def _problems_in(text: str) -> list[str]:
    """The ``  - <problem>`` lines of a refused config, as any of the three entry points prints them."""
    return [line.split(" - ", 1)[1].strip() for line in text.splitlines() if line.lstrip().startswith("- ")]


def test_workflow_collector_and_scheduler_refuse_a_bad_config_in_the_same_words(tmp_path):
    """One check (schema, hints, defaults): the same problems, in the same words, wherever it runs."""
    config = repo_config() | {"start": "2024-03-01", "end": "2024-03-02", "frequencies": ["1min", "1h"]}
    config["paths"] = {key: str(tmp_path / key) for key in ("raw", "work", "qlib")}
    del config["universe"]["size"]  # required by the schema: the workflow used to fill in its default
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    runs = {
        "workflow": [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                     "--directory", str(tmp_path), "--configfile", str(path), "--cores", "1"],
        "collector": [sys.executable, "-m", "collector", "--config", str(path)],
        "scheduler": [sys.executable, "-m", "driver.schedule", "run", "--config", str(path)],
    }
    seen = {}
    for name, cmd in runs.items():
        res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        out = res.stdout + res.stderr
        assert res.returncode != 0, f"{name} accepted the config:\n{out[-2000:]}"
        assert str(path) in out, f"{name} does not name the file:\n{out[-2000:]}"
        seen[name] = _problems_in(out)
    assert any("use '60min'" in p for p in seen["workflow"]), seen
    assert seen["workflow"] == seen["collector"] == seen["scheduler"], seen
    assert not (tmp_path / "work").exists(), "nothing may start on a bad config"


def test_rank_by_open_interest_is_refused_at_load_until_it_is_built():
    config = repo_config()
    config["universe"]["rank_by"] = "open_interest"
    with pytest.raises(ConfigError) as refused:
        check_config(config)
    text = str(refused.value)
    assert "universe.rank_by: 'open_interest' is not built yet" in text, text
    assert "quote_volume, abs_funding_rate" in text, text


def test_unknown_rank_by_is_refused_at_load_with_the_valid_values():
    config = repo_config()
    config["universe"]["rank_by"] = "market_cap"
    with pytest.raises(ConfigError) as refused:
        check_config(config)
    text = str(refused.value)
    assert "universe.rank_by: 'market_cap' is not a ranking this project builds" in text, text
    assert "quote_volume, abs_funding_rate" in text and "open_interest" not in text, text


def test_every_exchange_key_is_the_rest_clients_or_the_streams():
    """The REST jobs take only what the REST client reads: a new exchange key must be sorted into one."""
    from feeder.config import EXCHANGE_REST_KEYS, EXCHANGE_STREAM_KEYS, SCHEMA_PATH

    exchange = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["exchange"]["properties"]
    assert set(EXCHANGE_REST_KEYS) | set(EXCHANGE_STREAM_KEYS) == set(exchange)
    assert not set(EXCHANGE_REST_KEYS) & set(EXCHANGE_STREAM_KEYS)


# --------------------------------------------------------------------------- the archive's download directory
# (issue 14: paths.archive holds downloaded zip files; it gets the same protection as the other data paths)

@pytest.mark.parametrize(
    ("archive", "says"),
    [
        ("/etc/x", "paths.archive: '/etc/x' resolves to {etc}/x, inside the system directory"),
        ("/", "paths.archive: '/' resolves to /, a system directory"),
        ("data/raw", "paths.archive: 'data/raw' resolves to {repo}/data/raw, which is the same directory as paths.raw"),
        ("data/raw/zips", "paths.archive: 'data/raw/zips' resolves to {repo}/data/raw/zips, which lies inside "
                          "paths.raw"),
    ],
)
def test_a_dangerous_archive_directory_is_refused_at_load(archive, says, monkeypatch):
    monkeypatch.chdir(REPO)
    config = config_with_paths(archive=archive)
    with pytest.raises(ConfigError) as refused:
        check_config(config)
    assert says.format(repo=REPO, etc=Path("/etc").resolve()) in str(refused.value), str(refused.value)
    assert "directory of its own" in str(refused.value), str(refused.value)


def test_an_archive_directory_of_its_own_is_accepted_and_null_means_the_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    checked = check_config(config_with_paths(raw="data/raw", work="data/work", qlib="data/qlib",
                                             archive="data/archive-files"))
    assert checked["paths"]["archive"] == "data/archive-files"
    default = check_config(config_with_paths(raw="data/raw", work="data/work", qlib="data/qlib", archive=None))
    assert default["paths"]["archive"] is None  # the workflow then uses <paths.raw>/archive-files (common.smk)


def test_an_unknown_history_source_is_refused_with_the_valid_choices():
    config = repo_config()
    config.setdefault("history", {})["source"] = "archive-only"
    with pytest.raises(ConfigError, match=r"history.source: 'archive-only' is not one of \['archive\+rest', 'rest'\]"):
        check_config(config)
