"""``collector.s3``: sealed shards are copied to S3, and nothing is lost when S3 is away.

Against a real S3 server (moto's server mode on 127.0.0.1, :mod:`harness.s3`), through the same
boto3 client the collector builds (credentials from the environment only):

* the uploader unit: sealed shards (found at start-up and freshly sealed) land under
  ``<prefix>/ws/<channel>/<day>/<hour>/<name>.jsonl`` byte for byte, ``.jsonl.open`` never;
  S3 refusing connections or answering 503 only grows the backlog, which drains when S3 is
  back; a restart uploads what an earlier process could not, without uploading twice, and never
  overwrites different bytes; large shards go up in parts;
* config: bad prefixes, endpoints and credentials in the file are refused in plain words;
* the real collector process against the OKX simulator: S3 down during a first run (status says
  so), a second run with S3 up uploads every shard of both runs.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
import yaml
from prometheus_client import generate_latest

from collector.metrics import Metrics
from collector.s3 import JOURNAL_NAME, ShardUploader
from collector.settings import S3Settings, load_settings
from collector.status import EXIT_HEALTHY, Scrape, assess
from collector.writer import ShardWriter
from feeder import shards as S
from feeder.config import ConfigError, check_config
from harness.processes import PYTHON, REPO, simulator, write_config
from harness.s3 import S3_ENV, S3Server, s3_server

BUCKET = "feeder-test"
T0 = 1_709_589_600_000          # 2024-03-04T22:00:00Z
HOUR = S.HOUR_MS
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.3}   # test-sized backoff


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 server for the module; each test uses its own key prefix."""
    with s3_server(log_path=tmp_path_factory.mktemp("s3") / "moto.log", buckets=(BUCKET,)) as server:
        yield server


@pytest.fixture()
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Dummy credentials in the environment (boto3's chain), and no user AWS config or endpoint."""
    env = {**S3_ENV, "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials")}
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def target(tmp_path: Path, endpoint: str) -> S3Settings:
    """A key prefix of this test's own, shaped like a workflow's: <run>/data/raw."""
    return S3Settings(bucket=BUCKET, key_prefix=f"{tmp_path.name}/data/raw", endpoint_url=endpoint)


class HandShards:
    """A ShardWriter on a hand-driven receipt clock: write into an hour, seal by moving the clock."""

    def __init__(self, raw: Path) -> None:
        self.now = T0 / 1000
        self.writer = ShardWriter(raw, clock=lambda: self.now, seal_grace_s=0)

    def write(self, channel: str, hour: int, n: int = 3, pad: int = 40) -> None:
        for i in range(n):
            ts = T0 + hour * HOUR + i
            self.writer.write_line(channel, ts, b'{"channel":"%s","recv_ts":%d,"pad":"%s"}\n'
                                   % (channel.encode(), ts, b"x" * pad))

    def seal_until(self, hour: int) -> list[Path]:
        """Seal every hour before ``hour``; the hours from ``hour`` on stay open."""
        self.now = (T0 + hour * HOUR) / 1000
        return self.writer.tick()


