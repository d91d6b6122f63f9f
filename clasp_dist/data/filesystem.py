"""The one place that builds filesystems for dataset roots and run paths: local, ``s3://`` and ``gs://``.

* :func:`get_fs` gives an fsspec filesystem (s3fs for ``s3://``, gcsfs for ``gs://``) plus the root without
  its protocol; writers, manifest reads, checksums, run files and the Ray-free reader use it.
* :func:`get_arrow_fs` gives a ``pyarrow.fs`` filesystem (``S3FileSystem`` / ``GcsFileSystem``, native and
  multi-threaded) for Ray Data reads, Ray Train checkpoints and Tune's experiment storage.

S3 settings come from :class:`~clasp_dist.config.StorageConfig` first, then the standard AWS environment
(``AWS_ENDPOINT_URL[_S3]``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, profiles,
instance roles). The bucket's region is ``storage.region``, else ``AWS_REGION``, else asked from the bucket
itself (:func:`bucket_region`), since pyarrow does not follow a bucket outside its configured region.
GCS uses Google's Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login``, the metadata server of a GCE node or GKE pod), or none with ``storage.anon``;
``storage.gcs_endpoint_url`` / ``STORAGE_EMULATOR_HOST`` point it at a GCS-compatible server.
No filesystem built here carries credentials: every process (driver, Ray worker) resolves its own through
the SDKs' provider chains, so temporary credentials are refreshed where they are used and nothing pickled
to a worker holds a key. Credentials are never formatted into a message or a log line. Connect/read timeouts
are bounded and retries come from ``StorageConfig.retries`` so an unreachable endpoint or refused
credentials fail fast, never hang. :func:`storage_errors` turns SDK exceptions into :class:`StorageError`
naming the root and endpoint.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import os
import posixpath
import re
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import fsspec

from ..config import StorageConfig
from .errors import StorageError

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
FALLBACK_REGION = "us-east-1"
GCS_RETRY_S_PER_ATTEMPT = 3
"""pyarrow's GCS client retries by time, not attempts: this many seconds per `storage.retries` attempt."""


def _storage(cfg):
    if cfg is None:
        return StorageConfig()
    return cfg


def is_s3(root: str) -> bool:
    return root.startswith(("s3://", "s3a://"))


def is_gcs(root: str) -> bool:
    return root.startswith(("gs://", "gcs://"))


def is_object_store(root: str) -> bool:
    """S3 or GCS: no directories, and creating one may create a bucket."""
    return is_s3(root) or is_gcs(root)


def is_url(path: str) -> bool:
    """A URL of any scheme (s3://, gs://, file://, memory://, ...) rather than a plain local path."""
    return "://" in path


def absolute_location(path: str, *, follow_links: bool = True) -> str:
    """A storage location with a local path made absolute ('~' expanded); a URL comes back unchanged.
    ``follow_links=False`` keeps symbolic links in the path, as ``os.path.abspath`` does."""
    if is_url(path):
        return path
    path = os.path.expanduser(path)
    return os.path.realpath(path) if follow_links else os.path.abspath(path)


def bucket_of(root: str) -> str:
    return root.split("://", 1)[1].split("/", 1)[0]


def endpoint_url(cfg=None) -> str | None:
    """The S3 endpoint in effect: config, then ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``."""
    cfg = _storage(cfg)
    return cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def gcs_endpoint_url(cfg=None) -> str | None:
    """The GCS endpoint in effect: config, then ``STORAGE_EMULATOR_HOST`` (scheme added when missing)."""
    url = _storage(cfg).gcs_endpoint_url or os.environ.get("STORAGE_EMULATOR_HOST") or None
    if url and not is_url(url):
        url = f"http://{url}"
    return url.rstrip("/") if url else None


def region(cfg=None) -> str | None:
    """The region pinned by the user (``storage.region``, then ``AWS_REGION``), or None."""
    cfg = _storage(cfg)
    return cfg.region or os.environ.get("AWS_REGION") or None


def bucket_region(root: str, cfg=None) -> str:
    """Region of the S3 bucket of ``root``: the pinned one, else the bucket's own (asked once per process
    and endpoint), else ``AWS_DEFAULT_REGION`` or us-east-1 when the bucket cannot say."""
    cfg = _storage(cfg)
    pinned = region(cfg)
    if pinned:
        return pinned
    found = _resolve_region(bucket_of(root), endpoint_url(cfg), bool(cfg.anon))
    return found or os.environ.get("AWS_DEFAULT_REGION") or FALLBACK_REGION


