"""Collector ingest benchmark: sustained messages/s into sealed shards, and peak RSS.

    python -m bench.collector_ingest [--seconds 20] [--rate 40000] [--symbols 10] [--repeat 1]

What runs: the local OKX simulator (``python -m okxsim``, its own process) and the real collector
(``python -m collector``, its own process, cryptofeed over TLS), subscribed to ``candle1m`` of
``--symbols`` swaps. The simulator's burst mode (``POST /sim/faults {"kind": "ws_burst"}``) then
pushes ``--rate`` candle frames per second for ``--seconds`` seconds. Burst frames are forming
candles (confirm "0"), which the collector normally counts and skips, so it runs with
``--candle-updates`` to write every one of them: the full hot path (TLS, WebSocket, JSON parse,
record, JSON encode, shard write) for every message.

Measured:

* **msgs/s into sealed shards**: records in the sealed shards whose receipt time falls in the
  burst, divided by the receipt-time span from the first to the last of them. The collector
  stamps the receipt time when it takes a frame off the socket, so when the offered rate is above
  what it can take, this is its sustained capacity (the simulator queues the rest; if its queue
  overflows it closes the connection and the bench says so);
* **collector CPU**: CPU seconds the collector used per message during the burst, and the
  utilisation of one core (close to 100 % = the collector was the bottleneck; well below = the
  simulator could not push faster, and the rate is a lower bound);
* **peak RSS**: the collector process's ``VmHWM`` (high-water mark of resident memory) from
  /proc, read before it is stopped.

Prints a table; asserts nothing. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import requests
import yaml

from harness.processes import PYTHON, REPO, simulator, stop, write_config

CLOCK_START = "2024-03-04T22:05:00Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}"
                                 if sample.labels else "")
            out[key] = sample.value
    return out


def run_once(*, seconds: float, rate: float, symbols: int, workdir: Path, mode: str) -> dict[str, Any]:
    data = workdir / f"run-{mode}-{int(time.time() * 1000)}"
    with simulator(clock_start=CLOCK_START, speed=1, cert_dir=workdir / "certs",
                   log_path=data / "simulator.log") as sim:
        cfg_path = data / "config.yaml"
        cfg = write_config(cfg_path, endpoints=sim, data_dir=data, start="2024-03-04", end="2024-03-04", size=symbols,
                           channels=["candle1m"])
        port = free_port()
        cfg["collector"]["metrics_port"] = port
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        instruments = requests.get(f"{sim.rest}/api/v5/public/instruments", params={"instType": "SWAP"},
                                   verify=sim.ca_file, timeout=10).json()["data"]
        chosen = [i["instId"] for i in instruments if i["state"] == "live" and i["instId"].endswith("-USDT-SWAP")]
        chosen = chosen[:symbols]
        args = [PYTHON, "-m", "collector", "--config", str(cfg_path), "--symbols", ",".join(chosen)]
        if mode == "updates":
            args.append("--candle-updates")
        log = open(data / "collector.log", "wb")
        proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:  # connected and subscribed
                if proc.poll() is not None:
                    raise SystemExit(f"collector exited with {proc.returncode}; see {data / 'collector.log'}")
                try:
                    m = scrape(port)
                    if m.get("collector_ws_connected{endpoint=business}") == 1.0 and m.get("collector_frames_total", 0) > 0:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the collector did not connect within 60 s")
                time.sleep(0.2)
            time.sleep(1.0)
            before = scrape(port)
            sim_start = requests.get(f"{sim.rest}/sim/state", verify=sim.ca_file, timeout=10).json()["sim_now"]
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            requests.post(f"{sim.rest}/sim/faults", json={"kind": "ws_burst", "rate": rate, "seconds": seconds},
                          verify=sim.ca_file, timeout=10).raise_for_status()
            peak_rss = 0
            last_frames, still_since = -1.0, time.monotonic()
            while True:  # the burst, then until the collector has drained what was queued for it
                time.sleep(0.5)
                peak_rss = max(peak_rss, proc_status(proc.pid).get("VmRSS", 0))
                frames = scrape(port).get("collector_frames_total", 0.0)
                if frames != last_frames:
                    last_frames, still_since = frames, time.monotonic()
                elif time.monotonic() - t0 > seconds and time.monotonic() - still_since > 1.5:
                    break
                if time.monotonic() - t0 > seconds * 6 + 60:
                    break
            cpu1, t1 = cpu_seconds(proc.pid), still_since
            after = scrape(port)
            hwm = proc_status(proc.pid).get("VmHWM", 0)
        finally:
            code = stop(proc, timeout_s=30)
            log.close()
        if code != 0:
            raise SystemExit(f"collector exited with {code}; see {data / 'collector.log'}")
    # count what reached the sealed shards, by receipt time
    recv: list[int] = []
    for path in (data / "raw" / "ws" / "candle1m").glob("*/*/*.jsonl"):
        with open(path, "rb") as fh:
            for line in fh:
                r = json.loads(line)
                if r["recv_ts"] >= sim_start:
                    recv.append(r["recv_ts"])
    assert not list((data / "raw").rglob("*.open")), "unsealed shards left"
    recv.sort()
    span_s = (recv[-1] - recv[0]) / 1000 if len(recv) > 1 else float("nan")
    frames = after.get("collector_frames_total", 0) - before.get("collector_frames_total", 0)
    reconnects = sum(v for k, v in after.items() if k.startswith("collector_reconnects_total"))
    cpu = cpu1 - cpu0
    wall = t1 - t0
    return {"mode": mode, "offered_per_s": rate, "seconds": seconds, "frames": frames, "records_sealed": len(recv),
            "msgs_per_s": len(recv) / span_s if span_s and span_s > 0 else float("nan"),
            "frames_per_s": frames / wall if wall > 0 else float("nan"),
            "cpu_us_per_msg": cpu / frames * 1e6 if frames else float("nan"),
            "cpu_util": cpu / wall if wall > 0 else float("nan"),
            "peak_rss_mb": max(hwm, peak_rss) / 1024, "reconnects": reconnects, "workdir": str(data)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="burst length (default 20)")
    p.add_argument("--rate", type=float, default=40000.0, help="frames/s the simulator offers (default 40000)")
    p.add_argument("--symbols", type=int, default=10, help="swaps subscribed (default 10)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--mode", choices=("updates", "closed", "both"), default="updates",
                   help="updates: write every burst message (default); closed: production setting, forming "
                        "candles are parsed and counted but not written")
    p.add_argument("--workdir", type=Path, default=None, help="keep the run here (default: a temp dir, removed)")
    args = p.parse_args(argv)
    modes = ["updates", "closed"] if args.mode == "both" else [args.mode]
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="collector-ingest-")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for mode in modes:
            for i in range(args.repeat):
                r = run_once(seconds=args.seconds, rate=args.rate, symbols=args.symbols, workdir=workdir, mode=mode)
                results.append(r)
                print(f"  {mode} run {i + 1}/{args.repeat}: {r['msgs_per_s']:,.0f} msgs/s into sealed shards, "
                      f"{r['frames_per_s']:,.0f} frames/s taken, {r['cpu_util']:.0%} of a core, "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print()
    print(f"{'mode':8} {'offered/s':>10} {'burst s':>8} {'frames':>9} {'sealed recs':>11} {'msgs/s sealed':>13} "
          f"{'frames/s':>9} {'CPU us/msg':>10} {'core %':>7} {'peak RSS MB':>11} {'reconn':>6}")
    for mode in modes:
        rs = [r for r in results if r["mode"] == mode]
        med = {k: statistics.median(r[k] for r in rs) for k in ("frames", "records_sealed", "msgs_per_s",
                                                                 "frames_per_s", "cpu_us_per_msg", "cpu_util")}
        print(f"{mode:8} {args.rate:>10,.0f} {args.seconds:>8.0f} {med['frames']:>9,.0f} {med['records_sealed']:>11,.0f} "
              f"{med['msgs_per_s']:>13,.0f} {med['frames_per_s']:>9,.0f} {med['cpu_us_per_msg']:>10.1f} "
              f"{med['cpu_util']:>7.0%} {max(r['peak_rss_mb'] for r in rs):>11.0f} "
              f"{max(r['reconnects'] for r in rs):>6.0f}")
    if any(r["reconnects"] for r in results):
        print("note: the simulator closed a connection during a burst (its send queue overflowed): the offered rate "
              "was not sustained end to end" + (" by the simulator itself (the collector used well under one core)"
                                                 if all(r["cpu_util"] < 0.85 for r in results if r["reconnects"])
                                                 else ""))
    print("msgs/s sealed: records in sealed shards / receipt-time span (mode 'closed' writes none: forming candles "
          "are skipped).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
