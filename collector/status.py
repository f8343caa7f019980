"""``python -m collector status --config config.yaml``: is the running collector healthy?

Reads the collector's own Prometheus endpoint (``collector.metrics_host``/``metrics_port``
from the config, or ``--url``) and says in plain words what it sees: up or not, connected or
not, which channels or instruments have been silent for longer than expected, whether the
disk takes writes, what the exchange refused (dropped from the subscriptions), how many
connections were replaced ahead of a service upgrade (64008), what start-up recovery cut, and (with
``collector.s3``) whether sealed shards reach S3 or how many wait on the local disk.

Exit codes: 0 healthy, 1 unhealthy (the reasons are printed), 2 no collector answers (or the
answer is not the collector's metrics). Suitable for cron, a monitoring check or by hand.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_UNREACHABLE = 2

#: Longest silence (real seconds) that is still normal for one instrument on a channel. OKX pushes
#: forming candles several times a minute, funding-rate every 30-90 s, open-interest every few
#: seconds when it changes; quiet instruments can pause for longer on trades; books5 every 100 ms
#: when the book changed and an unchanged book again after about 60 s.
DEFAULT_MAX_SILENCE_S: dict[str, float] = {
    "books5": 120.0,
    "candle1m": 120.0,
    "funding-rate": 180.0,
    "open-interest": 180.0,
    "tickers": 120.0,
    "trades": 900.0,
}
FALLBACK_MAX_SILENCE_S = 300.0
LIST_AT_MOST = 8  # instruments named per line
#: S3 uploads failing for longer than this is a problem (shorter: a warning; one 503 is not news).
DEFAULT_MAX_S3_FAILING_S = 120.0
#: A shard waiting longer than this for its upload (while uploads succeed) is a warning: S3 is behind.
DEFAULT_MAX_S3_LAG_S = 900.0


@dataclass
class Scrape:
    """Samples by metric name: a list of (labels dict, value)."""

    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[sample.name].append((dict(sample.labels), float(sample.value)))
        return cls(dict(out))

    def value(self, name: str, default: float = 0.0, **labels: str) -> float:
        for got, value in self.samples.get(name, ()):
            if all(got.get(k) == v for k, v in labels.items()):
                return value
        return default

    def total(self, name: str) -> float:
        return sum(v for _, v in self.samples.get(name, ()))

    def by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        return {tuple(lab.get(k, "") for k in keys): v for lab, v in self.samples.get(name, ())}


@dataclass
class Health:
    healthy: bool
    headline: str
    problems: list[str]
    warnings: list[str]
    facts: list[str]

    def render(self) -> str:
        lines = [self.headline]
        lines += [f"  PROBLEM: {p}" for p in self.problems[1:]]   # the first one is the headline
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  {f}" for f in self.facts]
        return "\n".join(lines)


def _dur(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:LIST_AT_MOST])
    return shown + (f" and {len(items) - LIST_AT_MOST} more" if len(items) > LIST_AT_MOST else "")


def _assess_s3(scrape: Scrape, info: Mapping[str, str], *, max_failing_s: float, max_lag_s: float,
               problems: list[str], warnings: list[str], facts: list[str]) -> None:
    """The S3 upload backlog (only when the collector uploads: ``collector_s3_*`` present)."""
    if "collector_s3_backlog_shards" not in scrape.samples:
        return
    url = info.get("s3_prefix", "S3")
    backlog = scrape.value("collector_s3_backlog_shards")
    size = _size(scrape.value("collector_s3_backlog_bytes"))
    waiting = f"{backlog:.0f} sealed shard(s) ({size}) wait on the local disk"
    failing = scrape.value("collector_s3_failing_seconds")
    if failing > 0:
        text = (f"uploads to {url} have been failing for {_dur(failing)}: {info.get('s3_error') or 'see the log'}; "
                f"{waiting} and are uploaded when S3 answers again (nothing is lost)")
        (problems if failing >= max_failing_s else warnings).append(text)
    elif scrape.value("collector_s3_oldest_backlog_age_seconds") > max_lag_s:
        warnings.append(f"uploads to {url} are behind: {waiting}, the oldest for "
                        f"{_dur(scrape.value('collector_s3_oldest_backlog_age_seconds'))}")
    conflicts = scrape.value("collector_s3_conflicts_total")
    if conflicts:
        problems.append(f"{conflicts:.0f} shard(s) not uploaded: {url} already holds different bytes under their "
                        "key (see the log; the local shards are kept)")
    scan = "" if scrape.value("collector_s3_scan_done", 1.0) else " (still looking for shards left by earlier runs)"
    facts.append(f"S3 {url}: {scrape.value('collector_s3_uploads_total'):,.0f} shard(s) uploaded "
                 f"({_size(scrape.value('collector_s3_uploaded_bytes_total'))}) since start, "
                 f"{scrape.value('collector_s3_already_present_total'):,.0f} already there; backlog {backlog:.0f} "
                 f"shard(s){scan}")


def assess(scrape: Scrape, *, max_silence: Mapping[str, float] | None = None, now: float | None = None,
           max_s3_failing_s: float = DEFAULT_MAX_S3_FAILING_S, max_s3_lag_s: float = DEFAULT_MAX_S3_LAG_S) -> Health:
    """Turn one scrape into a verdict (pure: tests feed it hand-made scrapes)."""
    limits = {**DEFAULT_MAX_SILENCE_S, **(max_silence or {})}
    now = time.time() if now is None else now
    problems: list[str] = []
    warnings: list[str] = []
    facts: list[str] = []
    if "collector_start_time_seconds" not in scrape.samples:
        return Health(False, "UNHEALTHY: the endpoint answers, but not with the collector's metrics", [
            "no collector_start_time_seconds metric; is the URL or collector.metrics_port right?"], [], [])
    uptime = now - scrape.value("collector_start_time_seconds", now)
    info = next(iter(lab for lab, _ in scrape.samples.get("collector_info", [])), {})
    phase = info.get("phase") or next((lab["phase"] for lab, v in scrape.samples.get("collector_phase", []) if v),
                                      "?")

    # the disk
    if scrape.value("collector_disk_writable", 1.0) == 0.0 or scrape.total("collector_write_errors_total") > 0:
        detail = info.get("disk_problem") or "see the collector's log"
        problems.append(f"raw shards cannot be written: {detail}")
    if phase == "waiting_for_disk":
        problems.append("waiting for the raw directory to become writable; nothing is being recorded")
    elif phase == "starting":
        (warnings if uptime < 120 else problems).append(
            f"still starting up after {_dur(uptime)} (recovering shards, asking the exchange for instruments)")
    elif phase == "stopping":
        warnings.append("stopping (sealing its shards)")

    # connections
    if phase == "running":
        conns = scrape.by("collector_ws_connected", "endpoint")
        down = sorted(ep for (ep,), v in conns.items() if v == 0.0)
        if not conns and uptime > 30:
            problems.append(f"no WebSocket connection has been opened in {_dur(uptime)}")
        for ep in down:
            problems.append(f"not connected to the exchange's /{ep} WebSocket right now (cryptofeed is reconnecting)")

    # silence, per channel and instrument
    ages = scrape.by("collector_last_message_age_seconds", "channel", "inst")
    refused = {(c, i): code for (c, i, code) in scrape.by("collector_subscription_refused", "channel", "inst", "code")}
    per_channel: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (channel, inst), age in ages.items():
        per_channel[channel].append((inst, age))
    newest = min(ages.values()) if ages else None
    for channel in sorted(per_channel):
        limit = limits.get(channel, FALLBACK_MAX_SILENCE_S)
        entries = [(i, a) for i, a in per_channel[channel] if (channel, i) not in refused]
        silent = sorted((i for i, a in entries if a > limit), key=lambda i: -dict(entries)[i])
        if not silent:
            continue
        worst = max(dict(entries)[i] for i in silent)
        if len(silent) == len(entries):
            problems.append(f"channel {channel} is silent on all {len(entries)} instrument(s): nothing for "
                            f"{_dur(min(dict(entries)[i] for i in silent))} or more (expected at most {_dur(limit)})")
        else:
            problems.append(f"channel {channel}: {len(silent)} of {len(entries)} instrument(s) silent for longer than "
                            f"{_dur(limit)} (up to {_dur(worst)}): {_names(silent)}")
    if refused:
        by_code: dict[str, list[str]] = defaultdict(list)
        for (channel, inst), code in sorted(refused.items()):
            by_code[code].append(f"{inst} ({channel})")
        resent = scrape.total("collector_refused_resubscribes_total")
        for code, items in sorted(by_code.items()):
            warnings.append(f"the exchange refused {len(items)} subscription(s) with code {code} (instrument unknown "
                            f"or delisted?), dropped and not recorded until a restart or a universe change: "
                            f"{_names(items)}" + (f"; the other instruments of the refused request(s) were "
                                                  f"subscribed again ({resent:.0f} request(s))" if resent else ""))

    # facts
    channels = sorted(per_channel)
    insts = int(scrape.value("collector_subscribed_instruments"))
    written = scrape.total("collector_records_written_total")
    facts.append(f"up {_dur(uptime)} (pid {info.get('pid', '?')}, phase {phase}, receipt clock "
                 f"{info.get('clock', '?')}); recording {', '.join(channels) or 'nothing yet'} for {insts} "
                 f"instrument(s)" + (f"; newest data {_dur(newest)} ago" if newest is not None else ""))
    facts.append(f"{written:,.0f} records written, {scrape.value('collector_shards_sealed_total'):,.0f} shard(s) "
                 f"sealed ({_size(scrape.value('collector_sealed_bytes_total'))}), "
                 f"{scrape.value('collector_open_shards'):.0f} open")
    sampled = scrape.value("collector_records_skipped_total", reason="books5_sampled")
    if "books5" in per_channel or sampled:
        books_in = scrape.value("collector_messages_total", channel="books5")
        books_out = scrape.value("collector_records_written_total", channel="books5")
        stale = scrape.value("collector_records_skipped_total", reason="books5_stale")
        facts.append(f"books5 sampled to the last book of each second: {books_in:,.0f} book(s) received, "
                     f"{books_out:,.0f} written, {sampled:,.0f} sampled away, {stale:,.0f} stale/duplicate")
    zin = scrape.value("collector_compressed_input_bytes_total")
    if zin:
        zout = scrape.value("collector_compressed_output_bytes_total")
        facts.append(f"{scrape.value('collector_shards_compressed_total'):,.0f} shard(s) sealed as .jsonl.zst: "
                     f"{_size(zin)} of JSONL in {_size(zout)} ({zin / max(zout, 1):.1f}x)")
    reconnects = scrape.total("collector_reconnects_total")
    switches = scrape.value("collector_universe_switches_total")
    facts.append(f"{reconnects:.0f} reconnect(s), {switches:.0f} universe change(s) since start")
    notices = scrape.total("collector_ws_upgrade_notices_total")
    if notices:
        handovers = scrape.by("collector_ws_handovers_total", "endpoint", "result")
        replaced = sum(v for (_, result), v in handovers.items() if result == "replaced")
        failed = sum(v for (_, result), v in handovers.items() if result == "failed")
        facts.append(f"{notices:.0f} service-upgrade notice(s) (64008): {replaced:.0f} connection(s) replaced before "
                     "the exchange closed them")
        if failed:
            warnings.append(f"{failed:.0f} connection(s) could not be replaced ahead of a service upgrade (64008) "
                            "and were reconnected after the close: pushes in between are missing (candles are "
                            "repaired from REST by the backfill; open interest and other channels are not)")
    rejected = {r: v for (r,), v in scrape.by("collector_frames_rejected_total", "reason").items()
                if r != "event" and v}
    if rejected:
        facts.append("not recorded: " + ", ".join(f"{r} {v:.0f}" for r, v in sorted(rejected.items()))
                     + " (logged with the frame; never written to a shard)")
    cut = scrape.value("collector_recovery_partial_lines_cut_total")
    recovered = scrape.value("collector_recovery_shards_sealed_total")
    if recovered or cut:
        facts.append(f"start-up recovery sealed {recovered:.0f} shard(s) a previous process left open and cut "
                     f"{cut:.0f} partial line(s)")
    _assess_s3(scrape, info, max_failing_s=max_s3_failing_s, max_lag_s=max_s3_lag_s, problems=problems,
               warnings=warnings, facts=facts)
    healthy = not problems
    verdict = "HEALTHY" if healthy else "UNHEALTHY"
    reason = "collector is recording" if healthy else problems[0] + (
        f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else "")
    return Health(healthy, f"{verdict}: {reason}", problems, warnings, facts)


def fetch(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - a local http URL
        return resp.read().decode("utf-8")


def _parse_silence(items: Iterable[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        channel, _, seconds = item.partition("=")
        try:
            out[channel.strip()] = float(seconds)
        except ValueError:
            raise SystemExit(f"--max-silence {item!r}: use CHANNEL=SECONDS, e.g. candle1m=120") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m collector status", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="config.yaml: the metrics address is collector.metrics_host/metrics_port")
    p.add_argument("--url", help="metrics URL instead of the config's, e.g. http://127.0.0.1:9108/metrics")
    p.add_argument("--max-silence", action="append", default=[], metavar="CHANNEL=SECONDS",
                   help="longest normal silence per instrument on a channel (defaults: "
                        + ", ".join(f"{c}={s:g}" for c, s in DEFAULT_MAX_SILENCE_S.items()) + ")")
    p.add_argument("--max-s3-failing", type=float, default=DEFAULT_MAX_S3_FAILING_S, metavar="SECONDS",
                   help="S3 uploads failing for longer than this is unhealthy (default %(default)g; shorter is a "
                        "warning)")
    p.add_argument("--max-s3-lag", type=float, default=DEFAULT_MAX_S3_LAG_S, metavar="SECONDS",
                   help="warn when a sealed shard has waited longer than this for its upload (default %(default)g)")
    p.add_argument("--timeout", type=float, default=5.0, help="HTTP timeout in seconds (default 5)")
    args = p.parse_args(argv)
    if args.url:
        url = args.url
    elif args.config:
        from collector.settings import ConfigError, load_settings

        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            print(f"UNREACHABLE: cannot read {args.config}: {exc}")
            return EXIT_UNREACHABLE
        if settings.metrics_port <= 0:
            print(f"UNREACHABLE: metrics are disabled in {args.config} (collector.metrics_port is 0); set a port, "
                  "restart the collector, then ask again")
            return EXIT_UNREACHABLE
        host = settings.metrics_host if settings.metrics_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        url = f"http://{host}:{settings.metrics_port}/metrics"
    else:
        p.error("give --config config.yaml or --url")
    try:
        text = fetch(url, args.timeout)
        scrape = Scrape.parse(text)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"UNREACHABLE: no collector answers on {url} ({reason}). Is it running? "
              "(supervisorctl status collector; see docs/collector.md)")
        return EXIT_UNREACHABLE
    health = assess(scrape, max_silence=_parse_silence(args.max_silence), max_s3_failing_s=args.max_s3_failing,
                    max_s3_lag_s=args.max_s3_lag)
    print(health.render())
    if "collector_start_time_seconds" not in scrape.samples:
        return EXIT_UNREACHABLE
    return EXIT_HEALTHY if health.healthy else EXIT_UNHEALTHY


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