@functools.lru_cache(maxsize=64)
def _resolve_region(bucket: str, endpoint: str | None, anon: bool) -> str | None:
    """The bucket's region from S3 itself (HeadBucket's ``x-amz-bucket-region``); None when unknown.

    AWS: pyarrow's :func:`pyarrow.fs.resolve_s3_region`. A custom endpoint (MinIO, a local server, ...):
    the same HeadBucket request through botocore, since pyarrow's resolver always asks AWS."""
    if endpoint is None:
        import pyarrow.fs as pafs

        try:
            return pafs.resolve_s3_region(bucket)
        except (OSError, ValueError):
            return None
    import boto3
    import botocore.config
    import botocore.exceptions

    config = botocore.config.Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": 1, "mode": "standard"},
        signature_version=botocore.UNSIGNED if anon else None,
    )
    client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=FALLBACK_REGION, config=config)
    try:
        headers = client.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
    except botocore.exceptions.ClientError as err:  # 301/403 still carry the region header
        headers = err.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    except botocore.exceptions.BotoCoreError:
        return None
    return headers.get("x-amz-bucket-region") or None


def join(root: str, *parts: str) -> str:
    """Join a root (URL or path) and relative parts with '/'."""
    return posixpath.join(root.rstrip("/"), *parts)


def get_fs(root: str, storage_cfg=None) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec filesystem for ``root`` and the root as that filesystem's path (no protocol)."""
    if is_s3(root):
        return _s3fs(root, _storage(storage_cfg)), root.split("://", 1)[1].rstrip("/")
    if is_gcs(root):
        return _gcsfs(_storage(storage_cfg)), root.split("://", 1)[1].rstrip("/")
    if is_url(root) and not root.startswith("file://"):
        fs, path = fsspec.core.url_to_fs(root)
        return fs, path.rstrip("/")
    path = absolute_location(root[len("file://") :] if root.startswith("file://") else root, follow_links=False)
    return fsspec.filesystem("file"), path


def open_url(url: str, mode: str = "rb", storage_cfg=None, **kwargs):
    """Open one file by URL or path through :func:`get_fs` (the project's endpoints, regions, credentials)."""
    fs, path = get_fs(url, storage_cfg)
    return fs.open(path, mode, **kwargs)


