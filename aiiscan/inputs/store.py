"""Object-store inputs: ``s3://``, ``gs://``, ``az://``/``abfs://`` URLs (and ``http(s)://`` in lists).

A source (``inputs.SOURCES``): it claims URLs of the schemes below as ``StoreObject``s, lists a
prefix as a stream, stats an object (size, mtime, ETag or version id) and reads its bytes under
a size cap, with bounded retries.

Why fsspec (with s3fs, gcsfs, adlfs) and not ``pyarrow.fs``:

- ``pyarrow.fs.FileInfo`` carries size and mtime only: no ETag, no version id, no generation.
  ``--incremental`` on a bucket needs the ETag (an object rewritten within one second, or by a
  tool that restores mtimes, keeps size and mtime). fsspec backends return the store's own
  metadata (``ETag``, ``VersionId``, ``generation``, ``etag``) from ``info``.
- pyarrow.fs has no Azure ``az://``/``abfs://`` in older releases and no ``http(s)://`` at all;
  fsspec has all of them, and is what the archive tools our users run already read through
  (img2dataset, clip-retrieval, WebDataset), so their URLs and credentials work unchanged.
- pyarrow's ``get_file_info(FileSelector(recursive=True))`` returns the whole listing as one
  list; fsspec exposes the store's paginated listing, so a listing streams page by page.
- fsspec is already installed with the base install (torch depends on it); only the thin
  backend (s3fs, gcsfs, adlfs) is an optional extra. Nothing here imports fsspec until a URL
  is actually used, so local scans stay as light as before.

Credentials come only from each backend's standard chain (environment, profile, instance role,
``gcloud``/Azure CLI login); an S3-compatible endpoint from the standard ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``) variable. No option of ours takes a secret, so none can land in
shell history or in a report's metadata.

Retries: backends retry on their own in ways that multiply (botocore's retry modes times
s3fs's own loop). We switch both off for S3 and retry in one place (``call``): throttling
(HTTP 503 SlowDown, 429), 5xx, timeouts and dropped connections are retried with exponential
backoff and jitter, at most ``AIISCAN_STORE_ATTEMPTS`` attempts (default 4); a missing object
or an access denied is final at once. What is left becomes a ``StoreError`` with a one-line
reason, which the decode stage writes into the file's row.
"""

from __future__ import annotations

import errno
import io
import os
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO, ClassVar, TypeVar

from ..textsafe import display_path, path_from_display
from .location import Crawl, Entry, EntryStat, ListingLost, Location, SourceError, mtime_us_of_seconds

T = TypeVar("T")

# URL scheme -> (the fsspec protocol, the extra that installs its backend)
SCHEMES: dict[str, tuple[str, str]] = {
    "s3": ("s3", "s3"), "s3a": ("s3", "s3"),
    "gs": ("gcs", "gcs"), "gcs": ("gcs", "gcs"),
    "az": ("az", "azure"), "abfs": ("abfs", "azure"), "abfss": ("abfs", "azure"),
    "http": ("http", "http"), "https": ("https", "http"),
}
LISTABLE = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})  # http(s): objects only
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


TRANSIENT = frozenset({"throttled", "timeout", "connection", "server"})  # retried, then given up


class StoreError(SourceError):
    """A store request that failed for good. ``str(exc)`` is the one-line reason for the row;
    ``kind``: missing, denied, throttled, timeout, connection, server, too-big, changed,
    config, other."""

    def __init__(self, reason: str, kind: str = "other"):
        super().__init__(reason)
        self.kind = kind


NOTHING_THERE = "no such object or prefix in the store"


class NothingListed(StoreError):
    """A prefix under which the store lists nothing at all (not even a folder marker): most
    often a typo in the URL, which must not pass as an empty scan."""

    def __init__(self) -> None:
        super().__init__(NOTHING_THERE, "missing")


def scheme(path: str) -> str | None:
    """The URL scheme we handle (lower case), or None for a local path."""
    m = _URL.match(path)
    if m is None:
        return None
    s = m.group(1).lower()
    return s if s in SCHEMES else None


def is_url(path: str) -> bool:
    return scheme(path) is not None


