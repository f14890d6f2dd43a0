"""A real S3-compatible server on 127.0.0.1 (moto's server mode) for the URL tests, reached with
the real s3fs client; the samples are uploaded to it once per session."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

BUCKET = "corpora"


@dataclass
class ObjectStore:
    endpoint: str
    fs: object  # s3fs.S3FileSystem

    def url(self, *parts: str) -> str:
        return "s3://" + "/".join((BUCKET, *parts))

    def new_url(self, name: str) -> str:
        """A fresh output URL (tests share the bucket)."""
        return self.url("out", f"{name}-{uuid.uuid4().hex[:8]}")

    def keys(self, url: str) -> list[str]:
        self.fs.invalidate_cache()
        root = url.removeprefix("s3://")
        return sorted(p[len(root) + 1 :] for p in self.fs.find(root))

    def download(self, url: str, to: Path) -> Path:
        self.fs.invalidate_cache()
        self.fs.get(url.removeprefix("s3://") + "/", str(to), recursive=True)
        return to


def start(samples: dict[str, Path]):
    """Start the server, point every s3 client of this process and its children at it (the
    standard AWS variables), upload ``samples``; returns the server and the store."""
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    for name, folder in samples.items():
        fs.put(str(folder), f"{BUCKET}/{name}", recursive=True)
    return server, ObjectStore(endpoint, fs)
