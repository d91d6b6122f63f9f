"""The one place that builds filesystems for dataset roots (local paths and ``s3://``).

* :func:`get_fs` gives an fsspec filesystem (s3fs for ``s3://``) plus the root without its protocol;
  writers, manifest reads, checksums and the Ray-free reader use it.
* :func:`get_arrow_fs` gives a ``pyarrow.fs`` filesystem for Ray Data reads (native, multi-threaded).

S3 settings come from :class:`~clasp_dist.config.StorageConfig` first, then the standard AWS
environment (``AWS_ENDPOINT_URL[_S3]``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
``AWS_DEFAULT_REGION``/``AWS_REGION``, profiles). Credentials are passed to the SDKs and never
formatted into a message or a log line. Connect/read timeouts are bounded and retries come from
``StorageConfig.retries`` so an unreachable endpoint or refused credentials fail fast, never hang.
:func:`storage_errors` turns SDK exceptions into :class:`StorageError` naming the root and endpoint.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from typing import Iterator, Optional
from urllib.parse import urlparse

import fsspec

from .errors import StorageError

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0


def _storage(cfg):
    if cfg is None:
        from clasp_dist.config import StorageConfig

        return StorageConfig()
    return cfg


def is_s3(root: str) -> bool:
    return root.startswith(("s3://", "s3a://"))


def endpoint_url(cfg=None) -> Optional[str]:
    """The S3 endpoint in effect: config, then ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``."""
    cfg = _storage(cfg)
    return cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region(cfg=None) -> Optional[str]:
    cfg = _storage(cfg)
    return cfg.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def join(root: str, *parts: str) -> str:
    """Join a root (URL or path) and relative parts with '/'."""
    return posixpath.join(root.rstrip("/"), *parts)


def get_fs(root: str, storage_cfg=None) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec filesystem for ``root`` and the root as that filesystem's path (no protocol)."""
    if is_s3(root):
        fs = _s3fs(_storage(storage_cfg))
        return fs, root.split("://", 1)[1].rstrip("/")
    if "://" in root and not root.startswith("file://"):
        fs, path = fsspec.core.url_to_fs(root)
        return fs, path.rstrip("/")
    path = os.path.abspath(os.path.expanduser(root[len("file://"):] if root.startswith("file://") else root))
    return fsspec.filesystem("file"), path


def _s3fs(cfg):
    import s3fs

    config_kwargs = {"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S,
                     "retries": {"max_attempts": cfg.retries, "mode": "standard"}}
    client_kwargs = {}
    if endpoint_url(cfg):
        client_kwargs["endpoint_url"] = endpoint_url(cfg)
    if region(cfg):
        client_kwargs["region_name"] = region(cfg)
    return s3fs.S3FileSystem(anon=cfg.anon, client_kwargs=client_kwargs, config_kwargs=config_kwargs,
                             skip_instance_cache=True)


def get_arrow_fs(root: str, storage_cfg=None):
    """``(pyarrow.fs.FileSystem, path)`` for Ray Data reads of ``root``."""
    import pyarrow.fs as pafs

    if not is_s3(root):
        _, path = get_fs(root, storage_cfg)
        return pafs.LocalFileSystem(), path
    cfg = _storage(storage_cfg)
    kwargs = {"region": region(cfg) or "us-east-1", "connect_timeout": CONNECT_TIMEOUT_S,
              "request_timeout": READ_TIMEOUT_S,
              "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max(1, cfg.retries))}
    url = endpoint_url(cfg)
    if url:
        parsed = urlparse(url)
        kwargs.update(endpoint_override=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme or "https")
    if cfg.anon:
        kwargs["anonymous"] = True
    else:
        kwargs.update(_resolved_credentials())
    return pafs.S3FileSystem(**kwargs), root.split("://", 1)[1].rstrip("/")


def _resolved_credentials() -> dict:
    """Credentials from botocore's chain (env, profiles, ...) so pyarrow sees what s3fs sees."""
    import botocore.session

    creds = botocore.session.get_session().get_credentials()
    if creds is None:
        return {}
    frozen = creds.get_frozen_credentials()
    out = {"access_key": frozen.access_key, "secret_key": frozen.secret_key}
    if frozen.token:
        out["session_token"] = frozen.token
    return out


@contextlib.contextmanager
def storage_errors(root: str, storage_cfg=None) -> Iterator[None]:
    """Re-raise SDK connection/permission errors as :class:`StorageError` naming root and endpoint."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised otherwise
        kind = _classify(exc)
        if kind is None:
            raise
        where = f"root {root!r}" + (f" (endpoint {endpoint_url(storage_cfg)})" if is_s3(root) else "")
        raise StorageError(f"{kind} for {where}: {type(exc).__name__}: {_short(exc)}") from exc


def _classify(exc: BaseException) -> Optional[str]:
    text = f"{type(exc).__name__} {exc}"
    if isinstance(exc, PermissionError) or any(s in text for s in (
            "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403",
            "NoCredentialsError", "Unable to locate credentials", "ExpiredToken")):
        return "access refused (check the S3 credentials)"
    if any(s in text for s in ("EndpointConnectionError", "ConnectTimeout", "Could not connect",
                               "Connection refused", "ConnectionError", "ClientConnectorError",
                               "Name or service not known", "connect timeout", "Failed to connect")):
        return "storage unreachable (check the endpoint URL and that the server is up)"
    if any(s in text for s in ("NoSuchBucket", "bucket does not exist")):
        return "bucket not found"
    return None


def _short(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return msg[:300]


@contextlib.contextmanager
def atomic_write(fs: fsspec.AbstractFileSystem, path: str):
    """Open ``path`` for writing so that readers never see a partial file.

    Local: write a hidden temporary next to it, then rename. S3: an object only appears when its
    (multipart) upload completes at close, so write in place; on error the upload is aborted.
    """
    if _is_local(fs):
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        f = fs.open(path, "wb")
        try:
            yield f
        except BaseException:
            if hasattr(f, "discard"):
                f.discard()  # abort the multipart upload: nothing becomes visible
                f.closed = True  # and never flush the discarded buffer on garbage collection
            raise
        f.close()


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")
