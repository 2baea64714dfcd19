"""S3 plumbing for the result store: URI and endpoint parsing, the pyarrow filesystem, error triage.

Kept apart from ``store.py`` so the store reads as storage semantics and this file holds what is
peculiar to S3 and to pyarrow's S3 client. Nothing here retries; ``store.py`` owns the policy.

pyarrow facts this relies on (pyarrow 26, measured against SeaweedFS 4.48):

- pyarrow ignores ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3`` (apache/arrow#49643), so we read them
  and pass ``endpoint_override`` ourselves.
- With ``allow_delayed_open=True`` a small object is one ``PutObject`` at close; without it every
  write starts a multipart upload. Either way the object appears whole or not at all.
- Errors are ``OSError`` whose text carries ``AWS Error <CODE> during <Operation>``; that text is
  all there is to classify them by.
- A missing bucket reads as an empty listing and "not found", never as an error, so the store
  checks the bucket itself.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from tasks.errors import TaskSweepInputError

CREDENTIALS_FIX = (
    "give credentials through AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), "
    "~/.aws/credentials (AWS_PROFILE), an instance profile, or the access_key/secret_key options"
)
ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class StoreError(TaskSweepInputError):
    """The result store cannot be used as configured; the message names the URI and the fix.

    Messages never contain credentials.
    """


class Fault(enum.Enum):
    """What kind of failure an ``OSError`` from pyarrow's S3 client is."""

    TRANSIENT = "transient"  # connection refused/reset, timeouts, 5xx, throttling: retry
    AUTH = "auth"  # the server rejected the credentials or the permission
    NO_BUCKET = "no bucket"
    NOT_FOUND = "not found"
    OTHER = "other"  # anything else: not retried, re-raised as it is


_AUTH_CODES = {
    "ACCESS_DENIED",
    "INVALID_ACCESS_KEY_ID",
    "SIGNATURE_DOES_NOT_MATCH",
    "EXPIRED_TOKEN",
    "INVALID_CLIENT_TOKEN_ID",
    "MISSING_AUTHENTICATION_TOKEN",
}
_TRANSIENT_CODES = {
    "NETWORK_CONNECTION",
    "SERVICE_UNAVAILABLE",
    "INTERNAL_FAILURE",
    "SLOW_DOWN",
    "THROTTLING",
    "REQUEST_TIMEOUT",
    "REQUEST_EXPIRED",
}
_CODE_RE = re.compile(r"AWS Error ([A-Z_]+)")
_STATUS_RE = re.compile(r"HTTP status (\d{3})|HTTP response code:? (\d{3})")


def classify(exc: BaseException) -> Fault:
    """Sort an exception from pyarrow's S3 filesystem into a ``Fault``."""
    if isinstance(exc, FileNotFoundError):
        return Fault.NOT_FOUND
    if not isinstance(exc, OSError):
        return Fault.OTHER
    text = str(exc)
    match = _CODE_RE.search(text)
    code = match.group(1) if match else ""
    if code in _AUTH_CODES:
        return Fault.AUTH
    if code == "NO_SUCH_BUCKET":
        return Fault.NO_BUCKET
    if code in _TRANSIENT_CODES or "curlCode" in text:
        return Fault.TRANSIENT
    status = _STATUS_RE.search(text)
    if status and (status.group(1) or status.group(2)).startswith("5"):
        return Fault.TRANSIENT
    return Fault.OTHER


