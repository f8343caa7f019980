"""The collector at OKX's edges: a service-upgrade notice, a refused instrument, the default ports.

The real collector (cryptofeed, TLS WebSocket) runs as a process against the simulator, which
runs in this process so its WebSocket event log (``Hub.ws_log``: connections opened and closed,
subscribe requests acked or refused, notices, forced closes) can be read directly. The
simulator's market is the truth the shards are compared with.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

import okxsim
from collector.status import main as status_main
from feeder import shards as S
from harness.processes import PYTHON, REPO, SimulatorEndpoints, write_config

CLOCK_START = "2024-03-04T22:00:00Z"
SPEED = 300          # 5 simulated minutes per real second: a final candle every 0.2 s per instrument
MINUTE_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_swaps(sim: okxsim.Simulator, n: int) -> list[str]:
    now = sim.sim_now_ms()
    return [i["instId"] for i in sim.market.instruments(now, "SWAP")
            if i["state"] == "live" and i["instId"].endswith("-USDT-SWAP")][:n]


def start_collector(tmp_path: Path, sim: okxsim.Simulator, symbols: list[str], channels: list[str],
                    metrics_port: int = 0) -> subprocess.Popen[bytes]:
    endpoints = SimulatorEndpoints(sim.rest, sim.ws_public, sim.ws_business, sim.ca_file, 0)
    cfg_path = tmp_path / "config.yaml"
    cfg = write_config(cfg_path, endpoints=endpoints, data_dir=tmp_path, start="2024-03-04", end="2024-03-04",
                       size=len(symbols), channels=channels)
    cfg["collector"].update(metrics_port=metrics_port, flush_interval_s=0.5)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log = open(tmp_path / "collector.log", "wb")
    proc = subprocess.Popen([PYTHON, "-m", "collector", "--config", str(cfg_path), "--symbols", ",".join(symbols)],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def stop_collector(proc: subprocess.Popen[bytes], tmp_path: Path) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = (tmp_path / "collector.log").read_text()
    assert proc.returncode == 0, text[-4000:]
    return text


def wait_for(predicate: Any, timeout_s: float, what: str, proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            log = (tmp_path / "collector.log").read_text()[-4000:]
            pytest.fail(f"{what} did not happen within {timeout_s:g}s (collector exit code {proc.poll()}):\n{log}")
        time.sleep(0.05)


def subscribed(sim: okxsim.Simulator, kind: str) -> set[tuple[str, str]]:
    return {tuple(a) for e in sim.ws_events("subscribe", kind) for a in e["args"]}  # type: ignore[misc]


def ws_records(raw: Path, channel: str) -> list[dict[str, Any]]:
    return list(S.read_records(S.sealed_shards(raw, "ws", channel)))


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # noqa: S310
        return resp.read().decode()


# --------------------------------------------------------------------------- 64008: make before break


def test_upgrade_notice_replacement_subscribes_before_the_close_and_no_candle_is_lost(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """OKX sends 64008 ahead of closing a connection for an upgrade. The collector must open and
    subscribe a replacement before the old connection goes, so nothing pushed meanwhile is lost.
    Here the simulator cuts the old connections 2 s after the notice (OKX: 60 s); at 300x a wait
    for the close and cryptofeed's reconnect (~1.5 s) would lose about 7 closed candles each."""
    with okxsim.Simulator(seed=7, clock_start=CLOCK_START, speed=SPEED) as sim:
        symbols = live_swaps(sim, 3)
        channels = ["candle1m", "open-interest"]
        port = free_port()
        proc = start_collector(tmp_path, sim, symbols, channels, metrics_port=port)
        try:
            wants = {"business": {("candle1m", s) for s in symbols}, "public": {("open-interest", s) for s in symbols}}
            wait_for(lambda: all(subscribed(sim, k) >= v for k, v in wants.items()), 30, "subscribing", proc,
                     tmp_path)
            time.sleep(1.0)
            notice_sim_ms = sim.sim_now_ms()
            noticed = sim.upgrade_notice("*", close_after_s=2.0, abort=True)
            assert len(noticed) == 2
            time.sleep(4.0)
            end_sim_ms = sim.sim_now_ms()
            metrics = scrape(port)
            code = status_main(["--url", f"http://127.0.0.1:{port}/metrics"])
            status = capsys.readouterr().out
        finally:
            log = stop_collector(proc, tmp_path)
        events = sim.ws_events()

    # a replacement of each noticed connection subscribed everything before that connection closed
    notices = [e for e in events if e["event"] == "notice"]
    assert {e["conn_id"] for e in notices} == set(noticed)
    for notice in notices:
        old, kind = notice["conn_id"], notice["kind"]
        closed = next(e for e in events if e["event"] == "close" and e["conn_id"] == old)
        early = set()
        for e in events:
            if (e["event"] == "subscribe" and e["kind"] == kind and e["conn_id"] != old
                    and notice["mono"] < e["mono"] < closed["mono"]):
                early |= {tuple(a) for a in e["args"]}
        assert early >= wants[kind], f"{kind}: replacement subscribed only {sorted(early)} before the close"
    # the collector left before the simulator had to cut the old connections
    assert not [e for e in events if e["event"] == "upgrade_close"], "the old connection was cut, not left"
    assert "64008" in log and "replacement" in log

    # every closed candle pushed around the notice is in the shards, equal to the exchange's row
    raw = tmp_path / "raw"
    candles = ws_records(raw, "candle1m")
    lo = notice_sim_ms - notice_sim_ms % MINUTE_MS - 2 * MINUTE_MS
    hi = end_sim_ms - end_sim_ms % MINUTE_MS - 2 * MINUTE_MS   # bars closed well before the stop
    assert hi - lo >= 15 * MINUTE_MS
    by_key: dict[tuple[str, int], list[list[str]]] = defaultdict(list)
    for r in candles:
        by_key[(r["inst"], r["ts"])].append(r["data"])
    for inst in symbols:
        truth = {int(row[0]): row for row in sim.market.candles(inst, "1m", end_sim_ms, after=hi + 1, before=lo - 1,
                                                                limit=100)}
        missing = [ts for ts in range(lo, hi + 1, MINUTE_MS) if (inst, ts) not in by_key]
        assert not missing, f"{inst}: {len(missing)} closed candle(s) lost around the notice: {missing[:8]}"
        for ts in range(lo, hi + 1, MINUTE_MS):
            # the overlap may record a bar twice (cleaning dedups on (inst, ts)); each copy is verbatim
            assert all(d == truth[ts] for d in by_key[(inst, ts)]), (inst, ts, by_key[(inst, ts)], truth[ts])
    assert ws_records(raw, "open-interest")

    assert re.search(r'collector_ws_upgrade_notices_total\{endpoint="business"\} 1\.0', metrics), metrics
    assert re.search(r'collector_ws_handovers_total\{endpoint="public",result="replaced"\} 1\.0', metrics)
    assert code == 0 and "2 service-upgrade notice(s) (64008): 2 connection(s) replaced" in status, status


