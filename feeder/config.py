"""Loading and validating config.yaml: the one config check.

The workflow (``workflow/rules/common.smk``), the collector (``collector/settings.py``) and the
scheduler (``driver/schedule.py``) all go through :func:`check_config` (or :func:`load_config`,
which reads a file and calls it), so a bad value is refused with the same message whichever one
meets it first. Validation is against the JSON Schema that ships inside this package,
``feeder/schemas/config.schema.yaml`` (package data, so a plain ``pip install`` carries it);
before that, :func:`explain_mistakes` turns the mistakes people actually make (``1h`` for
``60min``, a date in the wrong format, a ranking that is not built, ...) into sentences that say
what to write instead, because a bare JSON-Schema error does not. After it, the schema's
defaults are filled in.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import functools
import re
from pathlib import Path
from typing import Any

import yaml

from feeder import registry

#: The config schema, shipped as package data next to this module.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message says which key and what to write instead."""


def explain_mistakes(config: dict[str, Any], *, schema_path: Path = SCHEMA_PATH) -> list[str]:
    """Return human-readable problems that JSON Schema would report cryptically.

    Also normalises ``config`` in place first: command-line values are read as the schema's types
    (:func:`read_override_text`) and YAML dates become ``YYYY-MM-DD`` strings.
    """
    read_override_text(config, schema=_load_schema(schema_path))
    problems: list[str] = registry.frequency_problems(config.get("frequencies"))
    for key in ("start", "end"):
        value = config.get(key)
        if isinstance(value, dt.date):
            config[key] = value.isoformat()  # YAML turns an unquoted date into a date object
            continue
        if value is None or not isinstance(value, str):
            continue
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            problems.append(f"{key}: '{value}' is not a date; write it as YYYY-MM-DD, e.g. 2024-01-31.")
    universe = config.get("universe") or {}
    problems.extend(rank_by_problems(universe.get("rank_by"), valid=rank_by_values(schema_path=schema_path)))
    if isinstance(universe.get("size"), int) and universe["size"] < 1:
        problems.append("universe.size must be at least 1 (the number of instruments to keep each day).")
    problems.extend(_collector_s3_problems(config))
    problems.extend(_data_path_problems(config))
    problems.extend(date_range_problems(config))
    return problems


# --------------------------------------------------------------------------- which job takes which key

#: The ``universe`` keys a day's ranking metric depends on (``feeder.universe.fetch_daily_metrics``):
#: the ranking and the eligibility filters. ``size`` and ``window_days`` only choose from the
#: ranking, so the workflow passes them to the universe job alone, and changing them re-fetches
#: nothing (tests/test_universe.py checks every universe key of the schema is one or the other).
UNIVERSE_METRIC_KEYS = ("rank_by", "inst_type", "settle_ccy", "ct_type", "inst_category", "exclude_bases")
UNIVERSE_RANKING_KEYS = ("size", "window_days")

#: The ``exchange`` keys the REST client reads (``feeder.rest.OkxRestClient.from_exchange``): all the
#: workflow's REST jobs take. The WebSocket URLs are the collector's alone, so changing them re-runs
#: no job (tests/test_config.py checks every exchange key of the schema is one or the other).
EXCHANGE_REST_KEYS = ("rest_url", "ca_file", "timeout_s", "give_up_after_s")
EXCHANGE_STREAM_KEYS = ("ws_public_url", "ws_business_url")


# --------------------------------------------------------------------------- universe.rank_by

#: rank_by values that are asked for but not built, and why (refused at load, not by a job later).
RANK_BY_NOT_BUILT = {
    "open_interest": "OKX serves no open-interest history over REST, and ranking from the collector's recorded "
                     "open interest is not built",
}


def rank_by_values(*, schema_path: Path = SCHEMA_PATH) -> list[str]:
    """The ``universe.rank_by`` values the schema accepts: the keys of ``feeder.universe.RANKINGS``.

    Read from the schema rather than from the ranking table so that checking a config does not
    import polars; ``tests/test_universe.py`` holds the two equal.
    """
    return list(_load_schema(schema_path)["properties"]["universe"]["properties"]["rank_by"]["enum"])


