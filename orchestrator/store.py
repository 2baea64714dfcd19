"""The result store: one object, chosen by URI, over a local folder or ``s3://bucket/prefix``.

Code takes a ``ResultStore`` and relative keys (``"run1/embeddings/<unit key>.parquet"``), never
paths. Both backends go through ``pyarrow.fs``, so ``pyarrow.dataset`` readers can be handed the
same filesystem (``filesystem_and_path``).

What the store guarantees, and what it leaves to its callers:

- Every write is all-or-nothing. Local: a hidden temp file in the same folder, then a rename. S3:
  the bytes are built in memory first and sent as one object (a ``PutObject``; multipart only past
  pyarrow's part size), so a reader never sees half an object. Keys are the caller's and
  deterministic, so a retried write replaces the same object and can never duplicate rows.
- Transient S3 failures (connection refused or reset while a server restarts, timeouts, 5xx,
  throttling) are retried with bounded exponential backoff (``RetryPolicy``, 60 s by default).
  Rejected credentials and missing buckets are not retried: they become a ``StoreError`` that
  names the URI and the fix.
- It is not the commit protocol: "data first, marker last" and manifests belong to the caller.

Messages, ``uri``, ``repr`` never contain credentials.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator import s3
from orchestrator.s3 import Fault, StoreError

__all__ = ["ResultStore", "RetryPolicy", "StoreError", "open_store"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")  # local temp files, see ResultStore._put


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep retrying transient S3 failures.

    Attributes:
        total_s: give up once the next wait would pass this many seconds since the first attempt.
        first_delay_s: the first wait; each later wait doubles, up to ``max_delay_s``, with jitter.
        max_delay_s: the longest single wait.
    """

    total_s: float = 60.0
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0


def open_store(
    uri: str,
    *,
    s3_endpoint: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    region: str | None = None,
    retry: RetryPolicy | None = None,
) -> ResultStore:
    """Open the result store at ``uri``. Nothing is contacted or created yet (see ``check_writable``).

    Args:
        uri: a folder (``results``, ``/abs/path``, ``file:///abs/path``) or ``s3://bucket[/prefix]``.
            Credentials inside the URI are refused.
        s3_endpoint: an S3-compatible server, e.g. ``http://127.0.0.1:8333``; default
            ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``, then AWS itself.
        access_key, secret_key, session_token: explicit credentials; default the standard AWS chain
            (environment, ``~/.aws``, instance profile).
        region: default ``AWS_REGION``/``AWS_DEFAULT_REGION``; ``us-east-1`` for a custom endpoint;
            for AWS, the bucket's own region.
        retry: the transient-failure policy for S3 (ignored for local folders).

    Raises:
        StoreError: the URI or the options cannot describe a store.
    """
    retry = retry or RetryPolicy()
    if uri.startswith("s3://"):
        loc = s3.parse_s3_uri(uri)
        endpoint = s3.resolve_endpoint(s3_endpoint)
        region = s3.resolve_region(region, loc.bucket, endpoint)
        creds = {"access_key": access_key, "secret_key": secret_key, "session_token": session_token}
        fs = s3.make_filesystem(endpoint=endpoint, region=region, **creds)
        url = endpoint.url if endpoint else None
        return ResultStore(
            uri=loc.uri,
            filesystem=fs,
            root=loc.root,
            endpoint=url,
            retry=retry,
            reopen={"s3_endpoint": url, "region": region, "retry": retry, **creds},
            secrets=tuple(creds.values()),
        )
    root = _local_root(uri)
    return ResultStore(
        uri=root,
        filesystem=pafs.LocalFileSystem(),
        root=root.rstrip("/"),
        endpoint=None,
        retry=retry,
        reopen={"retry": retry},
    )


def _local_root(uri: str) -> str:
    """The absolute folder named by a plain path or a ``file://`` URI."""
    if not uri:
        raise StoreError("the results URI is empty; give a folder or s3://bucket/prefix")
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"{uri}: file:// URIs must name a local path, e.g. file:///data/results")
        path = unquote(parts.path)
    elif parts.scheme:
        raise StoreError(f"{uri}: unsupported scheme {parts.scheme!r}; use a local folder or s3://bucket/prefix")
    else:
        path = uri
    return os.path.abspath(os.path.expanduser(path))


def _reopen(uri: str, options: dict[str, Any]) -> ResultStore:
    return open_store(uri, **options)


