"""The collector for real: cryptofeed, WebSocket over TLS, SIGTERM, sealed shards.

Two servers:

* a tiny scripted OKX stand-in (in this file) that records exactly what the collector sends
  and pushes hand-made frames (events, errors, malformed frames, candles open and closed),
  to check the cryptofeed fixes (endpoint per channel, per-connection chunked subscribe,
  keepalive) and the capture rules without depending on market data;
* the project's simulator (``python -m okxsim``), the oracle: every closed candle the
  collector wrote must equal the simulator's REST ``history-candles`` row for that minute.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from feeder import shards as S

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


# --------------------------------------------------------------------------- helpers


def make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (what the simulator does too)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def write_config(tmp: Path, *, rest: str, ws_public: str, ws_business: str, ca_file: str,
                 channels: list[str], chunk: int = 20) -> Path:
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    base["exchange"].update(rest_url=rest, ws_public_url=ws_public, ws_business_url=ws_business, ca_file=ca_file)
    base["paths"] = {"raw": str(tmp / "raw"), "work": str(tmp / "work"), "qlib": str(tmp / "qlib")}
    base["collector"].update(channels=channels, subscribe_chunk=chunk, metrics_port=0, flush_interval_s=0.5)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def start_collector(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "collector", "--config", str(config), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_collector(proc: subprocess.Popen, *, timeout: float = 20) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"collector did not exit within {timeout}s of SIGTERM:\n{err[-4000:]}")
    return proc.returncode, err


def ws_records(raw: Path, channel: str) -> list[dict[str, Any]]:
    return list(S.read_records(S.sealed_shards(raw, "ws", channel)))


# --------------------------------------------------------------------------- scripted stand-in

STANDIN_INSTRUMENTS = [
    {"instId": f"{b}-USDT-SWAP", "instType": "SWAP", "settleCcy": "USDT", "ctType": "linear", "ctVal": "0.01",
     "instCategory": "1", "state": "live", "tickSz": "0.1", "listTime": "1573557408000"}
    for b in ("BTC", "ETH", "SOL", "XRP", "DOGE")
]


class StandIn:
    """A scripted OKX: acks subscriptions, pushes frames per channel, logs what it receives."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.received: list[tuple[str, Any]] = []   # (path, message) in arrival order
        self.notice_sent = False                     # one 64008 notice, on the first funding subscription
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        assert self._ready.wait(10), "stand-in server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        import ssl

        from aiohttp import web

        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application()

        async def rest(request: web.Request) -> web.Response:
            path = request.path
            if path == "/api/v5/public/instruments":
                data = STANDIN_INSTRUMENTS
            elif path == "/api/v5/public/time":
                data = [{"ts": str(int(time.time() * 1000))}]
            elif path == "/api/v5/market/tickers":
                data = [{"instId": i["instId"], "instType": "SWAP", "last": "10", "volCcy24h": str(1000 - n)}
                        for n, i in enumerate(STANDIN_INSTRUMENTS)]
            else:
                return web.json_response({"code": "51000", "msg": f"unknown {path}", "data": []})
            return web.json_response({"code": "0", "msg": "", "data": data})

        async def ws(request: web.Request) -> web.WebSocketResponse:
            sock = web.WebSocketResponse(autoping=True)
            await sock.prepare(request)
            path = request.path
            async for msg in sock:
                if msg.data == "ping":
                    self.received.append((path, "ping"))
                    await sock.send_str("pong")
                    continue
                req = json.loads(msg.data)
                self.received.append((path, req))
                for arg in req.get("args", []):
                    chan, inst = arg["channel"], arg["instId"]
                    if chan.startswith("candle") and path.endswith("/public"):
                        await sock.send_str(json.dumps({"event": "error", "code": "60018",
                                                        "msg": f"Wrong URL or channel:{chan}", "connId": "x"}))
                        continue
                    await sock.send_str(json.dumps({"event": "subscribe", "arg": arg, "connId": "c1"}))
                    for frame in self.frames_for(chan, inst):
                        await sock.send_str(frame)
                    if chan == "funding-rate" and not self.notice_sent:
                        self.notice_sent = True
                        await sock.send_str(json.dumps({"event": "notice", "code": "64008", "msg": "reconnect soon",
                                                        "connId": "c1"}))
            return sock

        app.router.add_get("/ws/v5/public", ws)
        app.router.add_get("/ws/v5/business", ws)
        app.router.add_get("/api/v5/{tail:.*}", rest)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    @staticmethod
    def frames_for(channel: str, inst: str) -> list[str]:
        t = 1_709_589_600_000
        if channel == "candle1m":
            open_ = ["%d" % t, "1", "2", "0.5", "1.5", "10", "0.1", "0.15", "0"]
            closed = open_[:8] + ["1"]
            closed_old = open_[:7]  # 2022 shape, no confirm: not known to be closed
            return [json.dumps({"arg": {"channel": channel, "instId": inst}, "data": [x]})
                    for x in (open_, closed, closed_old)]
        if channel == "funding-rate":
            return [
                json.dumps({"arg": {"channel": channel, "instId": inst},
                            "data": [{"instId": inst, "fundingTime": str(t), "nextFundingRate": "0.0003"}]}),
                json.dumps({"arg": {"channel": channel, "instId": inst},
                            "data": [{"instId": inst, "fundingRate": "0.0001000000000000", "fundingTime": str(t),
                                      "ts": str(t + 5), "seqLike": 12345678901234}]}),
                '{"arg":{"channel":"funding-rate","instId":"' + inst + '"},"data":[{"instId":',  # truncated
            ]
        return []


