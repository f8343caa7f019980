"""Upload sealed shards to S3 (``collector.s3``), off the event loop, losing nothing.

Why it is built this way:

* **Local first.** A shard is sealed on the local disk exactly as without S3 (flush, fsync,
  rename); the local sealed file is the source of truth and the uploader only reads it. S3 holds
  a copy: while S3 is unreachable the collector records as usual and the backlog waits on disk.
* **A thread, not the event loop.** The writer's ``on_seal`` hook only appends to a queue
  (:meth:`ShardUploader.notify`: no I/O, no network), and one daemon thread hashes, asks and
  uploads, so a slow or dead S3 never delays the loop that receives WebSocket messages.
* **A journal of what is in S3**: ``<paths.raw>/.s3-uploaded.log``, one JSON line per shard,
  appended and fsynced after S3 confirmed the upload. At start-up every sealed shard under
  ``<paths.raw>/ws`` whose destination URL is not in the journal is queued: shards sealed while
  S3 was down, on SIGTERM after the drain gave up, or by start-up recovery after a kill. A crash
  between an upload and its journal line costs one more (idempotent) upload at the next start;
  a torn last line is skipped. ``.jsonl.open`` files are never queued (they are not sealed);
  compressed shards (``.jsonl.zst``) are uploaded as they are, with ``Content-Type:
  application/zstd``, to the same relative key.
* **Idempotent uploads.** Same key, same bytes: before a PUT, a HEAD; an object of the same size
  and MD5 is recorded without uploading again, and an object with *different* bytes is a conflict
  that is logged and never overwritten. A PUT carries Content-MD5 (S3 rejects a body that does
  not match it) and the returned ETag is checked against the local MD5. Shards larger than
  ``multipart_threshold`` go up in parts (one PUT is limited to 5 GB) and are checked by size.
* **Retry forever** with capped exponential backoff (S3 down, 5xx, network, credentials being
  fixed); the failing shard stays at the head of the queue, so shards reach S3 in seal order.
  One ERROR line when uploads start failing (saying what to check), a WARNING at most every
  minute while they keep failing, and one line when they recover.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feeder.shards import SEALED_SUFFIXES, all_sealed_shards, is_compressed

from collector.settings import S3Settings

log = logging.getLogger(__name__)

JOURNAL_NAME = ".s3-uploaded.log"
DRAIN_TIMEOUT_S = 10.0          # on SIGTERM: longest wait for the backlog (supervisord's stopwaitsecs is 30)
FAIL_LOG_EVERY_S = 60.0         # while uploads keep failing, repeat the warning this often
MULTIPART_THRESHOLD = 256 << 20
MULTIPART_CHUNKSIZE = 64 << 20
_HASH_CHUNK = 1 << 20

#: Returns a boto3 S3 client; called once, on the uploader thread.
ClientFactory = Callable[[], Any]


class UploadVerifyError(RuntimeError):
    """S3 answered, but what it stored does not match the local shard (retried)."""


def client_factory(endpoint_url: str | None) -> ClientFactory:
    """boto3 S3 client for ``endpoint_url`` (None: AWS, or AWS_ENDPOINT_URL(_S3) from the environment).

    Credentials come from boto3's standard chain only (environment, AWS_PROFILE, instance/pod role).
    botocore retries once by itself; the uploader's own backoff handles longer outages, so a dead
    S3 costs one short attempt per backoff step instead of minutes inside botocore.
    """
    def make() -> Any:
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                        user_agent_extra="crypto-data-feeder-collector")
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
    return make


# --------------------------------------------------------------------------- journal


class UploadJournal:
    """Append-only record of the shards S3 holds: one JSON object per line, fsynced per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._torn = False

    def load(self) -> set[str]:
        """Destination URLs already uploaded. A torn last line (killed mid-append) is skipped."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return set()
        urls: set[str] = set()
        for line in data.splitlines():
            try:
                urls.add(str(json.loads(line)["url"]))
            except (ValueError, KeyError, TypeError):
                log.warning("%s: skipping an unreadable line (torn by a kill?): %.200r", self.path, line)
        self._torn = bool(data) and not data.endswith(b"\n")
        return urls

    def record(self, *, url: str, rel: str, size: int, md5: str) -> None:
        """Append one line and fsync it; the shard counts as uploaded only once this returns."""
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        line = json.dumps({"url": url, "path": rel, "size": size, "md5": md5, "at": round(time.time(), 3)},
                          separators=(",", ":")).encode() + b"\n"
        if self._torn:              # start on a line of our own after a torn one
            line, self._torn = b"\n" + line, False
        os.write(self._fd, line)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# --------------------------------------------------------------------------- uploader


@dataclass
class _Pending:
    path: Path
    rel: str           # path under the raw root, "/"-separated: ws/<channel>/<day>/<hour>/<name>.jsonl
    size: int
    queued_at: float   # wall clock: when this process queued it (the backlog's age)


@dataclass(frozen=True)
class UploadSnapshot:
    """A consistent copy of the uploader's state for metrics and tests (taken under its lock)."""

    url: str
    scanned: bool                  # the start-up scan for unuploaded shards has finished
    backlog_shards: int            # sealed, not yet in S3 (the one being uploaded included)
    backlog_bytes: int
    oldest_queued_at: float | None
    uploaded: int                  # by this process
    uploaded_bytes: int
    already_present: int           # found in S3 with the same bytes (recorded, not uploaded again)
    errors: int                    # failed attempts (each one retried)
    conflicts: int                 # keys holding different bytes (left alone)
    failing_since: float | None    # wall clock of the first failure of the current streak
    last_error: str
    last_upload_at: float | None
    running: bool