def objects(server: S3Server, prefix: str) -> dict[str, bytes]:
    client = server.client()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
            for o in page.get("Contents", [])]
    return {key: client.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def expected_objects(raw: Path, t: S3Settings) -> dict[str, bytes]:
    """What S3 must hold: every local sealed shard under its key (same relative path under raw/)."""
    return {f"{t.key_prefix}/{p.relative_to(raw).as_posix()}": p.read_bytes() for p in S.all_sealed_shards(raw)}


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics_of(uploader: ShardUploader) -> Metrics:
    """The collector's metrics with only the uploader bound (the rest of the app absent)."""
    app = SimpleNamespace(clock=None, phase="running", writer=None, disk_problem=None, recovery=None, capture=None,
                          feed=None, retired_connects={}, retired_reconnects={}, selection=None, universe_switches=0,
                          uploader=uploader)
    metrics = Metrics(enabled=False)
    metrics.bind(app)  # type: ignore[arg-type]
    return metrics


def scrape_of(uploader: ShardUploader) -> Scrape:
    return Scrape.parse(generate_latest(metrics_of(uploader).registry).decode())


class FlakyProxy:
    """A TCP proxy in front of the S3 server, switched by the test: ``up`` forwards, ``refuse``
    drops every connection at once (a network failure), ``503`` answers every request with 503."""

    def __init__(self, upstream: str, mode: str = "up") -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", int(parsed.port or 80))
        self.mode = mode
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def set_mode(self, mode: str) -> None:
        """Switch, and cut open connections so pooled keep-alive ones cannot bypass the new mode."""
        self.mode = mode
        with self._lock:
            for sock in list(self._live):
                with _quiet():
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self.set_mode("refuse")
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if self.mode == "refuse":
                return
            if self.mode == "503":
                with _quiet():
                    conn.settimeout(5)
                    head = b""
                    while b"\r\n\r\n" not in head and (chunk := conn.recv(65536)):
                        head += chunk
                    body = b"<Error><Code>ServiceUnavailable</Code><Message>test outage</Message></Error>"
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                return
            with _quiet(), socket.create_connection(self.upstream) as up:
                self._pump(conn, up)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with self._lock:
            self._live |= {a, b}
        try:
            while not self._closed:
                readable, _, _ = select.select([a, b], [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        finally:
            with self._lock:
                self._live -= {a, b}


class _quiet:
    """``contextlib.suppress(OSError)`` as a class (usable in ``with`` chains above)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, *_: Any) -> bool:
        return exc_type is not None and issubclass(exc_type, OSError)


# --------------------------------------------------------------------------- the uploader


def test_sealed_shards_reach_s3_byte_identical_and_open_ones_never(s3: S3Server, aws_env: dict, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shards = HandShards(raw)
    shards.write("candle1m", 0)
    shards.write("funding-rate", 0)
    assert len(shards.seal_until(1)) == 2            # sealed before the uploader runs: found by its scan
    t = target(tmp_path, s3.endpoint_url)
    uploader = ShardUploader(raw, t, **FAST)
    shards.writer.on_seal = uploader.notify
    uploader.start()
    shards.write("candle1m", 1)
    assert len(shards.seal_until(2)) == 1            # sealed while it runs: queued by the seal hook
    shards.write("candle1m", 2)
    shards.write("open-interest", 2)
    shards.writer.flush()                             # two .jsonl.open files with data on disk
    assert len(list(raw.rglob("*.jsonl.open"))) == 2
    assert uploader.wait_idle(30), uploader.snapshot()

    stored = objects(s3, t.key_prefix)
    assert stored == expected_objects(raw, t) and len(stored) == 3
    assert f"{t.key_prefix}/ws/candle1m/2024-03-04/22/{shards.writer.writer_id}.jsonl" in stored
    assert f"{t.key_prefix}/ws/candle1m/2024-03-04/23/{shards.writer.writer_id}.jsonl" in stored
    assert not [k for k in stored if ".open" in k], "an unsealed shard was uploaded"
    snap = uploader.snapshot()
    assert (snap.uploaded, snap.already_present, snap.errors, snap.backlog_shards) == (3, 0, 0, 0)
    head = s3.client().head_object(Bucket=BUCKET, Key=next(iter(stored)))
    assert head["Metadata"]["md5"] == head["ETag"].strip('"')   # verified by MD5 on the way up

    # what the operator sees: metrics and the status verdict
    scrape = scrape_of(uploader)
    assert scrape.value("collector_s3_backlog_shards") == 0 and scrape.value("collector_s3_uploads_total") == 3
    assert scrape.value("collector_s3_uploaded_bytes_total") == sum(map(len, stored.values()))
    health = assess(scrape)
    assert f"S3 s3://{BUCKET}/{t.key_prefix}: 3 shard(s) uploaded" in health.render()
    assert "backlog 0 shard(s)" in health.render() and not [p for p in health.problems if "S3" in p]
    docs = (REPO / "docs" / "collector.md").read_text()
    names = {f.name for f in metrics_of(uploader).registry.collect() if f.name.startswith("collector_s3")}
    assert len(names) == 11
    assert not sorted(n for n in names if f"`{n}" not in docs), "S3 metrics missing from docs/collector.md"
    uploader.stop(1)

    # a restart trusts the journal: nothing is asked or uploaded again; the shards sealed on exit are
    shards.writer.close()
    again = ShardUploader(raw, t, **FAST)
    again.start()
    assert again.wait_idle(30)
    again.stop(1)
    snap = again.snapshot()
    assert (snap.uploaded, snap.already_present) == (2, 0)
    assert objects(s3, t.key_prefix) == expected_objects(raw, t) and len(expected_objects(raw, t)) == 5
    assert len((raw / JOURNAL_NAME).read_text().splitlines()) == 5


def test_s3_outage_loses_nothing_and_uploads_resume_when_it_answers(
        s3: S3Server, aws_env: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="collector.s3")
    proxy = FlakyProxy(s3.endpoint_url, mode="refuse")
    raw = tmp_path / "raw"
    t = target(tmp_path, proxy.url)
    uploader = ShardUploader(raw, t, **FAST)
    shards = HandShards(raw)
    shards.writer.on_seal = uploader.notify
    try:
        uploader.start()
        shards.write("candle1m", 0)
        shards.write("open-interest", 0)
        shards.seal_until(1)
        wait_for(lambda: uploader.snapshot().errors >= 3, 30, "failed attempts while S3 refuses connections")
        snap = uploader.snapshot()
        assert snap.backlog_shards == 2 and snap.uploaded == 0 and snap.failing_since is not None
        assert "unreachable" in snap.last_error
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, errors                    # one loud line per outage, not one per attempt
        assert "failed" in errors[0] and "Nothing is lost" in errors[0] and "backlog 2 shard(s)" in errors[0]

        proxy.set_mode("503")                              # S3 up but failing: 5xx
        shards.write("candle1m", 1)
        shards.seal_until(2)
        n = uploader.snapshot().errors
        wait_for(lambda: uploader.snapshot().errors >= n + 2, 30, "failed attempts while S3 answers 503")
        assert "server error (HTTP 503)" in uploader.snapshot().last_error
        scrape = scrape_of(uploader)
        assert scrape.value("collector_s3_backlog_shards") == 3 and scrape.value("collector_s3_failing_seconds") > 0
        assert scrape.value("collector_s3_upload_errors_total") >= n + 2
        health = assess(scrape)                            # a short outage is a warning ...
        assert health.healthy and any("have been failing" in w and "3 sealed shard(s)" in w for w in health.warnings)
        health = assess(scrape, max_s3_failing_s=0)        # ... a long one a problem
        assert not health.healthy and "uploads to s3://" in health.headline and "nothing is lost" in health.headline
        assert not objects(s3, t.key_prefix)

        proxy.set_mode("up")
        assert uploader.wait_idle(30), uploader.snapshot()
        assert objects(s3, t.key_prefix) == expected_objects(raw, t) and len(expected_objects(raw, t)) == 3
        snap = uploader.snapshot()
        assert snap.failing_since is None and snap.uploaded == 3 and snap.last_error == ""
        assert any("S3 uploads recovered" in r.getMessage() for r in caplog.records)
        assert assess(scrape_of(uploader)).healthy
    finally:
        uploader.stop(1)
        proxy.close()


def test_shards_sealed_while_s3_was_down_are_uploaded_after_a_restart(
        s3: S3Server, aws_env: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="collector.s3")
    raw = tmp_path / "raw"
    shards = HandShards(raw)
    for channel in ("candle1m", "funding-rate", "open-interest", "trades"):
        shards.write(channel, 0)
    shards.seal_until(1)
    dead = target(tmp_path, f"http://127.0.0.1:{free_port()}")        # nothing listens there
    first = ShardUploader(raw, dead, **FAST)
    shards.writer.on_seal = first.notify
    first.start()
    shards.write("candle1m", 1)
    shards.seal_until(2)
    wait_for(lambda: first.snapshot().errors >= 1, 30, "a failed attempt")
    assert first.snapshot().last_error.startswith(f"S3 ({dead.endpoint_url}) is unreachable: check the network")
    assert first.stop(drain_timeout_s=0.5) == 5                       # SIGTERM while S3 is down
    assert any("not uploaded to" in r.getMessage() and "the next start uploads them" in r.getMessage()
               for r in caplog.records)
    assert not (raw / JOURNAL_NAME).exists()

    t = target(tmp_path, s3.endpoint_url)
    client = s3.client()
    paths = {p.relative_to(raw).as_posix(): p for p in S.all_sealed_shards(raw)}
    present = next(rel for rel in paths if "/funding-rate/" in rel)   # uploaded by a process killed before its
    client.put_object(Bucket=BUCKET, Key=f"{t.key_prefix}/{present}", Body=paths[present].read_bytes())  # journal line
    clash = next(rel for rel in paths if "/trades/" in rel)           # somebody else's bytes under our key
    client.put_object(Bucket=BUCKET, Key=f"{t.key_prefix}/{clash}", Body=b"not our shard\n")
    (raw / JOURNAL_NAME).write_bytes(b'{"url":"s3://elsewhere/x","path":"x"}\n{"url":"s3://torn-by-a-ki')

    second = ShardUploader(raw, t, **FAST)
    second.start()
    assert second.wait_idle(30), second.snapshot()
    second.stop(1)
    snap = second.snapshot()
    assert (snap.uploaded, snap.already_present, snap.conflicts) == (3, 1, 1)
    stored = objects(s3, t.key_prefix)
    expected = expected_objects(raw, t)
    assert stored[f"{t.key_prefix}/{clash}"] == b"not our shard\n"   # never overwritten
    del stored[f"{t.key_prefix}/{clash}"], expected[f"{t.key_prefix}/{clash}"]
    assert stored == expected and len(stored) == 4
    assert any("already holds different bytes" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert assess(scrape_of(second)).problems[-1].startswith("1 shard(s) not uploaded")

    # the journal survived its torn line; a third start asks S3 only about the conflicting shard
    third = ShardUploader(raw, t, **FAST)
    third.start()
    assert third.wait_idle(30)
    third.stop(1)
    assert (third.snapshot().uploaded, third.snapshot().already_present, third.snapshot().conflicts) == (0, 0, 1)


def test_large_shard_goes_up_in_parts(s3: S3Server, aws_env: dict, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shards = HandShards(raw)
    shards.write("trades", 0, n=600, pad=10_500)                      # ~6.3 MB: two 5 MiB parts
    shards.seal_until(1)
    t = target(tmp_path, s3.endpoint_url)
    uploader = ShardUploader(raw, t, multipart_threshold=5 << 20, multipart_chunksize=5 << 20, **FAST)
    uploader.start()
    assert uploader.wait_idle(60), uploader.snapshot()
    uploader.stop(1)
    stored = objects(s3, t.key_prefix)
    assert stored == expected_objects(raw, t) and len(next(iter(stored.values()))) > 6_000_000
    key = next(iter(stored))
    assert s3.client().head_object(Bucket=BUCKET, Key=key)["ETag"].endswith('-2"')  # a multipart object
    (raw / JOURNAL_NAME).unlink()                                    # journal lost: the HEAD check still knows
    again = ShardUploader(raw, t, **FAST)
    again.start()
    assert again.wait_idle(30)
    again.stop(1)
    assert (again.snapshot().uploaded, again.snapshot().already_present) == (0, 1)


# --------------------------------------------------------------------------- configuration


def shipped_config(tmp_path: Path, s3_section: Any) -> dict[str, Any]:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["paths"] = {"raw": str(tmp_path / "raw"), "work": str(tmp_path / "work"), "qlib": str(tmp_path / "qlib")}
    config["collector"]["s3"] = s3_section
    return config


@pytest.mark.parametrize("section, message", [
    ({"prefix": "feeder-test/data/raw"}, r"'feeder-test/data/raw' is not an S3 URL; write s3://<bucket>/<prefix>"),
    ({"prefix": "https://s3.amazonaws.com/feeder-test"}, r"is not an S3 URL"),
    ({"prefix": "s3://Feeder_Test/raw"}, r"'Feeder_Test' is not a valid S3 bucket name: 3 to 63 characters"),
    ({"prefix": "s3://ab"}, r"'ab' is not a valid S3 bucket name"),
    ({"prefix": "s3://10.0.0.1/raw"}, r"not a valid S3 bucket name"),
    ({"prefix": "s3://feeder-test//data/raw"}, r"empty, '\.', '\.\.' or blank path segment"),
    ({"prefix": "s3://feeder-test/run/../raw"}, r"blank path segment"),
    ({"endpoint_url": "http://127.0.0.1:9000"}, r"collector\.s3\.prefix is missing"),
    ({"prefix": "s3://feeder-test/raw", "endpoint_url": "127.0.0.1:9000"}, r"endpoint_url: '127.0.0.1:9000' is not an"),
    ({"prefix": "s3://feeder-test/raw", "aws_secret_access_key": "hunter2"},
     r"collector\.s3\.aws_secret_access_key: credentials are never read from config\.yaml.*AWS_ACCESS_KEY_ID"),
    ("s3://feeder-test/raw", r"collector\.s3 must be a mapping like \{prefix: s3://"),
    ({"prefix": "s3://feeder-test/raw", "region": "eu-west-1"}, r"collector\.s3: Additional properties"),
])
def test_bad_s3_config_is_refused_with_a_clear_message(tmp_path: Path, section: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(shipped_config(tmp_path, section))


def test_good_s3_config_is_read_into_settings(tmp_path: Path) -> None:
    for prefix, key_prefix in [("s3://feeder-test", ""), ("s3://feeder-test/", ""),
                               ("s3://feeder.test-1/run/data/raw/", "run/data/raw")]:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(shipped_config(tmp_path, {"prefix": prefix,
                                                                 "endpoint_url": "http://127.0.0.1:9000/"})))
        s3 = load_settings(path).s3
        assert s3 is not None and (s3.key_prefix, s3.endpoint_url) == (key_prefix, "http://127.0.0.1:9000")
        assert s3.url == f"s3://{s3.bucket}" + (f"/{key_prefix}" if key_prefix else "")
    path.write_text(yaml.safe_dump(shipped_config(tmp_path, None)))
    assert load_settings(path).s3 is None
    assert check_config(yaml.safe_load((REPO / "config.yaml").read_text()))["collector"]["s3"] is None  # default


def test_collector_refuses_a_bad_s3_prefix_with_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(shipped_config(tmp_path, {"prefix": "s3://Bad_Bucket/raw"})))
    res = subprocess.run([PYTHON, "-m", "collector", "--config", str(path)], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "collector.s3.prefix: 'Bad_Bucket' is not a valid S3 bucket name" in res.stderr


# --------------------------------------------------------------------------- the real collector


@pytest.mark.e2e
def test_collector_process_uploads_sealed_shards_and_catches_up_after_restart(
        s3: S3Server, tmp_path: Path) -> None:
    prefix = f"{tmp_path.name}/data/raw"
    env = {**os.environ, **S3_ENV, "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        env.pop(key, None)
    raw = tmp_path / "raw"
    # 600x: an hour passes in 6 s, so a shard is sealed soon after the collector streams, however long
    # its start-up takes on a busy machine
    with simulator(clock_start="2024-03-04T22:45:00Z", speed=600, cert_dir=tmp_path / "certs",
                   log_path=tmp_path / "simulator.log") as sim:
        cfg_path = tmp_path / "config.yaml"
        cfg = write_config(cfg_path, endpoints=sim, data_dir=tmp_path, start="2024-03-04", end="2024-03-04", size=2,
                           channels=["candle1m", "open-interest"])
        port = free_port()
        cfg["collector"].update(metrics_port=port, s3={"prefix": f"s3://{BUCKET}/{prefix}",
                                                       "endpoint_url": f"http://127.0.0.1:{free_port()}"})  # S3 down
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

        log1 = tmp_path / "collector-1.log"
        with open(log1, "wb") as log:
            proc = subprocess.Popen([PYTHON, "-m", "collector", "--config", str(cfg_path)], cwd=REPO, stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
            try:
                def sealed_and_failing() -> bool:
                    assert proc.poll() is None, log1.read_text()[-3000:]
                    try:
                        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                    except requests.RequestException:
                        return False
                    s = Scrape.parse(text)
                    return (s.value("collector_shards_sealed_total") >= 1
                            and s.value("collector_s3_backlog_shards") >= 1
                            and s.value("collector_s3_upload_errors_total") >= 1)
                wait_for(sealed_and_failing, 45, "a sealed shard that cannot be uploaded")
                res = subprocess.run([PYTHON, "-m", "collector", "status", "--config", str(cfg_path)], cwd=REPO,
                                     capture_output=True, text=True, timeout=60)
                print(res.stdout)
                assert res.returncode == EXIT_HEALTHY, res.stdout           # S3 down briefly: a warning
                assert f"warning: uploads to s3://{BUCKET}/{prefix} have been failing" in res.stdout
                assert "is unreachable" in res.stdout and "wait on the local disk" in res.stdout
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        text = log1.read_text()
        assert proc.returncode == 0, text[-3000:]
        assert "S3 upload of" in text and "Nothing is lost" in text
        assert "the next start uploads them" in text
        first_run = S.all_sealed_shards(raw)
        assert len(first_run) >= 3 and not list(raw.rglob("*.jsonl.open"))
        assert not objects(s3, prefix)

        cfg["collector"]["s3"]["endpoint_url"] = None          # S3 back, found through AWS_ENDPOINT_URL
        cfg["collector"]["metrics_port"] = 0
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        res = subprocess.run([PYTHON, "-m", "collector", "--config", str(cfg_path), "--duration-s", "3"], cwd=REPO,
                             capture_output=True, text=True, timeout=90, env={**env, **s3.env()})
        assert res.returncode == 0, res.stderr[-3000:]
        assert f"; {len(first_run)} sealed shard(s)" in res.stderr            # found by the start-up scan
        assert "S3: every sealed shard is in" in res.stderr                   # and the second run's, on exit
    local = expected_objects(raw, S3Settings(BUCKET, prefix, None))
    assert len(local) > len(first_run)
    assert objects(s3, prefix) == local


def test_a_compressed_shard_is_uploaded_as_it_is(s3: S3Server, aws_env: dict, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shards = HandShards(raw)
    shards.writer = ShardWriter(raw, clock=lambda: shards.now, seal_grace_s=0, compress_channels=["books5"])
    t = target(tmp_path, s3.endpoint_url)
    uploader = ShardUploader(raw, t, **FAST)
    shards.writer.on_seal = uploader.notify
    uploader.start()
    shards.write("books5", 0, n=500)
    shards.write("candle1m", 0)
    shards.seal_until(1)
    shards.writer.wait_compressed()
    assert uploader.wait_idle(30), uploader.snapshot()
    uploader.stop(1)
    stored = objects(s3, t.key_prefix)
    key = f"{t.key_prefix}/ws/books5/2024-03-04/22/{shards.writer.writer_id}.jsonl.zst"
    assert stored == expected_objects(raw, t) and key in stored and len(stored) == 2
    head = s3.client().head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "application/zstd" and head["Metadata"]["md5"] == head["ETag"].strip('"')
    local = raw / "ws" / "books5" / "2024-03-04" / "22" / f"{shards.writer.writer_id}.jsonl.zst"
    assert len(list(S.read_records([local]))) == 500
    shards.writer.close()