_PAIRED_COLON = re.compile(r":(?=:)|(?<=:):")


@dataclass(frozen=True)
class StoreObject(Location):
    """An object (or, as a root, a prefix) in a store, by its URL: ``scheme://bucket/key``. The
    key is whatever the store listed, never split again: ``::``, ``?versionId=``, ``#``, ``%``
    in it are its own (an S3 object is read by bucket and key, never through a parsed path)."""

    url: str
    source: ClassVar[str] = "store"

    @property
    def raw(self) -> str:
        return self.url

    def display(self) -> str:
        """The report's ``path``: the URL as ``textsafe.display_path`` shows names, with each
        colon of a ``::`` in the key shown as ``\\x3a``, so that an object whose key holds
        ``s.tar::m.jpg`` and the member ``m.jpg`` of the object ``s.tar`` never share a path
        (``::`` in a path is always the archive-member separator). ``from_display`` undoes it."""
        return _PAIRED_COLON.sub(r"\\x3a", display_path(self.url))


def claim(raw: str) -> StoreObject | None:
    return StoreObject(raw) if is_url(raw) else None


def from_display(shown: str) -> StoreObject | None:
    """The object a report ``path`` names (``StoreObject.display`` undone)."""
    return StoreObject(path_from_display(shown)) if is_url(shown) else None


def s3_key(url: str) -> tuple[str, str] | None:
    """(bucket, key) of an ``s3://`` URL: split once, at the first ``/`` after the bucket, the
    key kept exactly (a leading ``/``, ``..``, ``?``, ``#``, ``%`` and spaces are its own).
    None for other stores."""
    s = scheme(url)
    if s is None or SCHEMES[s][0] != "s3":
        return None
    bucket, _, key = url.split("://", 1)[1].partition("/")
    return bucket, key


# ---------------------------------------------------------------------------------------------
# Retry policy

@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # in all, the first included
    base_delay: float = 0.5  # seconds; doubles per attempt, with jitter
    max_delay: float = 8.0
    timeout: float = 60.0  # connect and read time-out of one request

    @classmethod
    def from_env(cls) -> RetryPolicy:
        env = os.environ
        return cls(attempts=max(1, int(env.get("AIISCAN_STORE_ATTEMPTS", cls.attempts))),
                   base_delay=float(env.get("AIISCAN_STORE_BACKOFF", cls.base_delay)),
                   max_delay=float(env.get("AIISCAN_STORE_MAX_BACKOFF", cls.max_delay)),
                   timeout=float(env.get("AIISCAN_STORE_TIMEOUT", cls.timeout)))


_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                   "TooManyRequests", "TooManyRequestsException", "RequestThrottled",
                   "ServiceUnavailable", "503", "429"}
_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NotFound", "404", "BlobNotFound",
                  "ContainerNotFound", "ResourceNotFound"}
_DENIED_CODES = {"AccessDenied", "Forbidden", "403", "401", "InvalidAccessKeyId",
                 "SignatureDoesNotMatch", "ExpiredToken", "AuthorizationFailure",
                 "AuthenticationFailed", "AllAccessDisabled"}
_CONNECTION_NAMES = ("ConnectionClosed", "EndpointConnection", "ServerDisconnected",
                     "ClientPayloadError", "IncompleteRead", "RemoteDisconnected", "ProtocolError",
                     "ClientOSError", "ConnectionError", "ConnectionReset", "ClientConnectorError",
                     "ServerConnectionError")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < 10:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _http_facts(exc: BaseException) -> tuple[str | None, int | None]:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = (response.get("Error") or {}).get("Code")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return (str(code) if code else None), status
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)  # aiohttp, azure
    code = getattr(exc, "error_code", None)
    return (str(code) if code else None), (status if isinstance(status, int) else None)


