"""The OKX REST client against the local simulator: limits, retries, pagination, clear errors."""

from __future__ import annotations

import threading
import time

import pytest

import okxsim
from feeder.rest import OkxApiError, OkxRestClient, OkxUnavailableError, OkxUnreachableError

DAY_MS = 86_400_000
MAR_3 = 1709424000000  # 2024-03-03 00:00 UTC


@pytest.fixture(scope="module")
def sim():
    with okxsim.Simulator(seed=7, clock_start="2024-03-04T22:00:00Z", speed=1, history_start="2024-02-01") as s:
        yield s


def client(sim, **kwargs) -> OkxRestClient:
    kwargs.setdefault("backoff_base_s", 0.01)
    return OkxRestClient(base_url=sim.rest, ca_file=sim.ca_file, **kwargs)


def test_history_pagination_returns_the_whole_day_oldest_first(sim):
    with client(sim) as c:
        rows = c.history_candles("ETH-USDT-SWAP", "1m", start_ms=MAR_3, end_ms=MAR_3 + DAY_MS)
    truth = sim.market.candles_1m("ETH-USDT-SWAP", "2024-03-03")
    assert rows == truth
    assert len(rows) > 1400
    # 100 rows per page (the simulator clamps like older OKX docs): the client kept paging
    assert c.requests_sent >= 15


def test_retries_5xx_and_429_then_succeeds(sim):
    sim.fail_next("public/instruments", 2, status=500)
    sim.fail_next("market/tickers", 2, status=429)
    with client(sim) as c:
        assert c.instruments("SWAP")
        assert c.tickers("SWAP")
        assert c.retries == 4


def test_timeouts_are_retried(sim):
    sim.delay_next("public/time", 1, seconds=3)
    with client(sim, timeout_s=0.5) as c:
        assert c.server_time_ms() > 0
        assert c.retries == 1


def test_gives_up_with_a_message_that_says_what_to_do(sim):
    sim.fail_next("public/open-interest", 5, status=500)
    with client(sim, max_retries=2) as c, pytest.raises(OkxUnavailableError, match="still failing after 2 retries"):
        c.get("/api/v5/public/open-interest", {"instType": "SWAP"})
    sim.clear_faults()


def test_non_retryable_okx_error_is_raised_at_once(sim):
    with client(sim) as c, pytest.raises(OkxApiError, match="51001") as err:
        c.history_candles("NOPE-USDT-SWAP", "1m", start_ms=MAR_3, end_ms=MAR_3 + DAY_MS)
    assert err.value.code == "51001" and c.retries == 0


def test_rate_limit_is_respected_across_clients_sharing_a_state_dir(tmp_path):
    """Separate clients (as separate Snakemake jobs would be) share OKX's per-IP budget."""
    with okxsim.Simulator(seed=7, clock_start="2024-03-04T22:00:00Z", speed=1, history_start="2024-02-01") as sim:
        _two_clients_at_once(sim, tmp_path)


def _two_clients_at_once(sim, tmp_path) -> None:
    before = len(sim.requests("history-candles"))

    def work(inst: str) -> None:
        with client(sim, rate_state_dir=tmp_path) as c:
            c.history_candles(inst, "1m", start_ms=MAR_3, end_ms=MAR_3 + DAY_MS)

    threads = [threading.Thread(target=work, args=(i,)) for i in ("BTC-USDT-SWAP", "SOL-USDT-SWAP")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = sim.requests("history-candles")[before:]
    assert len(records) >= 30
    assert all(r.status == 200 for r in records), "a request hit the exchange's 429"
    assert sim.max_requests_per_window("history-candles", 2.0) <= 20


def test_an_empty_history_page_is_asked_again_with_another_anchor(sim):
    """OKX answers `data: []` for one anchor although it has candles: not taken as "none"."""
    end = MAR_3 + DAY_MS
    sim.empty_next("history-candles", 1000, inst_id="SOL-USDT-SWAP", after=end)
    with client(sim) as c:
        rows = c.history_candles("SOL-USDT-SWAP", "1m", start_ms=MAR_3, end_ms=end)
    sim.clear_faults()
    assert rows == sim.market.candles_1m("SOL-USDT-SWAP", "2024-03-03")


def test_garbled_answers_are_retried_then_reported_with_what_came(sim):
    """HTTP 200 whose body is not OKX's JSON is not a refusal: retried, then unavailable."""
    sim.garble_next("public/instruments", 1)
    with client(sim) as c:
        assert c.instruments("SWAP") and c.retries == 1
    sim.garble_next("public/instruments", 10)
    with client(sim, max_retries=2) as c, pytest.raises(OkxUnavailableError, match="not JSON.*'{\"code\":\"0\""):
        c.instruments("SWAP")
    sim.clear_faults()


def test_circuit_breaker_gives_up_when_nothing_is_answered_for_the_budget(sim):
    """An endpoint that hangs: the client stops after `give_up_after_s`, not after its retries;
    while nothing succeeds, each later call makes one attempt; the first success closes it."""
    sim.delay_next("public/time", 1000, seconds=1.0)
    with client(sim, timeout_s=0.1, max_retries=50, give_up_after_s=0.6) as c:
        t0 = time.monotonic()
        with pytest.raises(OkxUnreachableError, match=r"public/time: no answer for [01]\.\d s .*exchange\.rest_url"):
            c.server_time_ms()
        assert time.monotonic() - t0 < 1.2 and c.retries < 10
        sent = c.requests_sent
        with pytest.raises(OkxUnreachableError):
            c.server_time_ms()
        assert c.requests_sent == sent + 1
        sim.clear_faults()
        assert c.server_time_ms() > 0
        sim.fail_next("public/time", 1, status=500)
        assert c.server_time_ms() > 0, "after a success, a failure is retried again"
