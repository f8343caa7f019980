"""feeder.registry: one name for each field, frequency and market, read by every stage, rule and doc."""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import jsonschema
import polars as pl
import pytest
import yaml

from feeder import registry
from feeder.config import SCHEMA_PATH, ConfigError, check_config, explain_mistakes, market_name
from feeder.qlib_blocks import day_block
from feeder.qlib_export import DEFAULT_FIELDS
from feeder.resample import BARS_SCHEMA, resample_bars

REPO = Path(__file__).resolve().parent.parent


def repo_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


# --------------------------------------------------------------------------------------------
# Frequencies
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("freq", ["7min", "100min", "2880min"])
def test_an_unsupported_frequency_fails_at_config_load(freq: str) -> None:
    """A frequency that does not divide the day used to pass every check and fail only in a late rule."""
    config = repo_config() | {"frequencies": ["1min", freq]}
    assert [p for p in explain_mistakes(dict(config)) if freq in p]  # what the workflow checks first
    with pytest.raises(ConfigError) as refused:
        check_config(config)
    message = str(refused.value)
    assert f"'{freq}'" in message
    assert "'day' or '<N>min' with N dividing a day's 1440 minutes" in message  # what is allowed
    assert "1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 15" in message and "720, 1440" in message


def test_every_supported_frequency_loads() -> None:
    names = ["day", *(f"{n}min" for n in registry.SUPPORTED_FREQ_MINUTES)]
    assert check_config(repo_config() | {"frequencies": names})["frequencies"] == names


def test_schema_wildcard_and_stages_agree_on_the_frequencies() -> None:
    """The config schema, the workflow's freq wildcard and the stages accept exactly the same names."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    pattern = schema["properties"]["frequencies"]["items"]["pattern"]
    assert pattern == f"^({registry.FREQ_PATTERN})$"
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r"^\s*freq=FREQ_PATTERN,$", common, re.MULTILINE), "the freq wildcard is not the registry's"
    item_schema = schema["properties"]["frequencies"]["items"]
    for freq in ["day", "1min", "5min", "7min", "60min", "1440min", "2880min", "0min", "05min", "1h", "1d", "week"]:
        try:
            minutes = registry.freq_minutes(freq)
        except ValueError:
            minutes = None
        schema_ok = not list(jsonschema.Draft7Validator(item_schema).iter_errors(freq))
        wildcard_ok = re.fullmatch(registry.FREQ_PATTERN, freq) is not None
        assert schema_ok == wildcard_ok == (minutes is not None), freq
        if minutes is not None:
            assert registry.MINUTES_PER_DAY % minutes == 0
            bars = pl.DataFrame({"inst": ["X"], "ts": [dt.datetime(2024, 3, 1, 0, 0)], "open": [1.0], "high": [1.0],
                                 "low": [1.0], "close": [1.0], "volume": [1.0], "amount": [1.0]})
            assert resample_bars(bars, freq).height == 1


def test_hints_say_what_to_write() -> None:
    assert registry.frequency_problems(["1h", "5min", 3]) == [
        "frequencies: '1h': not a Qlib frequency name; use '60min'. Supported: " + registry._ALLOWED + "."]
    with pytest.raises(ValueError, match="use 240min"):
        registry.freq_minutes("4h")
    with pytest.raises(ValueError, match="multi-day"):
        registry.freq_minutes("2d")


# --------------------------------------------------------------------------------------------
# Fields
# --------------------------------------------------------------------------------------------


def test_exported_fields_follow_the_collected_channels() -> None:
    price = ["open", "high", "low", "close", "volume", "amount", "vwap", "factor", "coverage", "funding_rate"]
    assert registry.qlib_fields(["candle1m"]) == price
    assert registry.qlib_fields(registry.DEFAULT_CHANNELS) == [*price, "open_interest"] == list(DEFAULT_FIELDS)
    assert registry.qlib_fields(["candle1m", "trades", "open-interest"]) == [
        *price, "open_interest", "n_trades", "taker_buy_volume"]
    assert registry.field("taker_buy_volume").channel == "trades"


def test_every_field_reaches_the_bars_or_the_export() -> None:
    """The bars carry every field but the export's own, and a day block can hold every field."""
    assert set(BARS_SCHEMA) - {"inst", "ts"} == {f.name for f in registry.FIELDS if f.source != "export"}
    assert list(BARS_SCHEMA)[2:] == registry.bar_fields()
    bars = resample_bars(pl.DataFrame({"inst": ["X"], "ts": [dt.datetime(2024, 3, 1)], "open": [1.0], "high": [2.0],
                                       "low": [0.5], "close": [1.5], "volume": [2.0], "amount": [3.0]}), "day")
    block = day_block(bars, day=dt.date(2024, 3, 1), freq="day", fields=[f.name for f in registry.FIELDS])
    assert block.columns == ["inst", *(f.name for f in registry.FIELDS)]
    with pytest.raises(ValueError, match="rsi"):
        registry.check_fields(["close", "rsi"])


def test_docs_fields_table_is_the_registry() -> None:
    """docs/fields.md shows the registry's table (regenerate it with `python -m feeder.registry`)."""
    assert registry.fields_table() in (REPO / "docs" / "fields.md").read_text()


# --------------------------------------------------------------------------------------------
# Market name, time units
# --------------------------------------------------------------------------------------------


def test_market_name() -> None:
    config = check_config(repo_config())
    assert market_name(config) == registry.market_name(50) == "top50"
    registry.check_market_name("top50")
    for bad in ("all", "ALL", "../x", "top 5"):
        with pytest.raises(ValueError, match="market name"):
            registry.check_market_name(bad)


def test_time_units_are_defined_once() -> None:
    """The library and the research code import MINUTE_MS/DAY_MS/MINUTES_PER_DAY; only the registry defines them."""
    defined = []
    for path in [*(REPO / "feeder").glob("*.py"), *(REPO / "research").glob("*.py")]:
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            defined += [(path.name, t.id) for t in targets if isinstance(t, ast.Name)
                        and t.id in ("MINUTE_MS", "DAY_MS", "MINUTES_PER_DAY")]
    assert sorted(defined) == [("registry.py", "DAY_MS"), ("registry.py", "MINUTES_PER_DAY"),
                               ("registry.py", "MINUTE_MS")]
    assert registry.day_start_ms(dt.date(2024, 3, 1)) == 1709251200000
