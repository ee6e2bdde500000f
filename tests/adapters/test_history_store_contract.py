"""The HistoryStore port's contract (`core.ports`), run on the S3 store (moto over HTTP)
and on the local directory store the demo and the tests use: listing by prefix, partition
children, sizes, tags that change with content, what was written since an instant, whole
and ranged reads, deletes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stream_processor.adapters.clients import s3_client
from stream_processor.adapters.history_store import LocalHistoryStore, S3HistoryStore
from stream_processor.config import Settings
from stream_processor.core.ports import HistoryStore


@pytest.fixture(params=["s3", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    if request.param == "local":
        yield LocalHistoryStore(tmp_path)
        return
    settings: Settings = request.getfixturevalue("settings")
    yield S3HistoryStore(s3_client(settings), settings.history_bucket)


P = "contract/"


def test_write_list_read_and_delete(store: HistoryStore) -> None:
    bodies = {
        f"{P}a/event_date=2026-01-01/x.parquet": b"one",
        f"{P}a/event_date=2026-01-02/y.parquet": b"three",
        f"{P}b/event_date=2026-01-01/z.parquet": b"22",
    }
    for key, body in bodies.items():
        store.write(key, body)
    assert sorted(store.keys(f"{P}a/")) == sorted(k for k in bodies if k.startswith(f"{P}a/"))
    assert store.children(f"{P}a/") == ["event_date=2026-01-01", "event_date=2026-01-02"]
    assert dict(store.sizes(f"{P}b/")) == {f"{P}b/event_date=2026-01-01/z.parquet": 2}
    assert {k: store.read(k) for k in bodies} == bodies
    store.delete([f"{P}a/event_date=2026-01-01/x.parquet"])
    assert sorted(store.keys(f"{P}a/")) == [f"{P}a/event_date=2026-01-02/y.parquet"]
    assert list(store.keys(f"{P}nothing/")) == []


def test_tags_change_with_content_and_ranges_read_what_they_ask(store: HistoryStore) -> None:
    key = f"{P}c/event_date=2026-01-01/r.parquet"
    store.write(key, b"0123456789")
    (first,) = [tag for k, tag in store.entries(f"{P}c/") if k == key]
    store.write(key, b"abcdefghij")
    (second,) = [tag for k, tag in store.entries(f"{P}c/") if k == key]
    assert first != second
    reader = store.open(key)
    reader.seek(3)
    assert reader.read(4) == b"defg"


def test_modified_since_lists_only_what_was_written_from_then_on(store: HistoryStore) -> None:
    old, new = f"{P}m/event_date=2026-01-01/old.parquet", f"{P}m/event_date=2026-01-01/new.parquet"
    store.write(old, b"old")
    assert list(store.modified_since(f"{P}m/", datetime.now(UTC) - timedelta(minutes=5))) == [old]
    # S3 stamps whole seconds: a later write is told apart from a second on.
    time.sleep(1.1)
    since = datetime.now(UTC).replace(microsecond=0)
    store.write(new, b"new")
    assert list(store.modified_since(f"{P}m/", since)) == [new]
    assert list(store.modified_since(f"{P}m/", since + timedelta(hours=1))) == []