class ShardUploader:
    """Copies sealed shards under ``<raw_root>/<source>`` to ``target``, in a background thread.

    ``notify`` (from the writer's ``on_seal`` hook) queues a freshly sealed shard; ``start`` also
    queues every sealed shard the journal does not list. ``stop`` drains for a bounded time.
    """

    def __init__(
        self,
        raw_root: str | Path,
        target: S3Settings,
        *,
        source: str = "ws",
        make_client: ClientFactory | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunksize: int = MULTIPART_CHUNKSIZE,
    ) -> None:
        self.raw_root = Path(raw_root)
        self.target = target
        self.source = source
        self.make_client = make_client or client_factory(target.endpoint_url)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.journal = UploadJournal(self.raw_root / JOURNAL_NAME)
        self._client: Any = None
        self._cv = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._done: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop_at: float | None = None       # monotonic deadline of the drain, once stop() was called
        self._scanned = False
        self._uploaded = self._uploaded_bytes = self._present = self._errors = self._conflicts = 0
        self._failing_since: float | None = None
        self._fail_attempts = 0
        self._last_fail_log = 0.0
        self._last_error = ""
        self._last_upload_at: float | None = None
        self._warned_head_denied = False

    # -- public API (any thread) ---------------------------------------------------------

    @property
    def url(self) -> str:
        return self.target.url

    def url_for(self, rel: str) -> str:
        return f"s3://{self.target.bucket}/{self.key_for(rel)}"

    def key_for(self, rel: str) -> str:
        """The object key of a shard: the key prefix, then its path under the raw root."""
        return f"{self.target.key_prefix}/{rel}" if self.target.key_prefix else rel

    def start(self) -> None:
        """Start the thread: load the journal, queue unuploaded sealed shards, upload."""
        self._thread = threading.Thread(target=self._run, name="s3-uploader", daemon=True)
        self._thread.start()

    def notify(self, path: Path, size: int) -> None:
        """Queue a freshly sealed shard. Called on the event loop: takes a lock, does no I/O."""
        rel = self._rel(path)
        if rel is None:
            return
        with self._cv:
            if rel not in self._pending and self.url_for(rel) not in self._done:
                self._pending[rel] = _Pending(Path(path), rel, int(size), time.time())
                self._cv.notify_all()

    def stop(self, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> int:
        """Upload what is queued for at most ``drain_timeout_s`` (less if S3 is failing), then stop.

        Returns the number of sealed shards left for the next start, and logs them.
        """
        thread = self._thread
        if thread is not None:
            with self._cv:
                self._stop_at = time.monotonic() + max(0.0, drain_timeout_s)
                self._cv.notify_all()
            thread.join(max(0.0, drain_timeout_s) + 5.0)  # + an upload already in flight
        snap = self.snapshot()
        if snap.backlog_shards:
            why = f" (S3 is failing: {snap.last_error})" if snap.failing_since is not None else ""
            log.warning("S3: %d sealed shard(s) (%d bytes) not uploaded to %s yet%s; they stay under %s and the "
                        "next start uploads them", snap.backlog_shards, snap.backlog_bytes, self.url, why,
                        self.raw_root / self.source)
        elif snap.scanned and snap.conflicts:
            log.warning("S3: every sealed shard is in %s except %d whose key holds different bytes (logged above; "
                        "the local shards are kept)", self.url, snap.conflicts)
        elif snap.scanned:
            log.info("S3: every sealed shard is in %s (%d uploaded by this process)", self.url, snap.uploaded)
        return snap.backlog_shards

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until the start-up scan is done and the backlog is empty (tests, tools)."""
        with self._cv:
            return self._cv.wait_for(lambda: self._scanned and not self._pending, timeout_s)

    def snapshot(self) -> UploadSnapshot:
        with self._cv:
            pending = list(self._pending.values())
            return UploadSnapshot(
                url=self.url, scanned=self._scanned, backlog_shards=len(pending),
                backlog_bytes=sum(p.size for p in pending),
                oldest_queued_at=min((p.queued_at for p in pending), default=None),
                uploaded=self._uploaded, uploaded_bytes=self._uploaded_bytes, already_present=self._present,
                errors=self._errors, conflicts=self._conflicts, failing_since=self._failing_since,
                last_error=self._last_error, last_upload_at=self._last_upload_at,
                running=self._thread is not None and self._thread.is_alive())

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._load_and_scan()
            while (item := self._next()) is not None:
                if not self._attempt(item):
                    self._backoff()
        except Exception:  # a bug: say so; nothing is lost, the next start finds the shards again
            log.exception("S3 uploader stopped by an unexpected error; sealed shards stay under %s and the next "
                          "start uploads them", self.raw_root / self.source)
        finally:
            self.journal.close()
            with self._cv:
                self._cv.notify_all()

    def _load_and_scan(self) -> None:
        """Queue every sealed shard whose destination the journal does not list (oldest first)."""
        done = self.journal.load()
        found: list[_Pending] = []
        now = time.time()
        for path in all_sealed_shards(self.raw_root, self.source):
            rel = self._rel(path)
            if rel is None or self.url_for(rel) in done:
                continue
            try:
                found.append(_Pending(path, rel, path.stat().st_size, now))
            except FileNotFoundError:
                continue
        with self._cv:
            self._done |= done
            fresh = {p.rel: p for p in found if p.rel not in self._pending}
            self._pending = {**fresh, **self._pending}   # older shards first, then what was sealed meanwhile
            self._scanned = True
            self._cv.notify_all()
        log.info("S3 uploads to %s%s started: %d shard(s) recorded as uploaded in %s; %d sealed shard(s) (%d bytes) "
                 "under %s are not in S3 yet%s", self.url,
                 f" via {self.target.endpoint_url}" if self.target.endpoint_url else "", len(done), self.journal.path,
                 len(found), sum(p.size for p in found), self.raw_root / self.source,
                 ", uploading them in the background" if found else "")

    def _next(self) -> _Pending | None:
        """The oldest queued shard; None once stopping and (drained, failing, or out of time)."""
        with self._cv:
            while True:
                if self._stop_at is not None and (not self._pending or self._failing_since is not None
                                                  or time.monotonic() >= self._stop_at):
                    return None
                if self._pending:
                    return next(iter(self._pending.values()))
                self._cv.wait(None if self._stop_at is None else max(0.0, self._stop_at - time.monotonic()))

    def _attempt(self, item: _Pending) -> bool:
        """One try at ``item``. True: done with it (uploaded, present, or dropped); False: retry later."""
        try:
            size, md5 = _md5_of(item.path)
        except FileNotFoundError:
            log.warning("S3: sealed shard %s disappeared before it was uploaded (deleted by hand or a retention "
                        "job?); nothing to upload", item.path)
            self._drop(item)
            return True
        except OSError as exc:
            log.error("S3: cannot read sealed shard %s (%s); fix its permissions, the next start uploads it",
                      item.path, exc)
            self._drop(item)
            return True
        try:
            outcome = self._transfer(item, size, md5)
        except Exception as exc:  # S3 down, 5xx, network, credentials, a bad answer: all retried
            self._failed(item, exc)
            return False
        if outcome == "conflict":
            self._drop(item, conflict=True)
        else:
            self._succeeded(item, size, md5, uploaded=outcome == "uploaded")
        return True

    def _transfer(self, item: _Pending, size: int, md5: str) -> str:
        """HEAD, then PUT if needed: ``"uploaded"``, ``"present"`` (same bytes there) or ``"conflict"``."""
        if self._client is None:
            self._client = self.make_client()
        key = self.key_for(item.rel)
        head = self._head(key)
        if head is not None:
            if _same_object(head, size, md5):
                return "present"
            log.error("S3: %s already holds different bytes (%s bytes, ETag %s) than the sealed shard %s (%d bytes, "
                      "MD5 %s); not overwriting it. Does another collector write the same prefix with the same "
                      "writer id? Move the object away (or give each collector its own prefix) and restart: the "
                      "local shard is kept and is uploaded then.", self.url_for(item.rel), head.get("ContentLength"),
                      head.get("ETag"), item.path, size, md5)
            return "conflict"
        if size > self.multipart_threshold:
            self._put_multipart(item.path, key, md5)
            self._verify_size(key, size)
        else:
            self._put(item.path, key, md5, size)
        return "uploaded"

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata, or None when there is none (or HEAD is not allowed: then PUT anyway)."""
        from botocore.exceptions import ClientError

        try:
            return dict(self._client.head_object(Bucket=self.target.bucket, Key=key))
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                return None
            if status == 403:   # may PutObject but not GetObject: upload without the check
                if not self._warned_head_denied:
                    self._warned_head_denied = True
                    log.warning("S3: HEAD on %s is denied (no s3:GetObject?); uploading without checking for an "
                                "existing object", self.url)
                return None
            raise

    def _put(self, path: Path, key: str, md5: str, size: int) -> None:
        md5_b64 = base64.b64encode(bytes.fromhex(md5)).decode()
        with open(path, "rb") as fh:
            resp = self._client.put_object(Bucket=self.target.bucket, Key=key, Body=fh, ContentMD5=md5_b64,
                                           ContentType=content_type(path), Metadata={"md5": md5})
        etag = str(resp.get("ETag", "")).strip('"')
        if etag == md5:
            return
        if _is_md5(etag):
            raise UploadVerifyError(f"S3 stored {key} with ETag {etag}, not the shard's MD5 {md5}")
        self._verify_size(key, size)   # SSE-KMS and some servers: the ETag is not an MD5

    def _put_multipart(self, path: Path, key: str, md5: str) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=self.multipart_threshold,
                                multipart_chunksize=self.multipart_chunksize, use_threads=False)
        self._client.upload_file(str(path), self.target.bucket, key, Config=config,
                                 ExtraArgs={"ContentType": content_type(path), "Metadata": {"md5": md5}})

    def _verify_size(self, key: str, size: int) -> None:
        head = self._head(key)
        if head is not None and int(head.get("ContentLength", -1)) != size:
            raise UploadVerifyError(f"S3 holds {head.get('ContentLength')} bytes under {key}, the shard has {size}")

    # -- bookkeeping -----------------------------------------------------------------------

    def _succeeded(self, item: _Pending, size: int, md5: str, *, uploaded: bool) -> None:
        url = self.url_for(item.rel)
        try:
            self.journal.record(url=url, rel=item.rel, size=size, md5=md5)
        except OSError as exc:  # the object is in S3; without the line the next start HEADs it again
            log.error("S3: cannot record the upload of %s in %s (%s); the next start checks it in S3 again instead "
                      "of trusting the journal. Free space / fix permissions on %s.", url, self.journal.path, exc,
                      self.raw_root)
        with self._cv:
            self._pending.pop(item.rel, None)
            self._done.add(url)
            recovered = self._failing_since is not None
            down_for, attempts = time.time() - (self._failing_since or 0), self._fail_attempts
            self._failing_since, self._fail_attempts, self._last_error = None, 0, ""
            if uploaded:
                self._uploaded += 1
                self._uploaded_bytes += size
            else:
                self._present += 1
            self._last_upload_at = time.time()
            backlog = len(self._pending)
            self._cv.notify_all()
        if recovered:
            log.warning("S3 uploads recovered after %.0fs and %d failed attempt(s); %d shard(s) left in the backlog",
                        down_for, attempts, backlog)
        log.info("%s %s (%d bytes)", "uploaded to" if uploaded else "already in S3, recorded:", url, size)

    def _drop(self, item: _Pending, *, conflict: bool = False) -> None:
        """Stop trying ``item`` in this process (not journaled: the next start looks at it again)."""
        with self._cv:
            self._pending.pop(item.rel, None)
            self._conflicts += int(conflict)
            self._cv.notify_all()

    def _failed(self, item: _Pending, exc: BaseException) -> None:
        reason = describe_error(exc, self.target)
        with self._cv:
            self._errors += 1
            first = self._failing_since is None
            if first:
                self._failing_since = time.time()
            self._fail_attempts += 1
            self._last_error = reason
            backlog, backlog_bytes = len(self._pending), sum(p.size for p in self._pending.values())
            failing_for = time.time() - self._failing_since
        now = time.monotonic()
        if first:
            self._last_fail_log = now
            log.error("S3 upload of %s to %s failed: %s. Nothing is lost: sealed shards stay on the local disk "
                      "and are retried with backoff (up to every %gs); backlog %d shard(s), %d bytes.", item.path,
                      self.url_for(item.rel), reason, self.backoff_max_s, backlog, backlog_bytes)
        elif now - self._last_fail_log >= FAIL_LOG_EVERY_S:
            self._last_fail_log = now
            log.warning("S3 uploads still failing after %.0fs (%d attempts): %s; backlog %d shard(s), %d bytes, "
                        "waiting under %s", failing_for, self._fail_attempts, reason, backlog, backlog_bytes,
                        self.raw_root / self.source)
        else:
            log.debug("S3 upload attempt %d failed: %s", self._fail_attempts, reason)

    def _backoff(self) -> None:
        """Sleep 1, 2, 4, ... s (jittered, capped at ``backoff_max_s``); a stop() ends it early."""
        with self._cv:
            step = self.backoff_initial_s * 2 ** min(self._fail_attempts - 1, 30)
            delay = min(self.backoff_max_s, step) * random.uniform(0.5, 1.0)
            self._cv.wait_for(lambda: self._stop_at is not None, delay)

    def _rel(self, path: Path) -> str | None:
        """``ws/<channel>/<day>/<hour>/<name>.jsonl[.zst]`` for a sealed shard under the raw root, else None."""
        try:
            rel = Path(path).relative_to(self.raw_root)
        except ValueError:
            return None
        parts = rel.parts
        if len(parts) != 5 or parts[0] != self.source or not parts[-1].endswith(SEALED_SUFFIXES):
            return None
        return "/".join(parts)


