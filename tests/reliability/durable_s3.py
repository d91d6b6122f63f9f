"""A moto S3 server whose bucket survives restarts: `durable_s3.py PORT DISK_DIR BUCKET PREFIX`.

Loads every file under DISK_DIR into s3://BUCKET/PREFIX/ through moto's in-process backend, then
opens PORT. Used by the reliability tests to kill and restart "the object store" on the same port
without the window of an empty bucket that re-uploading over HTTP after a restart would create.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path


def main() -> None:
    port, disk, bucket, prefix = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4].strip("/")
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(bucket, "us-east-1")
    for path in sorted(p for p in disk.rglob("*") if p.is_file()):
        key = "/".join(filter(None, [prefix, path.relative_to(disk).as_posix()]))
        backend.put_object(bucket, key, path.read_bytes())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
