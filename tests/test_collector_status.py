"""Metrics and ``python -m collector status``: what the operator sees.

Units: the metric families built from a collector's live objects, and the plain-language verdict
on hand-made states (silent channel, full disk, refused instrument). For real: a collector
against the simulator, asked by ``python -m collector status --config``: healthy, then silent
(the simulator stops pushing), then unreachable (stopped).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml
from prometheus_client import generate_latest

from collector.capture import RawCapture
from collector.clock import LocalClock
from collector.metrics import Metrics
from collector.recovery import RecoveredShard, RecoveryReport
from collector.status import EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_UNREACHABLE, Scrape, assess
from collector.writer import ShardWriter
from feeder import shards as S
from harness.processes import PYTHON, REPO, simulator, write_config

T0 = 1_709_589_600_000


def fake_app(tmp_path: Path, **overrides):
    writer = ShardWriter(tmp_path / "raw", clock=lambda: T0 / 1000)
    capture = RawCapture(writer, clock=LocalClock(), channels=["candle1m", "open-interest"])
    feed = SimpleNamespace(connects={"business": 2, "public": 1}, reconnects={"business": 1},
                           connection_states=lambda: {"business": True, "public": True})
    app = SimpleNamespace(clock=LocalClock(), phase="running", writer=writer, disk_problem=None,
                          recovery=RecoveryReport(), capture=capture, feed=feed, retired_connects={},
                          retired_reconnects={}, selection=SimpleNamespace(instruments=("BTC-USDT-SWAP",
                                                                                        "ETH-USDT-SWAP")),
                          universe_switches=0)
    for key, value in overrides.items():
        setattr(app, key, value)
    metrics = Metrics(enabled=False)
    metrics.bind(app)  # type: ignore[arg-type]
    return app, metrics


def scrape(metrics: Metrics) -> Scrape:
    return Scrape.parse(generate_latest(metrics.registry).decode())


def candle(inst: str, confirm: str = "1", ts: int = T0) -> str:
    return ('{"arg":{"channel":"candle1m","instId":"%s"},"data":[["%d","1","2","0.5","1.5","10","0.1","0.15","%s"]]}'
            % (inst, ts, confirm))


def test_metrics_count_messages_ages_reconnects_and_recovery(tmp_path: Path) -> None:
    app, metrics = fake_app(tmp_path)
    cap = app.capture
    cap.expect([("candle1m", "BTC-USDT-SWAP"), ("candle1m", "ETH-USDT-SWAP")])
    now = time.time()
    cap(candle("BTC-USDT-SWAP", "0"), "c1", "wss://x/ws/v5/business", now)
    cap(candle("BTC-USDT-SWAP", "1"), "c1", "wss://x/ws/v5/business", now)
    cap('{"arg":{"channel":"candle1m","instId":', "c1", "wss://x/ws/v5/business", now)   # malformed
    cap('{"arg":{"channel":"candle1m","instId":"BTC-USDT-SWAP"},"data":[["1"]],"extra":{"new":1}}', "c1", "a", now)
    app.writer.tick()
    app.recovery.sealed.append(RecoveredShard(tmp_path / "x.jsonl", 10, 1, 7))
    s = scrape(metrics)
    assert s.value("collector_messages_total", channel="candle1m") == 2
    assert s.value("collector_records_written_total", channel="candle1m") == 1
    assert s.value("collector_records_skipped_total", reason="candle_not_confirmed") == 1
    assert s.value("collector_frames_rejected_total", reason="not_json") == 1
    assert s.value("collector_frames_rejected_total", reason="bad_element") == 1
    assert s.value("collector_reconnects_total", endpoint="business") == 1
    assert s.value("collector_ws_connects_total", endpoint="business") == 2
    assert s.value("collector_recovery_partial_lines_cut_total") == 1
    assert s.value("collector_recovery_shards_sealed_total") == 1
    assert 0 <= s.value("collector_last_message_age_seconds", channel="candle1m", inst="BTC-USDT-SWAP") < 5
    assert s.value("collector_last_message_age_seconds", channel="candle1m", inst="ETH-USDT-SWAP") < 5  # since subscribe
    assert s.value("collector_subscribed_instruments") == 2
    app.writer.close()
    s = scrape(metrics)
    assert s.value("collector_shards_sealed_total") == 1 and s.value("collector_sealed_bytes_total") > 100
    assert s.value("collector_shard_io_seconds_count", op="seal") == 0  # no on_io hook in this writer
    health = assess(s)
    assert health.healthy, health.render()
    assert "1 reconnect(s)" in health.render() and "not_json 1" in health.render()
    assert "cut 1 partial line(s)" in health.render()


def test_write_latency_histogram_is_fed_by_the_writer(tmp_path: Path) -> None:
    metrics = Metrics(enabled=False)
    clock = [T0 / 1000]
    w = ShardWriter(tmp_path, clock=lambda: clock[0], on_io=metrics.observe_io, seal_grace_s=0)
    w.write_line("trades", T0, b'{"v":1}\n')
    w.flush()
    clock[0] += 3600
    assert w.tick()
    text = generate_latest(metrics.registry).decode()
    assert 'collector_shard_io_seconds_count{op="flush"} 1.0' in text
    assert 'collector_shard_io_seconds_count{op="seal"} 1.0' in text


def test_silent_channel_is_named_in_plain_words(tmp_path: Path) -> None:
    app, metrics = fake_app(tmp_path)
    insts = ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"]
    app.capture.expect([(c, i) for c in ("candle1m", "open-interest") for i in insts])
    app.capture.expected = {k: time.time() - 600 for k in app.capture.expected}   # subscribed 10 min ago
    now = time.time()
    for inst in insts:
        app.capture(candle(inst, "0"), "c", "a", now)    # candles flow ...
    app.capture('{"arg":{"channel":"open-interest","instId":"BTC-USDT-SWAP"},"data":[{"instId":"BTC-USDT-SWAP",'
                '"oi":"1","oiCcy":"1","ts":"%d"}]}' % T0, "c", "a", now)
    health = assess(scrape(metrics))      # ... open-interest only for BTC
    assert not health.healthy
    text = health.render()
    assert "channel open-interest: 2 of 3 instrument(s) silent for longer than 3 min" in text
    assert "ETH-USDT-SWAP" in text and "SOL-USDT-SWAP" in text
    assert len(health.problems) == 1   # candles are flowing
    app.capture.last_seen = {}
    health = assess(scrape(metrics))
    assert "channel candle1m is silent on all 3 instrument(s): nothing for 10 min" in health.render()
    assert assess(scrape(metrics), max_silence={"candle1m": 3600, "open-interest": 3600}).healthy


def test_disk_problem_disconnect_and_refused_instrument(tmp_path: Path) -> None:
    app, metrics = fake_app(tmp_path, phase="waiting_for_disk",
                            disk_problem="writing raw shard /data/x failed: [Errno 28] No space left on device")
    health = assess(scrape(metrics))
    assert not health.healthy
    assert "raw shards cannot be written: writing raw shard /data/x failed: [Errno 28] No space left" in health.render()
    assert "waiting for the raw directory to become writable" in health.render()

    app, metrics = fake_app(tmp_path)
    app.feed.connection_states = lambda: {"business": False, "public": True}
    health = assess(scrape(metrics))
    assert "not connected to the exchange's /business WebSocket" in health.render()

    # an instrument the exchange suddenly does not know: logged, counted, shown; never written
    app, metrics = fake_app(tmp_path)
    app.capture.expect([("candle1m", "BTC-USDT-SWAP"), ("candle1m", "GONE-USDT-SWAP")])
    app.capture('{"event":"error","msg":"Wrong URL or channel:candle1m,instId:GONE-USDT-SWAP doesn\'t exist. Please '
                'use the correct URL, channel and parameters referring to API document.","code":"60018",'
                '"connId":"a4d3ae55"}', "c", "a", time.time())
    app.capture(candle("BTC-USDT-SWAP"), "c", "a", time.time())
    s = scrape(metrics)
    assert s.value("collector_subscription_refused", channel="candle1m", inst="GONE-USDT-SWAP", code="60018") == 1
    assert s.value("collector_exchange_errors_total", code="60018") == 1
    app.capture.expected = {k: time.time() - 600 for k in app.capture.expected}
    health = assess(scrape(metrics))
    assert health.healthy, health.render()   # BTC is fine; GONE is reported, not counted as silent
    assert "refused 1 subscription(s) with code 60018" in health.render() and "GONE-USDT-SWAP" in health.render()
    app.writer.close()
    assert [r["inst"] for r in S.read_records(S.sealed_shards(tmp_path / "raw", "ws", "candle1m"))] == ["BTC-USDT-SWAP"]


def test_status_answers_for_an_endpoint_that_is_not_a_collector() -> None:
    health = assess(Scrape.parse("# TYPE x gauge\nx 1\n"))
    assert not health.healthy and "not with the collector's metrics" in health.headline


# --------------------------------------------------------------------------- for real


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_status(cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "collector", "status", "--config", str(cfg), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
def test_status_command_healthy_silent_unreachable(tmp_path: Path) -> None:
    with simulator(clock_start="2024-03-04T22:00:00Z", speed=60, cert_dir=tmp_path / "certs",
                   log_path=tmp_path / "simulator.log") as sim:
        cfg_path = tmp_path / "config.yaml"
        cfg = write_config(cfg_path, endpoints=sim, data_dir=tmp_path, start="2024-03-04", end="2024-03-04", size=2,
                           channels=["candle1m", "open-interest"])
        cfg["collector"]["metrics_port"] = free_port()
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        log = open(tmp_path / "collector.log", "wb")
        proc = subprocess.Popen([PYTHON, "-m", "collector", "--config", str(cfg_path)], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 40
            while True:
                res = run_status(cfg_path)
                if res.returncode == EXIT_HEALTHY and "newest data" in res.stdout:
                    break
                assert proc.poll() is None and time.monotonic() < deadline, (res.stdout, res.stderr)
                time.sleep(0.5)
            print("\n" + res.stdout)
            assert res.stdout.startswith("HEALTHY: collector is recording")
            assert "recording candle1m, open-interest for 2 instrument(s)" in res.stdout

            requests.post(f"{sim.rest}/sim/faults", json={"kind": "ws_silence", "seconds": 15}, verify=sim.ca_file,
                          timeout=10).raise_for_status()
            # silent for more than 2 s: asked until status says so (a loaded machine may deliver
            # frames sent just before the silence late), well within the 15 s of silence
            deadline = time.monotonic() + 12
            while True:
                time.sleep(1.0)
                res = run_status(cfg_path, "--max-silence", "candle1m=2", "--max-silence", "open-interest=2")
                if res.returncode == EXIT_UNHEALTHY or time.monotonic() > deadline:
                    break
            print(res.stdout)
            assert res.returncode == EXIT_UNHEALTHY, res.stdout
            assert "UNHEALTHY: channel candle1m is silent on all 2 instrument(s)" in res.stdout
            assert "channel open-interest is silent on all 2 instrument(s)" in res.stdout
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            log.close()
        assert proc.returncode == 0
    res = run_status(cfg_path)
    print(res.stdout)
    assert res.returncode == EXIT_UNREACHABLE and res.stdout.startswith("UNREACHABLE: no collector answers on")
    cfg["collector"]["metrics_port"] = 0
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = run_status(cfg_path)
    assert res.returncode == EXIT_UNREACHABLE and "metrics are disabled" in res.stdout


def test_every_metric_is_documented(tmp_path: Path) -> None:
    app, metrics = fake_app(tmp_path)
    app.capture.expect([("candle1m", "BTC-USDT-SWAP")])
    app.capture(candle("BTC-USDT-SWAP"), "c", "a", time.time())
    docs = (REPO / "docs" / "collector.md").read_text()
    names = {family.name for family in metrics.registry.collect()}
    assert len(names) > 20
    missing = sorted(n for n in names if f"`{n}" not in docs and f"`{n}_total" not in docs)
    assert not missing, f"metrics missing from docs/collector.md: {missing}"
    app.writer.close()