# --------------------------------------------------------------------------- helpers


def content_type(path: Path) -> str:
    """The object's Content-Type: JSONL, or zstd for a compressed shard (its bytes are uploaded as they are)."""
    return "application/zstd" if is_compressed(path) else "application/x-ndjson"


def _md5_of(path: Path) -> tuple[int, str]:
    """Size and MD5 (hex) of a file, read in 1 MB pieces (shards can be large)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _is_md5(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


def _same_object(head: dict[str, Any], size: int, md5: str) -> bool:
    """Does the object S3 holds have the shard's bytes? Size, then the ETag (plain PUT) or our md5 metadata."""
    if int(head.get("ContentLength", -1)) != size:
        return False
    etag = str(head.get("ETag", "")).strip('"')
    return etag == md5 or (head.get("Metadata") or {}).get("md5") == md5


def describe_error(exc: BaseException, target: S3Settings) -> str:
    """What to do about ``exc``, then the error itself: ``"<hint> (<Type>: <message>)"``.

    The hint comes first because logs, the ``s3_error`` metric label and ``status`` may cut a long
    line, and botocore's messages carry the whole URL.
    """
    hint = _hint(exc, target)
    text = f"{type(exc).__name__}: {exc}"
    return f"{hint} ({text})" if hint else text


def _hint(exc: BaseException, target: S3Settings) -> str:
    from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError, PartialCredentialsError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ("no AWS credentials: give the collector AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
                "or an instance/pod role in its environment (supervisord: environment= in collector/supervisord.conf; "
                "systemd: Environment=), then restart it")
    if isinstance(exc, (HTTPClientError, BotoConnectionError)):   # refused, reset, timed out, TLS
        where = (target.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                 or "AWS S3")
        return f"S3 ({where}) is unreachable: check the network, or collector.s3.endpoint_url / AWS_ENDPOINT_URL"
    if not isinstance(exc, ClientError):
        return ""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code == "NoSuchBucket":
        return f"the bucket {target.bucket} does not exist: create it, or fix the bucket in collector.s3.prefix"
    if status == 403 or code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                                 "InvalidToken", "AllAccessDisabled"}:
        return ("S3 refused the credentials: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, the "
                f"instance role) in the collector's environment and that they allow s3:PutObject under {target.url}")
    if status >= 500 or code in {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}:
        return f"S3 answered with a server error (HTTP {status}); this usually passes by itself"
    return ""