# --------------------------------------------------------------------------- a refused instId in a batch


def test_refused_instrument_is_dropped_and_the_rest_of_its_request_resubscribed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """OKX refuses a whole subscribe request when one of its instIds is unknown (delisted). The
    other instruments of that request must get data at once, the refused one be reported, and
    reconnects must not ask for it again."""
    with okxsim.Simulator(seed=7, clock_start=CLOCK_START, speed=SPEED) as sim:
        symbols = live_swaps(sim, 4)
        gone = symbols[1]
        others = [s for s in symbols if s != gone]
        sim.refuse_ws([gone])   # listed by REST at start-up, unknown to the WebSocket: delisted meanwhile
        port = free_port()
        proc = start_collector(tmp_path, sim, symbols, ["candle1m", "open-interest"], metrics_port=port)
        try:
            wait_for(lambda: {e["kind"] for e in sim.ws_events("refused")} == {"business", "public"}, 30,
                     "the refusals", proc, tmp_path)
            refused = {e["kind"]: e for e in sim.ws_events("refused")}
            assert all(e["inst"] == gone and len(e["args"]) == len(symbols) for e in refused.values())
            wants = {"business": {("candle1m", s) for s in others}, "public": {("open-interest", s) for s in others}}
            wait_for(lambda: all(subscribed(sim, k) >= v for k, v in wants.items()), 10,
                     "resubscribing the others", proc, tmp_path)
            for kind, want in wants.items():
                acks = [e for e in sim.ws_events("subscribe", kind) if e["mono"] > refused[kind]["mono"]]
                got_at = min(e["mono"] for e in acks if set(map(tuple, e["args"])) & want)
                assert got_at - refused[kind]["mono"] < 2.0, f"{kind}: resubscribed after {got_at - refused[kind]['mono']:.1f}s"
                assert not any(gone in a for e in acks for a in e["args"])
            time.sleep(1.5)

            metrics = scrape(port)
            code = status_main(["--url", f"http://127.0.0.1:{port}/metrics"])
            status = capsys.readouterr().out

            # a reconnect asks only for the instruments the exchange accepts
            dropped_mono = time.monotonic()
            assert sim.drop_ws() == 2
            wait_for(lambda: all({tuple(a) for e in sim.ws_events("subscribe", k) if e["mono"] > dropped_mono
                                  for a in e["args"]} >= v for k, v in wants.items()), 15, "resubscribing after a drop",
                     proc, tmp_path)
            time.sleep(1.0)
        finally:
            log = stop_collector(proc, tmp_path)
        after_drop = [e for e in sim.ws_events() if e["mono"] > dropped_mono and e["event"] in ("refused", "subscribe")]

    assert after_drop and not [e for e in after_drop if e["event"] == "refused"], after_drop
    assert not any(gone in a for e in after_drop for a in e["args"])

    for channel in ("candle1m", "open-interest"):
        recs = ws_records(tmp_path / "raw", channel)
        assert {r["inst"] for r in recs} == set(others), (channel, sorted({r["inst"] for r in recs}))
    for chan in ("candle1m", "open-interest"):
        assert f'collector_subscription_refused{{channel="{chan}",code="60018",inst="{gone}"}} 1.0' in metrics, metrics
    assert 'collector_refused_resubscribes_total{endpoint="business"} 1.0' in metrics
    assert code == 0, status
    assert f"{gone} (candle1m)" in status and f"{gone} (open-interest)" in status and "code 60018" in status
    assert re.search(rf"WARNING .*{re.escape(gone)}", log), log[-3000:]


# --------------------------------------------------------------------------- default endpoints


def test_default_websocket_urls_use_port_443() -> None:
    """OKX serves /ws/v5/* on 443; third-party code reports 8443 being retired."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for key in ("ws_public_url", "ws_business_url"):
        url = urlparse(cfg["exchange"][key])
        assert url.scheme == "wss" and url.hostname == "ws.okx.com" and url.port in (None, 443), (key, url)
        assert url.path == "/ws/v5/" + key.split("_")[1]
    docs = [REPO / "README.md", REPO / "config.yaml", REPO / "feeder" / "schemas" / "config.schema.yaml",
            *sorted((REPO / "docs").glob("*.md")), REPO / "collector" / "README.md"]
    stale = [str(p.relative_to(REPO)) for p in docs if p.exists() and ":8443" in p.read_text()]
    assert not stale, f"8443 still named in {stale}"