def classify(exc: BaseException) -> tuple[str, bool, str]:
    """(kind, retryable, detail) of a backend exception, looking through its causes."""
    for e in _chain(exc):
        code, status = _http_facts(e)
        if code in _THROTTLE_CODES or status in (429, 503):
            return "throttled", True, f"HTTP {status or '?'} {code or ''}".strip()
        if isinstance(e, FileNotFoundError) or code in _MISSING_CODES or status == 404:
            return "missing", False, ""
        if isinstance(e, PermissionError) or code in _DENIED_CODES or status in (401, 403):
            return "denied", False, ""
        if status is not None and 500 <= status < 600:
            return "server", True, f"HTTP {status} {code or ''}".strip()
        names = [t.__name__ for t in type(e).__mro__]
        if isinstance(e, TimeoutError) or any("Timeout" in n for n in names):
            return "timeout", True, ""
        if isinstance(e, ConnectionError) or any(c in n for n in names for c in _CONNECTION_NAMES):
            return "connection", True, type(e).__name__
        if isinstance(e, OSError) and e.errno == errno.EBUSY:  # s3fs's SlowDown translation
            return "throttled", True, "HTTP 503"  # s3fs maps only 503 answers to EBUSY
    return "other", False, f"{type(exc).__name__}: {exc}"


def _reason(kind: str, detail: str, attempts: int) -> str:
    after = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
    return {
        "missing": "no such object in the store (missing, or deleted before it could be read)",
        "denied": "access denied by the store (check the credentials of the backend's chain)",
        "throttled": f"store throttled the requests ({detail}){after}",
        "timeout": f"store request timed out{after}",
        "connection": f"connection to the store lost ({detail}){after}",
        "server": f"store server error ({detail}){after}",
    }.get(kind, "store error: " + " ".join(detail.split())[:300])