@contextlib.contextmanager
def local_copy(url: str, names: tuple[str, ...] | None = None, storage_cfg=None) -> Iterator[str]:
    """A local directory holding the files of ``url``: the path itself when local, else a temporary download
    of its files (only ``names`` when given, e.g. a checkpoint's model.json and its weights, not its
    optimizer shards: the first name must exist, the others are fetched where they exist), removed on exit."""
    if not is_object_store(url):
        yield url
        return
    import tempfile

    fs, base = get_fs(url, storage_cfg)
    with tempfile.TemporaryDirectory(prefix="clasp-download-") as tmp:
        with storage_errors(url, storage_cfg):
            found = [join(base, n) for n in names] if names else fs.find(base)
            if names and fs.exists(found[0]):
                found = [found[0]] + [path for path in found[1:] if fs.exists(path)]
            if not found or (names and not fs.exists(found[0])):
                raise FileNotFoundError(f"{url}: nothing to read there ({', '.join(names or ())})")
            for remote in found:
                dest = os.path.join(tmp, remote[len(base) :].lstrip("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                fs.get_file(remote, dest)
        yield tmp


def ensure_dir(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Create a local directory; nothing on object storage (no directories there, and s3fs/gcsfs
    ``makedirs`` would even create a missing bucket)."""
    if _is_local(fs):
        fs.makedirs(path, exist_ok=True)


def _s3fs(root: str, cfg):
    import s3fs

    config_kwargs = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
        "retries": {"max_attempts": cfg.retries, "mode": "standard"},
    }
    client_kwargs = {"region_name": bucket_region(root, cfg)}
    if endpoint_url(cfg):
        client_kwargs["endpoint_url"] = endpoint_url(cfg)
    return s3fs.S3FileSystem(
        anon=cfg.anon, client_kwargs=client_kwargs, config_kwargs=config_kwargs, skip_instance_cache=True
    )


def _gcsfs(cfg):
    """gcsfs's plain JSON-API filesystem with ``storage.retries`` attempts per request (gcsfs itself makes 6,
    about 30 s of backoff) and bounded timeouts. Credentials: ADC, or anonymous with ``storage.anon``."""
    cls = _gcs_class(max(1, cfg.retries))
    gcsfs_log = logging.getLogger("gcsfs")
    if gcsfs_log.level == logging.NOTSET:  # it logs a full traceback per failed request; StorageError says it once
        gcsfs_log.setLevel(logging.CRITICAL)
    project = cfg.gcs_project or os.environ.get("GOOGLE_CLOUD_PROJECT") or ""
    token = "anon" if cfg.anon else "google_default"
    return cls(
        project=project,
        token=token,
        endpoint_url=gcs_endpoint_url(cfg),
        skip_instance_cache=True,
        requests_timeout=READ_TIMEOUT_S,
        session_kwargs={"conn_timeout": CONNECT_TIMEOUT_S},
    )


_GCS_CLASS_PREFIX = "ClaspGCSFileSystem_retries"


@functools.cache
def _gcs_class(retries: int):
    # gcsfs.core.GCSFileSystem, not gcsfs.GCSFileSystem: the latter asks the Storage Control gRPC API for
    # every bucket's layout (a minute of timeouts against an emulator, and a permission most roles lack).
    from .. import compat

    base = compat.gcsfs_core_class()

    name = f"{_GCS_CLASS_PREFIX}{retries}"
    cls = type(
        name,
        (base,),
        {
            "__doc__": f"GCSFileSystem making at most {retries} attempt(s) per request.",
            "__module__": __name__,
            "_request": compat.gcsfs_request_with_retries(retries),
        },
    )
    globals()[name] = cls  # pickled by reference; __getattr__ below rebuilds it in another process
    return cls


def __getattr__(name: str):
    if name.startswith(_GCS_CLASS_PREFIX):
        return _gcs_class(int(name[len(_GCS_CLASS_PREFIX) :]))
    raise AttributeError(name)


def get_arrow_fs(root: str, storage_cfg=None):
    """``(pyarrow.fs.FileSystem, path)`` for Ray Data reads, Train checkpoints and Tune storage of ``root``."""
    import pyarrow.fs as pafs

    cfg = _storage(storage_cfg)
    path = root.split("://", 1)[1].rstrip("/") if is_url(root) else None
    if is_gcs(root):
        return _arrow_gcs(cfg), path
    if not is_s3(root):
        _, path = get_fs(root, storage_cfg)
        return pafs.LocalFileSystem(), path
    kwargs = {
        "region": bucket_region(root, cfg),
        "connect_timeout": CONNECT_TIMEOUT_S,
        "request_timeout": READ_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max(1, cfg.retries)),
    }
    url = endpoint_url(cfg)
    if url:
        parsed = urlparse(url)
        kwargs.update(endpoint_override=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme or "https")
    if cfg.anon:
        kwargs["anonymous"] = True
    # No credentials are passed: this filesystem is pickled to every Ray worker, and a key copied here
    # would be the head's session, frozen until it expires. Each process that unpickles it resolves its
    # own through the AWS SDK's provider chain (env, profile, web identity / IRSA, EKS Pod Identity,
    # instance profile), which also refreshes temporary credentials.
    return pafs.S3FileSystem(**kwargs), path


def _arrow_gcs(cfg):
    import pyarrow.fs as pafs

    kwargs = {
        "anonymous": bool(cfg.anon),
        "retry_time_limit": datetime.timedelta(seconds=GCS_RETRY_S_PER_ATTEMPT * max(1, cfg.retries)),
    }
    url = gcs_endpoint_url(cfg)
    if url:
        parsed = urlparse(url)
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
    project = cfg.gcs_project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if project:
        kwargs["project_id"] = project
    return pafs.GcsFileSystem(**kwargs)


@contextlib.contextmanager
def storage_errors(root: str, storage_cfg=None) -> Iterator[None]:
    """Re-raise SDK connection/permission errors as :class:`StorageError` naming root and endpoint."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised otherwise
        error = storage_error(exc, root, storage_cfg)
        if error is None:
            raise
        raise error from exc


def storage_error(exc: BaseException, root: str, storage_cfg=None) -> StorageError | None:
    """A :class:`StorageError` naming root and endpoint for an SDK connection/permission error, else None."""
    kind = _classify(
        exc, "Google (GOOGLE_APPLICATION_CREDENTIALS or the node's service account)" if is_gcs(root) else "S3"
    )
    if kind is None:
        return None
    endpoint = endpoint_url(storage_cfg) if is_s3(root) else gcs_endpoint_url(storage_cfg) if is_gcs(root) else None
    where = f"root {root!r}" + (f" (endpoint {endpoint})" if endpoint else "")
    error = StorageError(f"{kind} for {where}: {type(exc).__name__}: {_short(exc)}")
    error.__cause__ = exc
    return error


_REFUSED_CODE = re.compile(r"(?<![\d.:])40[13](?![\d.])")  # an HTTP status, never part of a port or address
_REFUSED = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "Forbidden",
    "Unauthorized",
    "NoCredentialsError",
    "Unable to locate credentials",
    "ExpiredToken",
    "RefreshError",
    "DefaultCredentialsError",
    "invalid_grant",
    "invalid_client",
    "Invalid Credentials",
)
_UNREACHABLE = (
    "EndpointConnectionError",
    "ConnectTimeout",
    "Could not connect",
    "Connection refused",
    "ConnectionError",
    "ClientConnectorError",
    "Name or service not known",
    "connect timeout",
    "Failed to connect",
    "Cannot connect to host",
    "ServerDisconnectedError",
    "Couldn't connect",
)


def _classify(exc: BaseException, credentials: str = "S3") -> str | None:
    text = f"{type(exc).__name__} {exc}"
    if isinstance(exc, PermissionError) or _REFUSED_CODE.search(text) or any(s in text for s in _REFUSED):
        return f"access refused (check the {credentials} credentials)"
    if any(s in text for s in _UNREACHABLE):
        return "storage unreachable (check the endpoint URL and that the server is up)"
    if any(s in text for s in ("NoSuchBucket", "bucket does not exist", "The specified bucket does not exist")):
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
