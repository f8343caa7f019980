"""Scale-out: the whole workflow on S3 storage builds the same dataset as a local run, byte for byte.

A local S3-compatible server (moto's server mode, harness/s3.py) stands in for S3. The same raw
input, sealed WebSocket shards of two days (bench/workload.py, written by the project's shard
writer) plus the simulator's REST API, is built twice:

* locally: raw shards in ``<local>/raw``, ``snakemake --cores 2``;
* on storage: raw shards uploaded under ``s3://<bucket>/run/raw/...`` (where the collector's S3
  sink puts them), ``snakemake --default-storage-provider s3 --default-storage-prefix
  s3://<bucket>/run``: every input and output of every rule is an S3 object; the workflow lists
  the raw shards through the storage plugin (workflow/rules/common.smk), not the file system.

The dataset objects under ``run/work/qlib-dataset/`` must equal the local run's files byte for
byte, and so must the dataset the S3 run publishes locally at paths.qlib (Qlib reads local files).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml

from bench.workload import generate
from harness.processes import PYTHON, REPO, simulator, write_config
from harness.s3 import s3_server

pytestmark = pytest.mark.e2e

BUCKET = "feeder-scaleout"
PREFIX = "run"
DAYS = [dt.date(2024, 3, 3), dt.date(2024, 3, 4)]
HISTORY_START = "2024-02-01"
SEED = 7
SIZE = 3
FREQS = ["1min", "5min", "day"]
TIMEOUT_S = 600


def run_snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    cmd = [PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    run_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    run_env.pop("SNAKEMAKE_PROFILE", None)
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=run_env, timeout=TIMEOUT_S)
    log = res.stdout + res.stderr
    (workdir / "snakemake.log").write_text(log)
    assert res.returncode == 0, log[-5000:]
    return log


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of the files under ``root`` (Snakemake's own markers and the export's
    build ledger, which names the day block files it read by inode and mtime, left out)."""
    root = root.resolve()
    return {str(p.relative_to(root)): digest(p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in (".snakemake_timestamp", ".feeder-build.json")}


def s3_tree(client, prefix: str) -> dict[str, str]:  # noqa: ANN001
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):]
            if rel.rsplit("/", 1)[-1] not in (".snakemake_timestamp", ".feeder-build.json"):  # as tree()
                out[rel] = digest(client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
    return out


def relative_config(path: Path, sim, data_dir: Path) -> None:  # noqa: ANN001
    """Config with relative paths: on S3 they become keys under the storage prefix."""
    config = write_config(path, endpoints=sim, data_dir=data_dir, start=DAYS[0].isoformat(),
                          end=DAYS[-1].isoformat(), size=SIZE, frequencies=FREQS, channels=["candle1m"])
    config["paths"] = {"raw": "raw", "work": "work", "qlib": "qlib"}
    config["universe"]["window_days"] = 1  # rank on the day before only: fewer REST jobs
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.slow
def test_workflow_on_s3_builds_the_local_dataset_byte_for_byte(tmp_path: Path) -> None:
    source = tmp_path / "source"
    generated = generate(raw_root=source / "raw", seed=SEED, history_start=HISTORY_START, days=DAYS,
                         n_symbols=SIZE)
    shards = sorted(p for p in (source / "raw").rglob("*.jsonl"))
    assert generated["candles"] > 0 and shards

    local, remote = tmp_path / "local", tmp_path / "remote"
    with s3_server(log_path=tmp_path / "s3.log", buckets=(BUCKET,)) as s3, \
            simulator(seed=SEED, clock_start="2024-03-06T01:00:00Z", speed=1, history_start=HISTORY_START,
                      cert_dir=tmp_path / "certs", log_path=tmp_path / "simulator.log") as sim:
        client = s3.client()
        for data in (local, remote):
            relative_config(data / "config.yaml", sim, data)
        shutil.copytree(source / "raw", local / "raw")
        for shard in shards:
            client.upload_file(str(shard), BUCKET, f"{PREFIX}/raw/{shard.relative_to(source / 'raw')}")
        # an unsealed shard (still being written) must not be picked up on S3 either
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/raw/ws/candle1m/{DAYS[0]}/12/open.jsonl.open", Body=b"{")

        run_snakemake(local)
        log = run_snakemake(remote, "--default-storage-provider", "s3", "--default-storage-prefix",
                            f"s3://{BUCKET}/{PREFIX}", "--storage-s3-endpoint-url", s3.endpoint_url,
                            env=s3.env())

        local_dataset = tree(local / "work" / "qlib-dataset")
        assert any(name.startswith("features/") for name in local_dataset), sorted(local_dataset)[:10]
        remote_dataset = s3_tree(client, f"{PREFIX}/work/qlib-dataset/")
        assert sorted(remote_dataset) == sorted(local_dataset), "the S3 and the local dataset hold different files"
        differing = [name for name in local_dataset if remote_dataset[name] != local_dataset[name]]
        assert not differing, f"{len(differing)} files differ between S3 and local: {differing[:10]}"
        # ... and what the S3 run published locally for Qlib is the same dataset
        assert tree(remote / "qlib") == local_dataset

        # every stage's outputs went to S3, inputs were read from there
        keys = {obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
                for obj in page.get("Contents", [])}
        for day in DAYS:
            for key in (f"raw/rest/candle1m/{day}.jsonl", f"work/universe/{day}.parquet",
                        f"work/coverage/{day}.parquet", f"work/qlib-blocks/day/{day}.arrow"):
                assert f"{PREFIX}/{key}" in keys, key
        coverage = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/work/coverage.parquet")["Body"].read()
        (tmp_path / "coverage-s3.parquet").write_bytes(coverage)
        assert pl.read_parquet(tmp_path / "coverage-s3.parquet").equals(pl.read_parquet(local / "work" / "coverage.parquet"))
        # the remote run kept no raw shards of its own: it read the uploaded ones
        assert not (remote / "raw" / "ws").exists()
        assert "open.jsonl.open" not in log