def call(fn: Callable[[], T], policy: RetryPolicy | None = None,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()`` with bounded retries: throttling, 5xx, timeouts and lost connections are retried
    with exponential backoff and full jitter; anything else, or the last failure, is raised as
    a ``StoreError`` with a one-line reason."""
    pol = policy or RetryPolicy.from_env()
    for attempt in range(1, pol.attempts + 1):
        try:
            return fn()
        except StoreError:
            raise
        except Exception as exc:
            kind, retry, detail = classify(exc)
            if not retry or attempt >= pol.attempts:
                raise StoreError(_reason(kind, detail, attempt), kind) from exc
            sleep(random.uniform(0, min(pol.max_delay, pol.base_delay * 2 ** (attempt - 1))))
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# File systems

_FS_LOCK = threading.Lock()


def filesystem(url: str) -> Any:
    """The fsspec file system for ``url``'s scheme, configured for bounded, single-layer retries
    and the ``AWS_ENDPOINT_URL`` endpoint. fsspec caches instances per process and argument set
    (and drops them after a fork)."""
    s = scheme(url)
    if s is None:
        raise StoreError(f"not a URL this scanner reads: {url[:80]}", "config")
    protocol, extra = SCHEMES[s]
    hint = f"{s}:// URLs need the optional backend: pip install 'aiiscan[{extra}]'"
    try:
        import fsspec
    except ImportError as exc:
        raise StoreError(hint, "config") from exc
    pol = RetryPolicy.from_env()
    kwargs: dict[str, Any] = {"use_listings_cache": False}
    if protocol == "s3":
        kwargs |= {"config_kwargs": {
            "connect_timeout": pol.timeout, "read_timeout": pol.timeout,
            "retries": {"max_attempts": 1, "mode": "standard"}}}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            kwargs["endpoint_url"] = endpoint
    elif protocol in ("http", "https"):
        try:
            import aiohttp
        except ImportError as exc:
            raise StoreError(hint, "config") from exc
        kwargs["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(total=pol.timeout)}
    try:
        with _FS_LOCK:
            fs = fsspec.filesystem(protocol, **kwargs)
    except (ImportError, ValueError) as exc:
        raise StoreError(hint, "config") from exc
    if protocol == "s3":
        fs.retries = 1  # s3fs's own retry loop (a class attribute, not an argument): one attempt
    return fs


def _mtime_us(info: dict) -> int | None:
    for key in ("LastModified", "last_modified", "updated", "mtime", "Last-Modified", "modified"):
        value = info.get(key)
        if value in (None, ""):
            continue
        if isinstance(value, (int, float)):
            return mtime_us_of_seconds(value)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                from email.utils import parsedate_to_datetime
                try:
                    value = parsedate_to_datetime(value)
                except (TypeError, ValueError):
                    continue
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
            return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return None


def _etag(info: dict) -> str | None:
    for key in ("ETag", "etag", "VersionId", "version_id", "generation", "md5Hash", "Content-MD5"):
        value = info.get(key)
        if value not in (None, "", "null"):
            return str(value).strip('"')
    return None


def stat_of(info: dict) -> EntryStat:
    size = info.get("size", info.get("Size", info.get("ContentLength")))
    return EntryStat(int(size) if size is not None else None, _mtime_us(info), _etag(info))


# Listing results already carry size, mtime and ETag: the driver stats each listed object right
# after the crawl yields it, so a small bounded cache saves one HEAD request per object.
_LISTED: OrderedDict[str, EntryStat] = OrderedDict()
_LISTED_MAX = 65_536


def _remember(url: str, st: EntryStat) -> None:
    with _FS_LOCK:
        _LISTED[url] = st
        _LISTED.move_to_end(url)
        while len(_LISTED) > _LISTED_MAX:
            _LISTED.popitem(last=False)


def _info(url: str) -> dict:
    """What the store says of an object: on S3 a HEAD of exactly its bucket and key (``fs.info``
    would parse ``?versionId=`` out of the key), elsewhere the backend's ``info``."""
    fs = filesystem(url)
    where = s3_key(url)
    if where is None:
        return call(lambda: fs.info(url))
    bucket, key = where
    return call(lambda: fs.call_s3("head_object", Bucket=bucket, Key=key))


def stat_url(url: str, fresh: bool = False) -> EntryStat:
    """Size, mtime (µs) and ETag/version id of an object. ``fresh=False`` may answer from the
    listing that just yielded the URL."""
    if not fresh:
        with _FS_LOCK:
            hit = _LISTED.get(url)
        if hit is not None:
            return hit
    info = _info(url)
    if info.get("type") == "directory":
        raise StoreError("is a prefix (a folder), not an object", "missing")
    return stat_of(info)


def url_kind(url: str) -> str:
    """"file", "directory" (a prefix with objects under it) or "missing"."""
    if scheme(url) not in LISTABLE:
        return "file"
    try:
        info = _info(url)
    except StoreError as exc:
        if exc.kind != "missing":
            raise
        where = s3_key(url)
        if where is None:
            return "missing"
        fs, (bucket, key) = filesystem(url), where
        try:  # no object of that key: a prefix with objects under it, or nothing (no bucket either)
            out = call(lambda: fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key + "/", MaxKeys=1))
        except StoreError as missing:
            if missing.kind != "missing":
                raise
            return "missing"
        return "directory" if out.get("Contents") else "missing"
    return "directory" if info.get("type") == "directory" else "file"


def put_file(local: str | os.PathLike, url: str) -> None:
    """Upload the local file ``local`` to ``url`` whole, with bounded retries. On S3 this is one
    PUT, or for a large file a multipart upload that becomes visible only when completed: the
    object appears complete or not at all, never half-written."""
    if scheme(url) not in LISTABLE:
        raise StoreError(f"cannot write to {scheme(url)}:// URLs (s3, gs, az/abfs only)", "config")
    fs = filesystem(url)
    call(lambda: fs.put_file(os.fspath(local), url))
    with _FS_LOCK:
        _LISTED.pop(url, None)


def get_file(url: str, local: str | os.PathLike) -> None:
    """Download ``url`` whole to the local file ``local``, with bounded retries."""
    fs = filesystem(url)
    call(lambda: fs.get_file(url, os.fspath(local)))


