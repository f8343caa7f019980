"""Start and stop the simulator, the collector and Snakemake as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class SimulatorEndpoints:
    rest: str
    ws_public: str
    ws_business: str
    ca_file: str
    pid: int


@contextmanager
def simulator(
    *,
    seed: int = 7,
    clock_start: str = "2024-03-04T22:30:00Z",
    speed: float = 240.0,
    history_start: str = "2024-02-01",
    cert_dir: Path,
    log_path: Path,
    extra_args: list[str] | None = None,
) -> Iterator[SimulatorEndpoints]:
    """Run ``python -m okxsim`` and yield its endpoints; stop it on exit."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [PYTHON, "-m", "okxsim", "--port", "0", "--seed", str(seed), "--clock-start", clock_start,
           "--speed", str(speed), "--history-start", history_start, "--cert-dir", str(cert_dir),
           # OKX's current docs allow 300 candles per history-candles page (100 in older ones).
           "--history-limit-max", "300", *(extra_args or [])]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the simulator exited before it was ready; see {log_path}")
            info = json.loads(line)
            yield SimulatorEndpoints(info["rest"], info["ws_public"], info["ws_business"], info["ca_file"], proc.pid)
        finally:
            stop(proc, timeout_s=10)


def stop(proc: subprocess.Popen[Any], *, timeout_s: float = 15) -> int:
    """SIGTERM, wait, then SIGKILL if it does not go; return the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def write_config(
    path: Path,
    *,
    endpoints: SimulatorEndpoints,
    data_dir: Path,
    start: str,
    end: str,
    size: int,
    frequencies: list[str] | None = None,
    channels: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a config.yaml pointing at the simulator and at ``data_dir``."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    base.update(start=start, end=end)
    base["exchange"].update(rest_url=endpoints.rest, ws_public_url=endpoints.ws_public,
                            ws_business_url=endpoints.ws_business, ca_file=endpoints.ca_file)
    base["paths"] = {"raw": str(data_dir / "raw"), "work": str(data_dir / "work"), "qlib": str(data_dir / "qlib")}
    base["universe"]["size"] = size
    if frequencies:
        base["frequencies"] = frequencies
    if channels:
        base["collector"]["channels"] = channels
    base["collector"]["metrics_port"] = 0
    for key, value in (extra or {}).items():
        base[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return base


def run_collector(config_path: Path, *, duration_s: float, log_path: Path, extra_args: list[str] | None = None) -> int:
    """Run the collector for ``duration_s`` real seconds, then SIGTERM it; return its exit code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([PYTHON, "-m", "collector", "--config", str(config_path), *(extra_args or [])],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"the collector exited early with code {proc.returncode}; see {log_path}")
        return stop(proc, timeout_s=30)


def snakemake(config_path: Path, *args: str, cores: int = 8, log_path: Path | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real Snakemake CLI on this repository's Snakefile."""
    cmd = [PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO),
           "--configfile", str(config_path), "--cores", str(cores), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(res.stdout + res.stderr)
    if check and res.returncode != 0:
        raise RuntimeError(f"snakemake failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return res