def aws_error_code(exc: BaseException) -> str:
    """``ACCESS_DENIED``-style code from a pyarrow S3 error, or ``""``."""
    match = _CODE_RE.search(str(exc))
    return match.group(1) if match else ""


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix`` split; ``prefix`` has no leading or trailing slash."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def root(self) -> str:
        """The path pyarrow's S3 filesystem uses for the store root."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket


def parse_s3_uri(uri: str) -> S3Location:
    """Split ``s3://bucket/prefix``; refuse credentials, queries and odd bucket names.

    Raises:
        StoreError: the URI is not a plain ``s3://bucket[/prefix]``. The message never repeats a
            URI that may contain a secret.
    """
    if "@" in uri:
        # urlsplit cannot be trusted to find the secret (a '/' in it moves the split point), so the
        # message names nothing from the URI at all.
        raise StoreError(
            "the results URI looks like it contains credentials (s3://KEY:SECRET@bucket/...); "
            f"they are not accepted there because URIs end up in logs and run.json: {CREDENTIALS_FIX}"
        )
    parts = urlsplit(uri)
    if parts.query or parts.fragment:
        raise StoreError(
            f"{uri}: query strings are not supported in the results URI; pass the endpoint and "
            "region as options (s3_endpoint=, region=) or through AWS_ENDPOINT_URL_S3/AWS_REGION"
        )
    bucket = parts.netloc
    if not _BUCKET_RE.match(bucket):
        raise StoreError(
            f"{uri}: {bucket!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, "
            "'.' and '-'); write the URI as s3://bucket/prefix"
        )
    prefix = parts.path.strip("/")
    check_relative(prefix, what="prefix", uri=uri)
    return S3Location(bucket, prefix)


def check_relative(key: str, *, what: str = "key", uri: str = "") -> str:
    """Return ``key`` if it is a clean relative ``a/b/c`` path; raise ``StoreError`` otherwise."""
    if key == "":
        return key
    segments = key.split("/")
    if key.startswith("/") or "\\" in key or any(s in ("", ".", "..") for s in segments):
        where = f"{uri}: " if uri else ""
        raise StoreError(
            f"{where}{what} {key!r} must be a relative path like 'a/b/c' without empty, '.' or "
            "'..' segments"
        )
    return key


@dataclass(frozen=True)
class Endpoint:
    """An S3-compatible endpoint: ``host:port`` for pyarrow plus its scheme."""

    host: str
    scheme: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"


def resolve_endpoint(explicit: str | None) -> Endpoint | None:
    """The endpoint from the option, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``.

    ``None`` means AWS itself. A bare ``host:port`` is taken as https.
    """
    raw = explicit or next((os.environ[v] for v in ENDPOINT_ENV if os.environ.get(v)), None)
    if not raw:
        return None
    if "@" in raw:
        raise StoreError(f"the S3 endpoint must not contain credentials: {CREDENTIALS_FIX}")
    parts = urlsplit(raw if "://" in raw else f"https://{raw}")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise StoreError(
            f"S3 endpoint {raw!r} is not a URL like http://127.0.0.1:8333 or https://s3.example.com"
        )
    return Endpoint(parts.netloc, parts.scheme)


def resolve_region(explicit: str | None, bucket: str, endpoint: Endpoint | None) -> str | None:
    """Explicit option, else ``AWS_REGION``/``AWS_DEFAULT_REGION``; for a custom endpoint
    ``us-east-1`` (S3-compatible servers accept any); for AWS, ask AWS where the bucket lives."""
    region = explicit or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    if endpoint is not None:
        return "us-east-1"
    try:
        return pafs.resolve_s3_region(bucket)
    except OSError:
        return None  # let the SDK's own chain decide; errors surface on first use


def make_filesystem(
    *,
    endpoint: Endpoint | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    session_token: str | None,
) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem. Without explicit keys pyarrow walks the standard AWS chain."""
    if (access_key is None) != (secret_key is None):
        raise StoreError("give both access_key and secret_key, or neither (to use the AWS chain)")
    options: dict[str, object] = {
        "region": region,
        "allow_delayed_open": True,  # one PutObject per small object, see the module docstring
        "connect_timeout": 5.0,  # the SDK's 1 s default is short for a busy server far away
    }
    if access_key is not None:
        options.update(access_key=access_key, secret_key=secret_key, session_token=session_token)
    if endpoint is not None:
        options.update(endpoint_override=endpoint.host, scheme=endpoint.scheme)
    return pafs.S3FileSystem(**options)


def explain(
    exc: OSError,
    fault: Fault,
    *,
    uri: str,
    endpoint: str | None,
    action: str,
    attempts: int,
    elapsed_s: float,
    secrets: tuple[str | None, ...],
) -> OSError:
    """A ``StoreError`` saying what failed and what to fix, for AUTH and (exhausted) TRANSIENT
    faults; ``exc`` itself for anything else."""
    where = f"{uri} (endpoint {endpoint})" if endpoint else uri
    detail = redact(_useful_tail(exc), *secrets)
    if fault is Fault.AUTH:
        return StoreError(
            f"{where}: the S3 server refused to {action} with these credentials ({detail}). "
            f"Check them and their permissions (read, write, list, delete under {uri}): "
            f"{CREDENTIALS_FIX}"
        )
    if fault is Fault.TRANSIENT:
        tries = f"{attempts} attempt" + ("s" if attempts != 1 else "")
        return StoreError(
            f"{where}: could not {action} after {tries} over {elapsed_s:.1f} s ({detail}). "
            "Check that the S3 server is running and reachable and that the endpoint is right "
            "(s3_endpoint option, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL)."
        )
    return exc


def no_bucket_error(uri: str, bucket: str, endpoint: str | None) -> StoreError:
    where = f"{uri} (endpoint {endpoint})" if endpoint else uri
    endpoint_flag = f" --endpoint-url {endpoint}" if endpoint else ""
    return StoreError(
        f"{where}: the bucket {bucket!r} does not exist. Create it "
        f"(aws s3 mb s3://{bucket}{endpoint_flag}) or fix the results URI."
    )


def _useful_tail(exc: BaseException) -> str:
    """``AWS Error ACCESS_DENIED during HeadObject operation: ...`` without pyarrow's preamble
    and the request id."""
    text = str(exc)
    cut = text.find("AWS Error ")
    text = text[cut:] if cut >= 0 else text
    return text.split(" (Request ID")[0].strip()


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every given secret replaced by ``***`` (belt and braces for messages)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