def rank_by_problems(rank_by: Any, *, valid: list[str]) -> list[str]:
    """A ``universe.rank_by`` that is not one of ``valid``, in words, with the values to choose from.

    Why here and not only in the schema's enum: an unknown value used to reach the jobs (and rank
    silently by funding), and a value the schema allowed (``open_interest``) failed only once a
    job ran; both are refused when the config is loaded, saying what to write instead.
    """
    if not isinstance(rank_by, str) or rank_by in valid:
        return []  # absent: the default; not text: the schema says what type it must be
    choose = f"use one of {', '.join(valid)} (the default is {valid[0]})."
    if rank_by in {"funding_rate", "funding"}:
        return ["universe.rank_by: ranking by the signed funding rate picks coins by how crowded one side is, not "
                f"by how much trades; use 'abs_funding_rate' if that is what you want, or the default '{valid[0]}'."]
    if rank_by in RANK_BY_NOT_BUILT:
        return [f"universe.rank_by: '{rank_by}' is not built yet ({RANK_BY_NOT_BUILT[rank_by]}); {choose}"]
    return [f"universe.rank_by: '{rank_by}' is not a ranking this project builds; {choose}"]


# --------------------------------------------------------------------------- collector.s3

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_S3_EXAMPLE = "e.g. s3://my-bucket/feeder/data/raw"
#: keys people put next to the prefix, hoping the collector reads credentials from config.yaml
_CREDENTIAL_KEYS = {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "access_key", "access_key_id",
                    "secret_key", "secret_access_key", "secret", "session_token", "token", "password", "profile",
                    "credentials"}


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")`` (no trailing slash; ``""`` for the
    bucket root). Raises :class:`ConfigError` saying what is wrong and what to write instead.

    Checked here, not only by the schema's pattern, because "does not match '^s3://...'" does not tell
    the user that ``S3://My_Bucket`` fails on the bucket naming rules.
    """
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ConfigError(f"collector.s3.prefix: {url!r} is not an S3 URL; write s3://<bucket>/<prefix>, "
                          f"{_S3_EXAMPLE} (the endpoint of MinIO or another S3-compatible server goes into "
                          "collector.s3.endpoint_url).")
    bucket, _, key = url[len("s3://"):].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket or _IP_RE.match(bucket):
        raise ConfigError(f"collector.s3.prefix: {bucket!r} is not a valid S3 bucket name: 3 to 63 characters, "
                          "lower-case letters, digits, '.' and '-', starting and ending with a letter or digit, "
                          f"not an IP address ({_S3_EXAMPLE}).")
    key = key[:-1] if key.endswith("/") else key
    segments = key.split("/") if key else []
    if any(seg in ("", ".", "..") or any(ch.isspace() for ch in seg) for seg in segments):
        raise ConfigError(f"collector.s3.prefix: {url!r} has an empty, '.', '..' or blank path segment; write the "
                          f"key prefix as plain names separated by single slashes, {_S3_EXAMPLE}.")
    return bucket, key


def _collector_s3_problems(config: dict[str, Any]) -> list[str]:
    """collector.s3 mistakes, in words: not a mapping, credentials in the file, a bad prefix or endpoint."""
    collector = config.get("collector")
    s3 = collector.get("s3") if isinstance(collector, dict) else None
    if s3 is None:
        return []
    if not isinstance(s3, dict):
        return [f"collector.s3 must be a mapping like {{prefix: s3://my-bucket/feeder/data/raw}} (or null for local "
                f"shards only), not {s3!r}."]
    problems = [f"collector.s3.{key}: credentials are never read from config.yaml (it is shared and committed); "
                "remove it and give them to the collector's environment: AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance/pod role (boto3's standard chain)."
                for key in s3 if str(key).lower() in _CREDENTIAL_KEYS]
    if "prefix" not in s3:
        problems.append("collector.s3.prefix is missing: the S3 URL the sealed shards are uploaded under, "
                        f"{_S3_EXAMPLE}.")
    else:
        try:
            split_s3_url(s3["prefix"])
        except ConfigError as exc:
            problems.append(str(exc))
    endpoint = s3.get("endpoint_url")
    if endpoint is not None and (not isinstance(endpoint, str) or not re.match(r"^https?://[^/\s]+", endpoint)):
        problems.append(f"collector.s3.endpoint_url: {endpoint!r} is not an http(s) URL; write e.g. "
                        "http://127.0.0.1:9000 for a MinIO server, or null for AWS S3.")
    return problems


# --------------------------------------------------------------------------- paths.*

#: Where each data path goes when left at its default (what the messages suggest instead).
_DEFAULT_DATA_PATHS = {"raw": "data/raw", "work": "data/work", "qlib": "data/qlib"}
#: The operating system's own trees: no data path may be one of them or lie anywhere inside.
_SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys",
                 "/usr/bin", "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec", "/usr/sbin",
                 "/usr/share", "/System", "/Library", "/private/etc")
#: Shared system directories: a data directory may live below them, but never be one of them.
_SYSTEM_DIRS = ("/", "/home", "/media", "/mnt", "/opt", "/root", "/run", "/srv", "/tmp", "/usr", "/usr/local",
                "/usr/src", "/var", "/var/cache", "/var/lib", "/var/log", "/var/tmp", "/Users", "/Volumes", "/private",
                "/private/tmp", "/private/var")
#: The checkout this module belongs to (the workflow, the code, config.yaml).
_CHECKOUT = Path(__file__).resolve().parent.parent


def _resolve_data_path(key: str, value: str, cwd: Path) -> Path:
    """Absolute, symlink-free form of a configured path, as the workflow will use it.

    ``paths.qlib`` is normally a symbolic link this project switches between versions: its last
    component is kept as it is (the link, not the version it points at); everything above it is
    resolved like the other paths.
    """
    path = Path(cwd, value)
    if key == "qlib" and path.name not in ("", ".", ".."):
        return path.parent.resolve() / path.name
    return path.resolve()


def _system_paths(names: tuple[str, ...]) -> set[Path]:
    """Both spellings of each system path: as written and resolved (``/bin`` -> ``/usr/bin``)."""
    return {Path(name) for name in names} | {Path(name).resolve() for name in names}


def _is_inside(path: Path, other: Path) -> bool:
    return path != other and path.is_relative_to(other)


def data_path_problems(paths: dict[str, Any], *, cwd: Path, checkout: Path = _CHECKOUT,
                       home: Path | None = None) -> list[str]:
    """What is wrong with the data directories in ``paths`` (``paths.raw``, ``paths.work``, ``paths.qlib``, ...).

    Why: the workflow writes below these directories, prunes old versions next to ``paths.qlib``
    and replaces ``paths.qlib`` itself by a symbolic link (moving away what is there), so a path
    that is ``/``, a system directory, the home directory, the checkout, the working directory (or
    one of their parents), or one data path inside another, would damage files that are not the
    project's. Relative paths are resolved against ``cwd`` and symbolic links followed before
    comparing, so ``../..`` or a link to ``/etc`` is seen for what it is.
    """
    entries: list[tuple[str, str, Path]] = []  # (label, key, resolved)
    problems: list[str] = []
    for key, value in paths.items():
        if not isinstance(value, str):
            continue  # the schema says what type it must be
        fix = _data_path_fix(key, cwd)
        if not value.strip():
            problems.append(f"paths.{key} is empty. {fix}")
            continue
        entries.append((f"paths.{key}", key, _resolve_data_path(key, value, cwd)))
        if key == "qlib" and entries[-1][2].name:
            qlib = entries[-1][2]
            entries.append((f"paths.qlib's versions directory ({qlib.name}.versions)", key,
                            qlib.with_name(qlib.name + ".versions")))
    values = {f"paths.{key}": value for key, value in paths.items()}
    guarded = [("the project checkout", checkout.resolve()), ("the working directory", cwd.resolve())]
    if home is not None:
        guarded.append(("the home directory", home.resolve()))
    system_dirs, system_trees = _system_paths(_SYSTEM_DIRS), _system_paths(_SYSTEM_TREES)
    refused: set[str] = set()  # one message per key: a path refused here is not compared with the others
    for label, key, path in entries:
        said = f"{label}: {values[label]!r} resolves to {path}" if label in values else f"{label} is {path}"
        fix = _data_path_fix(key, cwd)
        is_guarded = next((f"which is {name}" for name, place in guarded if place == path), None)
        contains = next((f"which contains {name} ({place})" for name, place in guarded if _is_inside(place, path)),
                        None)
        tree = next((t for t in sorted(system_trees) if path.is_relative_to(t)), None)
        where = (is_guarded or ("a system directory" if path in system_dirs or path == tree else None) or contains
                 or (f"inside the system directory {tree}" if tree is not None else None))
        if where is not None:
            problems.append(f"{said}, {where}; the workflow writes, moves and deletes files there. {fix}")
            refused.add(key)
    for i, (other_label, other_key, other) in enumerate(entries):
        for label, key, path in entries[i + 1:]:
            if key == other_key or {key, other_key} & refused:
                continue  # paths.qlib and its versions directory are siblings by construction; one message a key
            if path == other:
                relation = f"is the same directory as {other_label}"
            elif _is_inside(path, other):
                relation = f"lies inside {other_label} ({other})"
            elif _is_inside(other, path):
                relation = f"contains {other_label} ({other})"
            else:
                continue
            refused.add(key)
            said = f"{label}: {values[label]!r} resolves to {path}" if label in values else f"{label} is {path}"
            examples = " and ".join(f"paths.{k}: {_DEFAULT_DATA_PATHS.get(k, f'data/{k}')!r}"
                                    for k in dict.fromkeys((other_key, key)))
            problems.append(f"{said}, which {relation}: each data path needs a directory of its own, none inside "
                            "another (publishing replaces paths.qlib by a link and prunes old versions beside it). "
                            f"Write e.g. {examples} (relative paths are taken from the working directory, here {cwd}).")
    return problems


def _data_path_fix(key: str, cwd: Path) -> str:
    example = _DEFAULT_DATA_PATHS.get(key, f"data/{key}")
    return (f"Set paths.{key} to a directory of its own, e.g. {example!r} (relative paths are taken from the "
            f"working directory, here {cwd}).")


def _data_path_problems(config: dict[str, Any]) -> list[str]:
    """:func:`data_path_problems` for ``config['paths']``, seen from the current working directory."""
    paths = config.get("paths")
    if not isinstance(paths, dict):
        return []
    try:
        home: Path | None = Path.home()
    except (KeyError, RuntimeError):  # no HOME and no passwd entry
        home = None
    return data_path_problems(paths, cwd=Path(os.getcwd()), home=home)


def check_config(config: dict[str, Any], *, schema_path: Path = SCHEMA_PATH,
                 source: str = "config.yaml") -> dict[str, Any]:
    """Validate ``config`` in place (filling schema defaults) and return it: the one config check.

    The workflow, the collector and the scheduler all call this, so they accept the same configs
    and refuse the others in the same words. Order: the human hints of :func:`explain_mistakes`
    (which also read command-line text as the schema's types), then the schema, then the schema's
    defaults; a key the schema marks ``required`` must be written even where it has a default.
    Raises :class:`ConfigError` naming ``source`` (the file, or files, the config came from) and
    listing every problem found, each with the fix.
    """
    import jsonschema

    problems = explain_mistakes(config, schema_path=schema_path)
    if problems:
        raise ConfigError(f"{source} is invalid:\n  - " + "\n  - ".join(problems))
    schema = copy.deepcopy(_load_schema(schema_path))
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"{where}: {err.message}")
        raise ConfigError(
            f"{source} is invalid (checked against the config schema, feeder/schemas/config.schema.yaml, "
            "where every key is documented):\n  - " + "\n  - ".join(lines)
        )
    _fill_defaults(config, schema)
    start = dt.date.fromisoformat(config["start"])
    if config.get("end") and dt.date.fromisoformat(config["end"]) < start:
        raise ConfigError(f"{source} is invalid:\n  - end ({config['end']}) is before start ({config['start']}); "
                          "swap them or drop end.")
    return config


def _fill_defaults(instance: dict[str, Any], schema: dict[str, Any]) -> None:
    """Fill in schema ``default`` values for missing keys, recursively (objects only)."""
    for key, sub in (schema.get("properties") or {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(instance[key], sub)


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read, merge ``overrides`` (nested mappings merged key by key, as Snakemake's ``--config``
    does) and validate a config file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; copy config.yaml from the repository root and edit it.")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(config).__name__}.")
    merge_overrides(config, overrides or {})
    return check_config(config, source=str(path) if not overrides else f"{path} (with overrides {overrides})")


def last_complete_day(now: dt.datetime, grace_minutes: int) -> dt.date:
    """The newest UTC day that is over, allowing ``grace_minutes`` for its last candles."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    return (now.astimezone(dt.timezone.utc) - dt.timedelta(days=1, minutes=grace_minutes)).date()


def build_days(config: dict[str, Any], *, now: dt.datetime | None = None) -> list[dt.date]:
    """The UTC days the workflow builds: ``start`` .. ``end`` (or the last complete day)."""
    start = dt.date.fromisoformat(config["start"])
    if config.get("end"):
        end = dt.date.fromisoformat(config["end"])
    else:
        end = last_complete_day(now or dt.datetime.now(dt.timezone.utc), int(config.get("grace_minutes", 15)))
    if end < start:
        raise ConfigError(
            f"nothing to build yet: start is {start} but the last complete UTC day is {end}. "
            "Pick an earlier start, or wait until the day is over."
        )
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def market_name(config: dict[str, Any]) -> str:
    """Qlib market name of the point-in-time universe, e.g. ``top50``."""
    return registry.market_name(int(config["universe"]["size"]))


_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_day(text: str) -> bool:
    """True for a ``YYYY-MM-DD`` string (used to constrain Snakemake wildcards)."""
    return bool(_DAY_RE.match(text))


# --------------------------------------------------------------------------- overrides and dates

# The first UTC day `start` may name, by universe.inst_type. OKX does not document how far back
# /api/v5/market/history-candles reaches, so these are floors, meant to refuse only what cannot be
# meant (1970-01-01, a typo like 0224-01-01, which cost minutes of empty work even in a dry run);
# a start a little too early costs only some empty days:
# - SWAP: OKX's instrument list (/api/v5/public/instruments, as served in 2025) gives 2018-08-28 as
#   the listTime of its oldest perpetual swap, BTC-USD-SWAP (coin-margined), and 2019-11-12 for
#   BTC-USDT-SWAP and ETH-USDT-SWAP (USDT-margined, the default universe). No swap can have a
#   1-minute bar before the first listing.
# - SPOT, FUTURES: no first day is known to this project; 2017-01-01 is its own conservative
#   choice, not an OKX figure.
EARLIEST_DAY: dict[str, dt.date] = {
    "SWAP": dt.date(2018, 8, 28),
    "SPOT": dt.date(2017, 1, 1),
    "FUTURES": dt.date(2017, 1, 1),
}
_EARLIEST_REASON = {
    "SWAP": "OKX lists its oldest perpetual swap, BTC-USD-SWAP, from 2018-08-28, and the USDT-margined "
            "swaps from 2019-11-12",
    "SPOT": "OKX does not say how far back its spot history goes; this project refuses days before 2017",
    "FUTURES": "OKX does not say how far back its futures history goes; this project refuses days before 2017",
}
_JSON_TYPES: dict[str, Any] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


@functools.lru_cache(maxsize=4)
def _load_schema(schema_path: Path) -> dict[str, Any]:
    return yaml.safe_load(Path(schema_path).read_text())


def merge_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge ``overrides`` into ``config`` in place: mappings key by key, anything else replaced.

    The same rule as Snakemake's ``--config``, so ``{"universe": {"size": 10}}`` changes the size
    and keeps the file's other universe settings.
    """
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merge_overrides(config[key], value)
        else:
            config[key] = value
    return config


def read_override_text(config: Any, *, schema: dict[str, Any]) -> Any:
    """Read text values as YAML where the schema wants a number, true/false or null (in place).

    Why: Snakemake parses ``--config 'universe={size: 10}'`` with YAML's base loader, which gives
    every nested value as text (``'10'``), and JSON Schema then refuses ``'10'`` for an integer.
    A text value is replaced by its YAML reading only when the schema does not take text there
    and the reading has a type the schema does take, so ``size: '10'`` becomes 10,
    ``settle_ccy: 'null'`` becomes null, and ``size: ten`` or ``inst_category: ['1']`` stay as
    written (the first for the schema to refuse by name). Returns ``config``.
    """
    if isinstance(config, dict):
        props = schema.get("properties") or {}
        for key, value in config.items():
            if key in props:
                config[key] = _read_leaf(value, props[key])
    elif isinstance(config, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(config):
            config[i] = _read_leaf(value, schema["items"])
    return config


def _read_leaf(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, (dict, list)):
        return read_override_text(value, schema=schema)
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if not isinstance(value, str) or not types or ("string" in types and "null" not in types):
        return value
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        return value
    if parsed is None and "null" not in types:
        return value
    if "string" in types and parsed is not None:
        return value  # text is welcome here; only a YAML null spelling means null
    if any(_JSON_TYPES[t](parsed) for t in types if t in _JSON_TYPES):
        return parsed
    return value


def date_range_problems(config: dict[str, Any], *, now: dt.datetime | None = None) -> list[str]:
    """``start`` before OKX has 1-minute history, or ``end`` on a day that is not over yet.

    Checked when the config is loaded because either mistake otherwise shows up late: a start of
    1970-01-01 makes even a dry run plan twenty thousand days, and an end in the future fails only
    once the jobs for that day ask OKX for bars that do not exist yet.
    """
    problems: list[str] = []
    universe = config.get("universe") if isinstance(config.get("universe"), dict) else {}
    inst_type = universe.get("inst_type") if universe.get("inst_type") in EARLIEST_DAY else "SWAP"
    start = _iso_day(config.get("start"))
    if start is not None and start < EARLIEST_DAY[inst_type]:
        first = EARLIEST_DAY[inst_type]
        problems.append(
            f"start: {start} is before OKX has any {inst_type} 1-minute history ({_EARLIEST_REASON[inst_type]}); "
            f"write start: {first.isoformat()} or later."
        )
    end = _iso_day(config.get("end"))
    if end is not None:
        grace = config.get("grace_minutes", 15)
        grace = grace if isinstance(grace, int) and not isinstance(grace, bool) and grace >= 0 else 15
        now = now or dt.datetime.now(dt.timezone.utc)
        newest = last_complete_day(now, grace)
        if end > newest:
            complete_at = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.timezone.utc) + dt.timedelta(
                minutes=grace)
            problems.append(
                f"end: {end} is not over yet: a UTC day is complete {grace} minutes (grace_minutes) after it ends, "
                f"so {end} can be built from {complete_at:%Y-%m-%d %H:%M} UTC on, and the newest complete day now "
                f"is {newest}. Write end: {newest.isoformat()} (or earlier), or end: null to build through the "
                "newest complete day on every run."
            )
    return problems


def _iso_day(value: Any) -> dt.date | None:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _DAY_RE.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None