@pytest.fixture()
def standin(tmp_path: Path):
    ca, cert, key = make_ca_and_cert(tmp_path)
    with StandIn(cert, key) as server:
        server.ca_file = ca  # type: ignore[attr-defined]
        yield server


def test_collector_against_scripted_server(standin: StandIn, tmp_path: Path) -> None:
    base = f"127.0.0.1:{standin.port}"
    config = write_config(tmp_path, rest=f"https://{base}", ws_public=f"wss://{base}/ws/v5/public",
                          ws_business=f"wss://{base}/ws/v5/business", ca_file=str(standin.ca_file),
                          channels=["candle1m", "funding-rate"], chunk=2)
    # a dead collector's leftovers: recovered (partial line cut) at start-up
    leftover = tmp_path / "raw" / "ws" / "trades" / "2024-03-04" / "22" / "1-1.jsonl.open"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b'{"v":1,"channel":"trades"}\n{"v":1,"chan')
    symbols = "BTC-USDT-SWAP,ETH-USDT-SWAP,SOL-USDT-SWAP"
    proc = start_collector(config, "--symbols", symbols)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        subs = [m for _, m in standin.received if isinstance(m, dict)]
        if sum(len(m["args"]) for m in subs) >= 6:
            break
        time.sleep(0.1)
    time.sleep(1.5)
    code, err = stop_collector(proc)
    assert code == 0, err[-4000:]
    assert "feedhandler.log" not in os.listdir(REPO)

    # recovery ran first
    assert leftover.with_name("1-1.jsonl").read_bytes() == b'{"v":1,"channel":"trades"}\n'
    assert "cut 1 partial line" in err

    # subscriptions: candles only on business, funding only on public, <= chunk args each
    subs = [(p, m) for p, m in standin.received if isinstance(m, dict)]
    assert all(m["op"] == "subscribe" and 1 <= len(m["args"]) <= 2 for _, m in subs)
    by_path: dict[str, list[tuple[str, str]]] = {}
    for p, m in subs:
        by_path.setdefault(p, []).extend((a["channel"], a["instId"]) for a in m["args"])
    insts = symbols.split(",")
    assert sorted(by_path["/ws/v5/business"]) == sorted(("candle1m", i) for i in insts)
    # the 64008 notice on /public: a replacement connection subscribed the same funding channels again
    assert sorted(by_path["/ws/v5/public"]) == sorted(2 * [("funding-rate", i) for i in insts])
    assert all(isinstance(m.get("id"), str) for _, m in subs)  # OKX echoes the id in acks and errors

    # shards: sealed, nothing open; only closed candles; funding kept verbatim, ts rules
    assert not list((tmp_path / "raw").rglob("*.open"))
    candles = ws_records(tmp_path / "raw", "candle1m")
    assert sorted(r["inst"] for r in candles) == sorted(insts)
    assert all(r["data"][8] == "1" and len(r["data"]) == 9 for r in candles)
    funding = ws_records(tmp_path / "raw", "funding-rate")
    assert len(funding) == 2 * 2 * len(insts)  # recorded on both connections: verbatim, cleaning dedups
    for r in funding:
        assert r["ts"] == (1_709_589_600_000 + 5 if "ts" in r["data"] else 1_709_589_600_000)
        if "ts" in r["data"]:
            assert r["data"]["fundingRate"] == "0.0001000000000000" and r["data"]["seqLike"] == 12345678901234
    # recv_ts on the local clock (default --clock local)
    assert all(abs(r["recv_ts"] / 1000 - time.time()) < 120 for r in candles + funding)
    # events/errors/malformed frames were counted and logged, not written
    assert "capture:" in err and "'not_json': 6" in err and "'notice_event': 1" in err
    assert "64008 hand-over done" in err
    assert "'candle_not_confirmed': 6" in err