class ResultStore:
    """Objects under one root, addressed by relative keys. Build it with ``open_store``."""

    def __init__(
        self,
        *,
        uri: str,
        filesystem: pafs.FileSystem,
        root: str,
        endpoint: str | None,
        retry: RetryPolicy,
        reopen: dict[str, Any],
        secrets: Sequence[str | None] = (),
    ) -> None:
        self.uri = uri
        self.endpoint = endpoint
        self.retry = retry
        self.filesystem = filesystem
        self.is_local = isinstance(filesystem, pafs.LocalFileSystem)
        self._root = root
        self._reopen = reopen
        self._secrets = tuple(secrets)

    def __repr__(self) -> str:
        at = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"ResultStore({self.uri!r}{at})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Re-open on unpickling (Ray workers) rather than pickling pyarrow's filesystem; credentials
        # travel only if they were given explicitly, otherwise each worker uses its own AWS chain.
        return (_reopen, (self.uri, self._reopen))

    def sibling(self, uri: str) -> "ResultStore":
        """Another location (a dataset root ``s3://bucket/prefix`` or a folder) opened with this store's
        endpoint, explicit credentials and retry policy (the region is resolved for its own bucket)."""
        options = {k: v for k, v in self._reopen.items() if k != "region"}
        return open_store(uri, **options)

    # -- keys -----------------------------------------------------------------------------------
    @staticmethod
    def join(*parts: str) -> str:
        """Join key parts with ``/``: ``join("run1", "tasks", "a.parquet") == "run1/tasks/a.parquet"``."""
        key = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
        return s3.check_relative(key)

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (a bucket-qualified key on S3, an absolute path locally)."""
        s3.check_relative(key, uri=self.uri)
        if not key:
            return self._root or "/"
        return f"{self._root}/{key}"

    def filesystem_and_path(self, key: str = "") -> tuple[pafs.FileSystem, str]:
        """``(filesystem, path)`` for handing ``key`` to ``pyarrow.dataset``/``pyarrow.parquet``."""
        return self.filesystem, self.path(key)

    # -- bytes ----------------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes | pa.Buffer) -> None:
        """Store ``data`` at ``key`` in one piece, replacing what was there."""
        path = self.path(key)
        self._call("write", key, lambda: self._put(path, data))

    def read_bytes(self, key: str) -> bytes:
        """The whole object at ``key``. Raises ``FileNotFoundError`` if there is none."""
        path = self.path(key)

        def get() -> bytes:
            with self.filesystem.open_input_stream(path) as stream:
                return stream.read()

        return self._call("read", key, get)

    def _put(self, path: str, data: bytes | pa.Buffer) -> None:
        if not self.is_local:
            with self.filesystem.open_output_stream(path) as out:
                out.write(data)
            return
        parent, name = path.rsplit("/", 1)
        self.filesystem.create_dir(parent or "/", recursive=True)
        # Hidden and in the same folder: the rename is atomic, and pyarrow.dataset skips '.' files.
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            with self.filesystem.open_output_stream(tmp) as out:
                out.write(data)
            self.filesystem.move(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.filesystem.delete_file(tmp)
            raise

    # -- tables and JSON ------------------------------------------------------------------------
    def write_table(self, key: str, table: pa.Table) -> None:
        """Write ``table`` as one Parquet object; its schema and schema metadata are kept.

        Lists are written with Arrow's own child name (``item``): pyarrow's default, Parquet's
        "compliant" ``element``, would come back as a different schema from ``pa.list_(t)``.
        """
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, use_compliant_nested_type=False)
        self.write_bytes(key, sink.getvalue())

    def read_table(self, key: str, *, columns: Sequence[str] | None = None) -> pa.Table:
        """Read the Parquet object at ``key`` (schema metadata included)."""
        data = self.read_bytes(key)
        return pq.read_table(pa.BufferReader(data), columns=list(columns) if columns else None)

    def read_dataset(self, source: str | Sequence[str], *, schema: pa.Schema | None = None) -> ds.Dataset:
        """A Parquet dataset over a folder prefix (every file below it) or an explicit list of keys.

        Files whose names start with ``.`` or ``_`` (temp files, ``_done/`` markers, manifests) are
        skipped when a prefix is given. Pass ``schema`` to read with the code's schema instead of
        the first file's. Listing is retried like any call; the lazy reads later are pyarrow's own.
        """
        if isinstance(source, str):
            target: str | list[str] = self.path(source.rstrip("/"))
            key = source
        else:
            target = [self.path(k) for k in source]
            key = f"{len(target)} keys"
        return self._call(
            "open a dataset at",
            key,
            lambda: ds.dataset(target, filesystem=self.filesystem, format="parquet", schema=schema),
        )

    def write_json(self, key: str, obj: Any) -> None:
        """Write ``obj`` as indented, key-sorted UTF-8 JSON."""
        text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        self.write_bytes(key, text.encode())

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    # -- listing --------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        """Whether an object (a file, not a folder) is stored at ``key``."""
        path = self.path(key)
        info = self._call("look up", key, lambda: self.filesystem.get_file_info(path))
        return info.type == pafs.FileType.File

    def list(self, prefix: str = "") -> list[str]:
        """Every object below the folder ``prefix``, recursively, as sorted keys relative to the root.

        ``prefix`` is a folder: ``list("run1/tasks")`` does not match ``run1/tasks2/...``. A missing
        prefix lists as empty. A trailing ``/`` is allowed.
        """
        base = self.path(prefix.rstrip("/"))
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        try:
            infos = self._call("list", prefix, lambda: self.filesystem.get_file_info(selector))
        except NotADirectoryError:
            return []
        cut = len(self._root) + 1
        keys = [
            info.path[cut:]
            for info in infos
            if info.type == pafs.FileType.File and not (self.is_local and _TMP_RE.match(info.base_name))
        ]
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove the object at ``key``; a missing object is not an error."""
        path = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", key, lambda: self.filesystem.delete_file(path))

    # -- checks ---------------------------------------------------------------------------------
    def check_writable(self, *, retry_s: float = 5.0) -> None:
        """Fail early, with a message that says what to fix, if the store cannot be written.

        Writes and deletes a probe object (creating the local folder if needed); on S3 also checks
        that the bucket exists and that the credentials may list it.

        Args:
            retry_s: how long to retry transient S3 failures here (shorter than for ordinary calls:
                an endpoint that is down at launch is more likely wrong than restarting).

        Raises:
            StoreError: naming the URI (and endpoint) and the fix; never containing credentials.
        """
        probe = f"_write_check.{uuid.uuid4().hex[:12]}"
        if self.is_local:
            try:
                self.filesystem.create_dir(self._root or "/", recursive=True)
                self._put(self.path(probe), b"ok")
                self.filesystem.delete_file(self.path(probe))
            except OSError as exc:
                raise StoreError(
                    f"cannot write to the results folder {self.uri}: {_reason(exc)}. Choose a folder "
                    "you can write to (--results PATH) or fix its owner, mode or mount."
                ) from exc
            return
        policy = replace(self.retry, total_s=retry_s)
        bucket = self._root.split("/", 1)[0]
        # Listing first: unlike HeadBucket (403, no body) it says which credential check failed.
        selector = pafs.FileSelector(self._root, recursive=False, allow_not_found=True)
        self._call("list", "", lambda: self.filesystem.get_file_info(selector), policy=policy)
        info = self._call("look up the bucket of", "", lambda: self.filesystem.get_file_info(bucket), policy=policy)
        if info.type == pafs.FileType.NotFound:
            raise self._no_bucket()
        self._call("write", probe, lambda: self._put(self.path(probe), b"ok"), policy=policy)
        self.delete(probe)

    # -- retries and errors ---------------------------------------------------------------------
    def _call(self, what: str, key: str, fn: Callable[[], T], *, policy: RetryPolicy | None = None) -> T:
        """Run ``fn``, retrying transient failures under ``policy``, translating the rest."""
        policy = policy or self.retry
        start = time.monotonic()
        delay = policy.first_delay_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except OSError as exc:
                fault = s3.classify(exc)
                wait = random.uniform(delay / 2, delay)
                elapsed = time.monotonic() - start
                if fault is Fault.TRANSIENT and not self.is_local and elapsed + wait <= policy.total_s:
                    log.warning(
                        "%s: %s %r failed (%s), retry %d in %.1f s",
                        self.uri, what, key, s3.aws_error_code(exc) or "transient", attempt, wait,
                    )
                    time.sleep(wait)
                    delay = min(delay * 2, policy.max_delay_s)
                    continue
                error = self._translate(exc, fault, what, key, attempt, elapsed)
                if error is exc:
                    raise
                raise error from exc

    def _translate(self, exc: OSError, fault: Fault, what: str, key: str, attempts: int, elapsed: float) -> OSError:
        if fault is Fault.NOT_FOUND:
            return FileNotFoundError(f"{self.uri}: no object at {key!r}")
        if fault is Fault.NO_BUCKET:
            return self._no_bucket()
        return s3.explain(
            exc,
            fault,
            uri=self.uri,
            endpoint=self.endpoint,
            action=f"{what} {key!r}" if key else f"{what} the store root",
            attempts=attempts,
            elapsed_s=elapsed,
            secrets=self._secrets,
        )

    def _no_bucket(self) -> StoreError:
        return s3.no_bucket_error(self.uri, self._root.split("/", 1)[0], self.endpoint)


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return "a file is in the way of the folder path"
    return str(exc)