def read_object(url: str, max_bytes: int) -> tuple[bytes, EntryStat]:
    """An object's bytes (at most ``max_bytes``) and its stat, with bounded retries."""
    fs = filesystem(url)
    info = _info(url)
    if info.get("type") == "directory":
        raise StoreError("is a prefix (a folder), not an object", "missing")
    st = stat_of(info)
    if st.size is not None and st.size > max_bytes:
        raise StoreError(f"object of {st.size} bytes exceeds the size cap {max_bytes}", "too-big")
    where = s3_key(url)

    def fetch() -> bytes:
        if st.size == 0:
            return b""
        if where is not None:  # by bucket and key, the version the HEAD saw when there is one
            return _s3_range(fs, *where, 0, st.size or 0, info.get("VersionId"))
        if st.size is not None:  # a ranged GET: no second HEAD, never past the listed size
            return fs.cat_file(url, start=0, end=st.size)
        with fs.open(url, "rb") as f:  # no length known (some HTTP servers): read under the cap
            return f.read(max_bytes + 1)

    data = call(fetch)
    if len(data) > max_bytes:
        raise StoreError(f"object grew past the size cap {max_bytes} while being read", "too-big")
    if st.size is not None and len(data) != st.size:
        raise StoreError(f"object changed while being read ({st.size} bytes listed, "
                         f"{len(data)} read)", "changed")
    return data, st


def _s3_range(fs: Any, bucket: str, key: str, start: int, end: int, version: str | None = None) -> bytes:
    """Bytes ``[start, end)`` of an S3 object named by bucket and key (one ranged GET)."""
    from s3fs.core import _fetch_range  # s3fs's ranged read by bucket and key, body read included

    return _fetch_range(fs, bucket, key, version, start, end)


class _S3Ranges(io.RawIOBase):
    """A seekable, read-only view of one S3 object by bucket and key: each read is a ranged GET
    with bounded retries (``call``); ``io.BufferedReader`` in front batches small reads."""

    def __init__(self, fs: Any, bucket: str, key: str, size: int, version: str | None):
        super().__init__()
        self.fs, self.bucket, self.key, self.size, self.version = fs, bucket, key, size, version
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        end = min(self.size, self.pos + len(buffer))
        if end <= self.pos:
            return 0
        data = call(lambda: _s3_range(self.fs, self.bucket, self.key, self.pos, end, self.version))
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)


def open_object(url: str) -> Any:
    """A seekable binary file object on an object (for archives kept in a store); range
    requests fetch what is read. An S3 object is named by bucket and key."""
    fs = filesystem(url)
    where = s3_key(url)
    if where is None:
        return call(lambda: fs.open(url, "rb"))
    info = _info(url)
    raw = _S3Ranges(fs, *where, int(info.get("ContentLength") or 0), info.get("VersionId"))
    return io.BufferedReader(raw, buffer_size=1 << 20)


def iter_prefix(url: str, page: int | None = None) -> Iterator[str]:
    """Every object under a prefix, as URLs, streaming: one page of the store's listing in
    memory at a time. S3: one flat paginated ListObjectsV2 in key order (UTF-8 binary order,
    the same for every run); other stores: a walk that sorts each level, like the local crawl.
    A page that fails after the retries raises ``StoreError``; a prefix (not a bucket's root)
    under which nothing at all is listed raises ``NothingListed`` once the listing ends.
    ``page``: keys per request (default ``$AIISCAN_STORE_PAGE`` or 1000)."""
    page = page or int(os.environ.get("AIISCAN_STORE_PAGE", "1000"))
    s = scheme(url)
    if s not in LISTABLE:
        raise StoreError(f"{s}:// cannot be listed: name each object in a list (--from-list)",
                         "config")
    fs = filesystem(url)
    if SCHEMES[s][0] == "s3":
        yield from _iter_s3(fs, url, s, page)
        return
    yield from _walk_root(fs, url.rstrip("/"), s)


def _iter_s3(fs: Any, url: str, s: str, page: int) -> Iterator[str]:
    path = fs._strip_protocol(url)
    bucket, _, key = path.partition("/")
    if key and not key.endswith("/"):
        key += "/"  # s3://b/photos lists photos/..., never photos2/...
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key, "MaxKeys": page}
    listed = False  # a folder marker counts: the "folder" exists, as an empty local one would
    while True:
        out = call(lambda kw=dict(kwargs): fs.call_s3("list_objects_v2", **kw))
        listed = listed or bool(out.get("Contents"))
        for obj in out.get("Contents", []):
            name = obj["Key"]
            if name.endswith("/") and not obj.get("Size"):  # an empty "folder" marker object
                continue
            full = f"{s}://{bucket}/{name}"
            _remember(full, stat_of(obj))
            yield full
        if not out.get("IsTruncated"):
            break
        kwargs["ContinuationToken"] = out["NextContinuationToken"]
    if key and not listed:  # a bucket's root that lists without error exists, even when empty
        raise NothingListed