def test_exchange_clock_and_sigterm_exit(standin: StandIn, tmp_path: Path) -> None:
    base = f"127.0.0.1:{standin.port}"
    config = write_config(tmp_path, rest=f"https://{base}", ws_public=f"wss://{base}/ws/v5/public",
                          ws_business=f"wss://{base}/ws/v5/business", ca_file=str(standin.ca_file),
                          channels=["candle1m"])
    proc = start_collector(config, "--symbols", "BTC-USDT-SWAP", "--clock", "exchange", "--duration-s", "4")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-4000:]
    assert "running at 1.00x real time" in err
    [rec] = ws_records(tmp_path / "raw", "candle1m")
    assert abs(rec["recv_ts"] / 1000 - time.time()) < 60


def test_bad_config_and_unknown_symbol_fail_clearly(standin: StandIn, tmp_path: Path) -> None:
    base = f"127.0.0.1:{standin.port}"
    config = write_config(tmp_path, rest=f"https://{base}", ws_public=f"wss://{base}/ws/v5/public",
                          ws_business=f"wss://{base}/ws/v5/business", ca_file=str(standin.ca_file),
                          channels=["candle1m"])
    proc = start_collector(config, "--symbols", "NOPE-USDT-SWAP", "--duration-s", "3")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "NOPE-USDT-SWAP" in err and "not listed" in err
    cfg = yaml.safe_load(config.read_text())
    cfg["collector"]["channels"] = ["books"]
    config.write_text(yaml.safe_dump(cfg))
    proc = start_collector(config)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "collector.channels" in err


# --------------------------------------------------------------------------- the simulator (oracle)

SIM_CLOCK_START = "2024-03-04T22:00:00Z"
SIM_SPEED = 300


