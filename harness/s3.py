"""A local S3-compatible server (moto's server mode) on 127.0.0.1 for tests and demos.

Real S3 is unreachable from our machines; moto's server speaks the S3 REST API over HTTP, so
boto3, the collector's S3 sink and Snakemake's S3 storage plugin all talk to it exactly as they
would to AWS or MinIO, with an endpoint URL and (dummy) credentials from the environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.processes import PYTHON, REPO, stop

#: Credentials moto accepts (any non-empty pair); set in the environment of every client.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    pid: int

    def env(self) -> dict[str, str]:
        """Environment for a client process: credentials plus the endpoint (boto3 >= 1.28 reads it)."""
        return {**S3_ENV, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client(self):  # noqa: ANN201  (boto3 client; typed stubs are not a dependency)
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server(*, log_path: Path, buckets: tuple[str, ...] = ()) -> Iterator[S3Server]:
    """Run ``python -m moto.server`` on a free 127.0.0.1 port; create ``buckets``; stop on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **S3_ENV})
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None:
                        raise RuntimeError(f"the S3 server exited before it was ready; see {log_path}") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the S3 server did not answer within 30 s; see {log_path}") from None
                    time.sleep(0.1)
            server = S3Server(url, proc.pid)
            client = server.client()
            for bucket in buckets:
                client.create_bucket(Bucket=bucket)
            yield server
        finally:
            stop(proc, timeout_s=10)