def _walk_root(fs: Any, url: str, s: str) -> Iterator[str]:
    """``_walk_generic`` from a root, which must exist: backends answer a listing of a missing
    prefix with nothing or with "not found", and either is ``NothingListed``, as on S3."""
    try:
        items = call(lambda: fs.ls(url, detail=True))
    except StoreError as exc:
        if exc.kind == "missing":
            raise NothingListed from exc
        raise
    if not items and "/" in fs._strip_protocol(url).strip("/"):  # a bucket's root may be empty
        raise NothingListed
    yield from _walk_generic(fs, url, s, items)


def _walk_generic(fs: Any, url: str, s: str, items: list[dict] | None = None) -> Iterator[str]:
    if items is None:
        items = call(lambda: fs.ls(url, detail=True))
    for info in sorted(items, key=lambda i: i["name"]):
        full = f"{s}://{fs._strip_protocol(info['name'])}"
        if info.get("type") == "directory":
            if full.rstrip("/") != url:
                yield from _walk_generic(fs, full.rstrip("/"), s)
        else:
            _remember(full, stat_of(info))
            yield full


# ---------------------------------------------------------------------------------------------
# The source interface (``inputs``)

def expand(loc: StoreObject, crawl: Crawl) -> Iterator[Entry]:
    """A URL named by the user: a prefix as the objects under it, an object as itself. A listing
    cut off by a transient failure raises ``ListingLost``; denied or missing is an error entry,
    and so is a prefix under which nothing at all is listed."""
    raw = loc.url
    if scheme(raw) not in LISTABLE:  # http(s): one object per line
        yield Entry(loc, explicit=True)
        return
    try:
        # A list line is an object unless it ends with "/" (no request per line); a root is
        # asked: object, prefix, or nothing.
        if raw.endswith("/") or raw.rstrip("/").count("/") == 2:  # ".../" or "s3://bucket"
            kind = "directory"
        else:
            kind = "file" if crawl.in_list else url_kind(raw)
    except StoreError as exc:
        if exc.kind in TRANSIENT:
            raise ListingLost(f"cannot reach {raw}: {exc}") from None
        yield Entry(loc, explicit=True, skip=str(exc))
        return
    if kind == "missing":
        yield Entry(loc, explicit=True, skip=NOTHING_THERE)
    elif kind == "file":
        yield Entry(loc, explicit=True)
    else:
        try:
            for url in iter_prefix(raw):
                yield Entry(StoreObject(url))
        except NothingListed as exc:  # a typo'd prefix: an error row, as a missing object
            yield Entry(loc, explicit=True, skip=str(exc))
        except StoreError as exc:
            if exc.kind in TRANSIENT:
                raise ListingLost(f"the listing of {raw} was cut off: {exc}") from None
            yield Entry(loc, explicit=True, skip=f"cannot list the prefix: {exc}")


def exists(loc: StoreObject) -> bool:  # noqa: ARG001
    """Not asked before the crawl: a missing root comes out of it as an error row (a request
    per root before the model loads would buy little)."""
    return True


def is_regular(loc: StoreObject) -> bool:  # noqa: ARG001
    return True


def stat(loc: StoreObject) -> EntryStat:
    return stat_url(loc.url)


def read(loc: StoreObject, max_bytes: int) -> tuple[bytes, EntryStat]:
    return read_object(loc.url, max_bytes)


def open_seekable(loc: StoreObject) -> tuple[BinaryIO, int | None, str]:
    st = stat_url(loc.url, fresh=True)
    return open_object(loc.url), st.size, f"etag:{st.etag}"


def version_tag(loc: StoreObject) -> None:  # noqa: ARG001
    """None: a cached archive in a store is checked again by time instead (a HEAD request per
    member would double the requests)."""
    return None