@pytest.fixture()
def okxsim_process(tmp_path: Path):
    """``python -m okxsim`` as a real process; yields its ready line (rest, ws_*, ca_file, pid)."""
    if not (REPO / "okxsim" / "__main__.py").exists():
        pytest.skip("okxsim is not there yet")
    err = open(tmp_path / "okxsim.log", "wb")
    proc = subprocess.Popen([PY, "-m", "okxsim", "--port", "0", "--seed", "7", "--clock-start", SIM_CLOCK_START,
                             "--speed", str(SIM_SPEED), "--history-start", "2024-02-01",
                             "--cert-dir", str(tmp_path / "certs")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            pytest.fail(f"okxsim exited before it was ready:\n{(tmp_path / 'okxsim.log').read_text()[-3000:]}")
        yield json.loads(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.close()


def sim_get(info: dict[str, Any], path: str, **params: Any) -> list[Any]:
    import requests

    # verify per request: requests lets REQUESTS_CA_BUNDLE override a Session's verify
    resp = requests.get(info["rest"] + path, params=params, verify=info["ca_file"], timeout=10)
    body = resp.json()
    assert resp.status_code == 200 and body["code"] == "0", body
    return body["data"]


def sim_history_candles(info: dict[str, Any], inst: str, lo: int, hi: int) -> dict[int, list[str]]:
    """REST history-candles rows of ``inst`` with lo <= ts <= hi, by ts (pages newest first)."""
    rows: dict[int, list[str]] = {}
    after = hi + 1
    while after > lo:
        page = sim_get(info, "/api/v5/market/history-candles", instId=inst, bar="1m", after=str(after),
                       before=str(lo - 1), limit="100")
        if not page:
            break
        for row in page:
            rows[int(row[0])] = row
        after = min(int(row[0]) for row in page)
    return rows


def sim_config(tmp_path: Path, info: dict[str, Any], channels: list[str]) -> Path:
    return write_config(tmp_path, rest=info["rest"], ws_public=info["ws_public"], ws_business=info["ws_business"],
                        ca_file=info["ca_file"], channels=channels)


def pick_swaps(info: dict[str, Any], n: int) -> list[str]:
    instruments = sim_get(info, "/api/v5/public/instruments", instType="SWAP")
    return [i["instId"] for i in instruments if i.get("state") == "live" and i["instId"].endswith("-USDT-SWAP")][:n]


@pytest.mark.slow
def test_closed_candles_equal_the_simulators_history(okxsim_process: dict[str, Any], tmp_path: Path) -> None:
    info = okxsim_process
    symbols = pick_swaps(info, 4)
    assert len(symbols) == 4
    config = sim_config(tmp_path, info, ["candle1m", "funding-rate"])
    proc = start_collector(config, "--symbols", ",".join(symbols))
    time.sleep(20)
    assert proc.poll() is None, proc.communicate()[1][-4000:]
    code, err = stop_collector(proc)
    assert code == 0, err[-4000:]
    raw = tmp_path / "raw"
    assert not list(raw.rglob("*.open")), "unsealed shards left after SIGTERM"
    assert "receipt clock: exchange clock" in err  # auto: the simulator runs at 300x from 2024

    candles = ws_records(raw, "candle1m")
    assert {r["inst"] for r in candles} == set(symbols)
    assert all(r["v"] == 1 and r["source"] == "ws" and r["channel"] == "candle1m" for r in candles)
    assert all(len(r["data"]) == 9 and r["data"][8] == "1" for r in candles), "an unclosed candle was written"
    # no duplicates within the ws source: the simulator pushes each final candle once per subscription
    # (documented exception: a universe swap's overlap or a resubscription may repeat a final; none here)
    dup = [k for k, n in Counter((r["inst"], r["ts"]) for r in candles).items() if n > 1]
    assert not dup, f"duplicate (inst, ts) in ws shards: {dup[:5]}"
    # ~20 s at 300x = ~100 simulated minutes per instrument, contiguous (nothing lost)
    for inst in symbols:
        ts = sorted(r["ts"] for r in candles if r["inst"] == inst)
        assert len(ts) >= 60, (inst, len(ts))
        assert ts == list(range(ts[0], ts[-1] + 60_000, 60_000)), f"{inst}: gap in streamed minutes"
        history = sim_history_candles(info, inst, ts[0], ts[-1])
        for r in (r for r in candles if r["inst"] == inst):
            assert r["data"] == history.get(r["ts"]), f"{inst} {r['ts']}: ws {r['data']} != rest {history.get(r['ts'])}"
    # receipt time on the simulator's clock: after the bar closed, and each shard holds its receipt hour.
    # The receipt clock is the exchange's, estimated from the pushes: at 300x, 0.2 s of real error in
    # that estimate (a loaded machine: 4 test workers on 2 cores reached 0.106 s) is 60 simulated
    # seconds, hence the tolerance on both sides of the close
    for r in candles:
        assert r["ts"] + 60_000 - 60_000 <= r["recv_ts"] <= r["ts"] + 60_000 + 60_000, r
    hours = set()
    for path in S.sealed_shards(raw, "ws", "candle1m"):
        recs = list(S.read_records([path]))
        hour = {S.hour_of(r["recv_ts"]) for r in recs}
        assert len(hour) == 1 and S.hour_dir(raw, "ws", "candle1m", hour.pop()) == path.parent
        hours.add(f"{path.parent.parent.name}/{path.parent.name}")
    assert hours == {"2024-03-04/22", "2024-03-04/23"}, hours  # the 23:00 rollover sealed hour 22

    funding = ws_records(raw, "funding-rate")
    assert funding and {r["inst"] for r in funding} <= set(symbols)
    for r in funding:
        assert isinstance(r["data"], dict) and r["data"]["instId"] == r["inst"]
        assert r["ts"] == int(r["data"].get("ts") or r["data"]["fundingTime"])
        assert all(isinstance(v, str) for k, v in r["data"].items()), r["data"]  # strings stay strings


@pytest.mark.slow
def test_reconnect_after_drop_and_malformed_frames(okxsim_process: dict[str, Any], tmp_path: Path) -> None:
    import requests

    info = okxsim_process
    symbols = pick_swaps(info, 2)
    config = sim_config(tmp_path, info, ["candle1m", "open-interest"])
    proc = start_collector(config, "--symbols", ",".join(symbols))

    def fault(kind: str) -> dict[str, Any]:
        return requests.post(info["rest"] + "/sim/faults", json={"kind": kind}, verify=info["ca_file"],
                             timeout=10).json()

    deadline = time.monotonic() + 60  # both connections up (public, business): a loaded machine starts slowly
    while time.monotonic() < deadline and requests.get(info["rest"] + "/sim/state", verify=info["ca_file"],
                                                       timeout=10).json()["ws_connections"] < 2:
        time.sleep(0.2)
    time.sleep(2)
    assert fault("ws_malformed")["ok"]
    # let the collector read the malformed frames first: the drop is an abort (TCP RST), and a
    # frame still unread in the receive buffer when it arrives is discarded by the kernel (seen
    # once on a loaded machine: no frame to count)
    time.sleep(2)
    dropped_at = time.time()
    assert fault("ws_drop")["results"][0]["dropped"] == 2
    time.sleep(7)
    code, err = stop_collector(proc)
    assert code == 0, err[-4000:]
    assert not list((tmp_path / "raw").rglob("*.open"))
    assert "'not_json': 2" in err  # the malformed frame on each connection: counted, logged, not written
    candles = ws_records(tmp_path / "raw", "candle1m")
    # the stream resumed after the drop (cryptofeed reconnects and our subscribe runs again)
    state = requests.get(info["rest"] + "/sim/state", verify=info["ca_file"], timeout=10).json()
    sim_at_drop = state["sim_now"] - (time.time() - dropped_at) * SIM_SPEED * 1000
    assert any(r["recv_ts"] > sim_at_drop + 60_000 for r in candles), "no candle after the reconnect"
    assert {r["inst"] for r in candles} == set(symbols)
    dup = [k for k, n in Counter((r["inst"], r["ts"]) for r in candles).items() if n > 1]
    assert not dup, dup[:5]
    assert ws_records(tmp_path / "raw", "open-interest")


# --------------------------------------------------------------------------- units (no network)


def _feed(sink=None, **kwargs: Any):
    from cryptofeed.defines import CANDLES, FUNDING

    from collector.okx_feed import OkxFeed
    from collector.universe import install_symbols

    install_symbols(STANDIN_INSTRUMENTS)
    return OkxFeed(public_url="wss://127.0.0.1:1/ws/v5/public", business_url="wss://127.0.0.1:1/ws/v5/business",
                   frame_sink=sink or (lambda *a: None), symbols=["BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP"],
                   channels=[CANDLES, FUNDING], config={"log": {"disabled": True}}, **kwargs)


class FakeConn:
    def __init__(self, subscription: dict[str, list[str]], uuid: str = "c1") -> None:
        self.subscription = subscription
        self.uuid = uuid
        self.address = "wss://fake"
        self.sent: list[str] = []
        self.is_open = True
        self.last_message: float | None = None

    async def write(self, msg: str) -> None:
        self.sent.append(msg)


def test_feed_routes_candles_to_business_and_subscribes_per_connection_in_chunks() -> None:
    feed = _feed(subscribe_chunk=2)
    assert feed.retries == -1 and feed.candle_interval == "1m"
    conns = feed.connect()
    by_address = {c.address: c.subscription for c, *_ in conns}
    assert set(by_address) == {"wss://127.0.0.1:1/ws/v5/public", "wss://127.0.0.1:1/ws/v5/business"}
    assert set(by_address["wss://127.0.0.1:1/ws/v5/business"]) == {"candle"}
    assert set(by_address["wss://127.0.0.1:1/ws/v5/public"]) == {"funding-rate"}

    async def run() -> list[dict[str, Any]]:
        conn = FakeConn(by_address["wss://127.0.0.1:1/ws/v5/business"])
        await feed.subscribe(conn)  # type: ignore[arg-type]
        await feed.shutdown()
        return [json.loads(m) for m in conn.sent]

    msgs = asyncio.run(run())
    assert [len(m["args"]) for m in msgs] == [2, 1]
    assert [a for m in msgs for a in m["args"]] == [
        {"channel": "candle1m", "instId": i} for i in ("BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP")]


def test_keepalive_sends_text_ping_after_silence() -> None:
    feed = _feed(keepalive_s=0.2)

    async def run() -> list[str]:
        conn = FakeConn({})
        feed._start_keepalive(conn)  # type: ignore[arg-type]
        await asyncio.sleep(0.45)
        conn.is_open = False
        await asyncio.sleep(0.1)
        return conn.sent

    sent = asyncio.run(run())
    assert sent and set(sent) == {"ping"}


def test_message_handler_hands_raw_text_to_the_sink_first() -> None:
    got: list[tuple[Any, ...]] = []
    feed = _feed(sink=lambda *a: got.append(a), forward_to_cryptofeed=True)
    frame = '{"arg":{"channel":"funding-rate","instId":"SOS-USDT-SWAP"},"data":[{"fundingTime":"1"}]}'
    # cryptofeed itself would raise on this frame (unknown symbol, no fundingRate): isolated, not fatal
    asyncio.run(feed.message_handler(frame, FakeConn({}), 12.5))  # type: ignore[arg-type]
    assert got == [(frame, "c1", "wss://fake", 12.5)]


class _FailingWriter:
    def __init__(self) -> None:
        self.calls = 0

    def write(self, record: dict[str, Any]) -> None:
        self.calls += 1
        raise S.ShardWriteError(Path("/x/y.jsonl.open"), OSError(28, "No space left on device"))

    def tick(self) -> list[Path]:
        return []


def test_capture_stops_on_write_failure_and_counts_rejects() -> None:
    from collector.capture import RawCapture
    from collector.clock import LocalClock

    fatal: list[BaseException] = []
    writer = _FailingWriter()
    cap = RawCapture(writer, clock=LocalClock(), channels=["candle1m"], on_fatal=fatal.append)  # type: ignore[arg-type]
    cap('{"event":"error","code":"60018","msg":"nope"}', "c", "a", time.time())
    cap("pong", "c", "a", time.time())
    cap('{"arg":{"channel":"candle1m","instId":"X-USDT-SWAP"},"data":[["1","1","1","1","1","1","1","1","0"]]}', "c", "a", 1.0)
    assert writer.calls == 0 and cap.skipped["candle_not_confirmed"] == 1
    frame = '{"arg":{"channel":"candle1m","instId":"X-USDT-SWAP"},"data":[["1","1","1","1","1","1","1","1","1"]]}'
    cap(frame, "c", "a", time.time())
    cap(frame, "c", "a", time.time())  # after a fatal error nothing more is attempted
    assert writer.calls == 1 and len(fatal) == 1 and fatal[0].errno == 28  # type: ignore[attr-defined]
    assert cap.rejected["error_event"] == 1 and cap.error_codes["60018"] == 1 and cap.pongs == 1


def test_exchange_clock_follows_a_fast_clock_and_snaps_real_time() -> None:
    from collector.clock import ExchangeClock, LocalClock, choose_clock

    real = [1000.0]   # the local clock (seconds), advanced by sleeps and round trips
    T0 = 1_709_589_600_000

    def local() -> float:
        return real[0]

    def sleep(s: float) -> None:
        real[0] += s

    def fake_server(speed: float, start_ms: int):
        def fetch() -> int:  # answers at the middle of a 2 ms round trip
            real[0] += 0.001
            ms = start_ms + int((real[0] - 1000.0) * speed * 1000)
            real[0] += 0.001
            return ms
        return fetch

    sim = ExchangeClock(fake_server(300, T0), local=local, sleep=sleep)
    sim.calibrate()
    assert abs(sim.rate - 300) < 1
    expected = T0 + (real[0] + 10 - 1000.0) * 300_000
    assert abs(sim.at(real[0] + 10) * 1000 - expected) < 1_000          # within 1 simulated second
    before = sim.now()
    sim._anchor = (sim._anchor[0], sim._anchor[1] - 60_000)             # a resync that would step back
    assert sim.now() >= before                                           # never goes backwards

    real_exchange = fake_server(1.0, int(1000.0 * 1000) + 30)            # 30 ms ahead, real time
    assert isinstance(choose_clock("auto", real_exchange, local=local, sleep=sleep), LocalClock)
    assert isinstance(choose_clock("local", real_exchange), LocalClock)
    exchange = choose_clock("exchange", real_exchange, local=local, sleep=sleep)
    assert isinstance(exchange, ExchangeClock) and exchange.rate == 1.0
    assert isinstance(choose_clock("auto", fake_server(300, T0), local=local, sleep=sleep), ExchangeClock)
    assert isinstance(choose_clock("auto", fake_server(1.0, T0), local=local, sleep=sleep), ExchangeClock)  # past

    def broken() -> int:
        raise ConnectionError("down")

    assert isinstance(choose_clock("auto", broken, local=local, sleep=sleep), LocalClock)
    with pytest.raises(ConnectionError):
        choose_clock("exchange", broken, local=local, sleep=sleep)


def test_universe_selection(tmp_path: Path) -> None:
    import polars as pl

    from collector.universe import newest_universe_file, select_instruments, std_symbol

    inst = [dict(i) for i in STANDIN_INSTRUMENTS]
    inst[4]["state"] = "suspend"  # DOGE
    tickers = [{"instId": i["instId"], "instType": "SWAP", "last": "1", "volCcy24h": str(v)}
               for i, v in zip(inst, (5, 50, 40, 30, 999))]
    cfg = {"size": 2, "inst_type": "SWAP", "settle_ccy": "USDT", "ct_type": "linear", "inst_category": ["1"]}
    sel = select_instruments(symbols=None, work_root=tmp_path, universe_cfg=cfg, instruments=inst,
                             live_snapshot=lambda: tickers)
    assert sel.instruments == ("ETH-USDT-SWAP", "SOL-USDT-SWAP") and sel.origin.startswith("live tickers")
    udir = tmp_path / "universe"
    udir.mkdir()
    pl.DataFrame({"inst": ["XRP-USDT-SWAP", "DOGE-USDT-SWAP", "BTC-USDT-SWAP", "SOL-USDT-SWAP"],
                  "rank": [2, 1, 3, 4], "member": [True, True, True, False]}).write_parquet(udir / "2024-03-04.parquet")
    pl.DataFrame({"inst": ["ETH-USDT-SWAP"], "member": [True]}).write_parquet(udir / "2024-03-06.parquet")
    today = dt.date(2024, 3, 5)
    assert newest_universe_file(tmp_path, today=today) == udir / "2024-03-04.parquet"
    sel = select_instruments(symbols=None, work_root=tmp_path, universe_cfg=cfg, instruments=inst, today=today)
    assert sel.instruments == ("XRP-USDT-SWAP", "BTC-USDT-SWAP")  # rank order, DOGE not live
    sel = select_instruments(symbols=["SOL-USDT-SWAP"], work_root=tmp_path, universe_cfg=cfg, instruments=inst)
    assert sel.instruments == ("SOL-USDT-SWAP",) and sel.origin == "--symbols"
    with pytest.raises(ValueError, match="not listed"):
        select_instruments(symbols=["NOPE-USDT-SWAP"], work_root=tmp_path, universe_cfg=cfg, instruments=inst)
    assert std_symbol("BTC-USDT-SWAP") == "BTC-USDT-PERP" and std_symbol("BTC-USDT") == "BTC-USDT"
    assert std_symbol("BTC-USD-240329") is None


def test_universe_hot_swap(standin: StandIn, tmp_path: Path) -> None:
    import polars as pl

    base = f"127.0.0.1:{standin.port}"
    config = write_config(tmp_path, rest=f"https://{base}", ws_public=f"wss://{base}/ws/v5/public",
                          ws_business=f"wss://{base}/ws/v5/business", ca_file=str(standin.ca_file),
                          channels=["candle1m"])
    cfg = yaml.safe_load(config.read_text())
    cfg["collector"]["universe_poll_s"] = 0.5
    config.write_text(yaml.safe_dump(cfg))
    udir = tmp_path / "work" / "universe"
    udir.mkdir(parents=True)
    today = dt.datetime.now(dt.timezone.utc).date()
    pl.DataFrame({"inst": ["BTC-USDT-SWAP"], "member": [True]}).write_parquet(udir / f"{today - dt.timedelta(days=1)}.parquet")
    proc = start_collector(config)

    def subscribed_to(inst: str) -> bool:
        return any(isinstance(m, dict) and any(a.get("instId") == inst for a in m.get("args", []))
                   for _, m in list(standin.received))

    def wait_for(condition, seconds: float = 30) -> None:  # polls, so a loaded machine only waits longer
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.1)

    wait_for(lambda: subscribed_to("BTC-USDT-SWAP"))
    pl.DataFrame({"inst": ["ETH-USDT-SWAP", "XRP-USDT-SWAP"], "member": [True, True]}).write_parquet(udir / f"{today}.parquet")
    wait_for(lambda: subscribed_to("XRP-USDT-SWAP"))
    time.sleep(3)  # the hand-over: old connection closed after the new one answered, plus 1 s
    code, err = stop_collector(proc)
    assert code == 0, err[-4000:]
    assert "universe changed" in err
    subscribed = [(a["instId"]) for p, m in standin.received if isinstance(m, dict) for a in m["args"]]
    assert subscribed == ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "XRP-USDT-SWAP"]
    assert sorted(r["inst"] for r in ws_records(tmp_path / "raw", "candle1m")) == [
        "BTC-USDT-SWAP", "ETH-USDT-SWAP", "XRP-USDT-SWAP"]


def test_sigkilled_collector_is_recovered_by_the_next_start(standin: StandIn, tmp_path: Path) -> None:
    base = f"127.0.0.1:{standin.port}"
    config = write_config(tmp_path, rest=f"https://{base}", ws_public=f"wss://{base}/ws/v5/public",
                          ws_business=f"wss://{base}/ws/v5/business", ca_file=str(standin.ca_file),
                          channels=["candle1m", "funding-rate"])
    proc = start_collector(config, "--symbols", "BTC-USDT-SWAP,ETH-USDT-SWAP")
    raw = tmp_path / "raw"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not [p for p in raw.rglob("*.jsonl.open") if p.stat().st_size]:
        time.sleep(0.1)
    time.sleep(1.0)  # > flush_interval_s: everything received is in the OS
    proc.kill()
    proc.communicate()
    left = sorted(raw.rglob("*.jsonl.open"))
    assert left, "expected unsealed shards after SIGKILL"
    before = {p: p.read_bytes() for p in left}
    proc = start_collector(config, "--symbols", "BTC-USDT-SWAP", "--duration-s", "2")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-4000:]
    assert f"recovered {len(left)} unsealed shard(s), cut 0 partial line(s)" in err
    for path, data in before.items():
        assert path.with_name(path.name[: -len(".open")]).read_bytes() == data
    assert not list(raw.rglob("*.open"))
    # 2 candles (BTC, ETH) from the killed run + 1 from the second one, each in its own file
    assert len(ws_records(raw, "candle1m")) == 3 and len(S.sealed_shards(raw, "ws", "candle1m")) == 2
