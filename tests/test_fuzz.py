"""Fuzzing the whole batch: mutated real fixtures and arbitrary bytes through
`Pipeline.process` with the in-memory sinks (the state double refuses what DynamoDB
refuses), asserting that the call returns, that every record is accounted for (a history
row, a duplicate of one, or a quarantine line) and that an override secret reaches no sink
and no log line, whatever the spelling.

`make test` runs a bounded number of examples; `make fuzz` runs many more
(`FUZZ_EXAMPLES`)."""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import io
import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aws_kinesis_agg
from aws_kinesis_agg import messages_pb2
from aws_kinesis_agg.aggregator import RecordAggregator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_processor.config import Settings
from stream_processor.core.events import SPECS
from stream_processor.core.history import to_parquet
from stream_processor.core.items import item_json
from stream_processor.core.records import from_lambda_event
from stream_processor.core.stuck import (
    CRASH_LOOP_FAILURES,
    crash_loops,
    stuck_deployments,
    stuck_instances,
    stuck_tasks,
    thresholds,
)
from stream_processor.core.stuck import table_cells as stuck_cells
from stream_processor.core.tables import table_text
from stream_processor.core.times import EARLIEST_INSTANT, LATEST_INSTANT
from stream_processor.ingest.pipeline import Pipeline
from stream_processor.testing import InMemoryHistory, InMemoryQuarantine, InMemoryStateStore
from tests.conftest import lambda_event

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FIXTURES = Path(__file__).parent / "fixtures" / "ecs-events"
SECRET = "Hunter2-s3cr3t-C0FFEE"
SECRET_BYTES = SECRET.encode()

_SECRET_OVERRIDES = {
    "containerOverrides": [
        {
            "name": "app",
            "environment": [
                {"name": "PLAIN", "value": "not-a-secret"},
                {"name": "DB_PASSWORD", "value": SECRET},
            ],
        }
    ]
}


def _bases() -> list[dict[str, Any]]:
    """Every real fixture, plus task events carrying an override secret."""
    events = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))]
    secret_bearing = []
    for event in events:
        if event["detail-type"] == "ECS Task State Change":
            copy = json.loads(json.dumps(event))
            copy["detail"]["overrides"] = _SECRET_OVERRIDES
            secret_bearing.append(copy)
    return events + secret_bearing


BASES = _bases()


def _encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


# --- mutations: (name, strategy of bytes) -----------------------------------------------

_WORDS = [b"environment", b"overrides", b"containerOverrides", b"value", b"taskArn", b"version"]


def _escape_one(data: bytes, word: bytes, index: int) -> bytes:
    """Spell `"word"` with one character as a \\u escape (the same JSON string)."""
    index %= len(word)
    spelled = word[:index] + b"\\u%04x" % word[index] + word[index + 1 :]
    return data.replace(b'"' + word + b'"', b'"' + spelled + b'"')


def _duplicate_secret(data: bytes, where: int) -> bytes:
    """A first copy of `overrides` (or of the whole detail) holding the secret; the
    original, later copy wins for a last-wins reader."""
    overrides = json.dumps(_SECRET_OVERRIDES).encode()
    if where % 2:
        return data.replace(b'"detail": {', b'"detail": {"overrides": ' + overrides + b", ", 1)
    first = json.dumps({"taskArn": "arn:x", "version": 1, "overrides": _SECRET_OVERRIDES})
    return data.replace(b'"detail": {', b'"detail": ' + first.encode() + b', "detail": {', 1)


def _deep(data: bytes, depth: int, kind: int) -> bytes:
    open_, close = (b"[", b"]") if kind % 2 else (b'{"a":', b"}")
    nest = open_ * depth + b"1" + close * depth
    return data.replace(b'"detail": {', b'"detail": {"deep": ' + nest + b", ", 1)


_NUMBERS = [
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"1" * 45,
    b"9" * 5000,
    b"-0.0",
    b"123456789012345678901234567890.123456789012345",
    b"1E+126",
]
_NUMBER_FIELDS = [b"cpu", b"memory", b"extra", b"version", b"exitCode", b"runningTasksCount"]


def _huge_number(data: bytes, number: bytes, field: bytes) -> bytes:
    pattern = re.compile(b'"' + field + rb'": ("[^"]*"|-?[0-9.eE+-]+)')
    if pattern.search(data):
        return pattern.sub(lambda _: b'"' + field + b'": ' + number, data, count=1)
    return data.replace(b'"detail": {', b'"detail": {"' + field + b'": ' + number + b", ", 1)


_JUNK = [
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\\ud800",
    b"\\udc00x",
    b"\x00",
]


def _in_a_string(data: bytes, junk: bytes, at: int) -> bytes:
    """Junk inside some string value (so the JSON stays well-formed around it)."""
    quotes = [m.end() for m in re.finditer(rb'": "', data)]
    if not quotes:
        return data + junk
    position = quotes[at % len(quotes)]
    return data[:position] + junk + data[position:]


_base = st.sampled_from(BASES).map(_encode)

#: How a producer may wrap an event (`core.encodings` peels these): a text encoding of the
#: JSON, then any of the byte wrappings, the first innermost.
_TEXT_WRAPS: dict[str, Callable[[bytes], bytes]] = {
    "utf-8": lambda b: b,
    "utf-16": lambda b: b.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass"),
    "utf-16-be": lambda b: b.decode("utf-8", "surrogatepass").encode("utf-16-be", "surrogatepass"),
    "utf-32": lambda b: b.decode("utf-8", "surrogatepass").encode("utf-32", "surrogatepass"),
}
_BYTE_WRAPS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda b: gzip.compress(b, mtime=0),
    "zlib": zlib.compress,
    "bzip2": bz2.compress,
    "base64": base64.b64encode,
    "base64-lenient": lambda b: base64.encodebytes(b).rstrip(b"=\n"),
}


def _wrapped(data: bytes, text: str, wraps: list[str]) -> bytes:
    data = _TEXT_WRAPS[text](data)
    for name in wraps:
        data = _BYTE_WRAPS[name](data)
    return data


#: Names of the item's own namespace a detail may carry (`core.items.is_reserved`).
_RESERVED = ["expiresAt", "_detail", "_detailZlib", "_cluster", "_phase", "_order", "_shadowed",
             "_serviceArn", "_snapshot", "_oversized", "_eventId", "_x"]  # fmt: skip
_RESERVED_VALUES = [b"1", b'"{\\"lastStatus\\": \\"FORGED\\"}"', b'"eJwDAAAAAAE="',
                    b'"arn:aws:ecs:us-east-1:1:cluster/other#0"', b"null", b"[1, {}]"]  # fmt: skip


def _reserved(data: bytes, name: str, value: bytes) -> bytes:
    return data.replace(b'"detail": {', b'"detail": {"' + name.encode() + b'": ' + value + b", ", 1)


#: Instants no reader can hold, or that lie far from the clock.
_INSTANTS = [b"9999-12-31T23:59:59-05:00", b"0001-01-01T00:30:00+01:00", b"2099-01-01T00:00:00Z",
             b"1970-01-01T00:00:00Z", b"+275760-09-13T00:00:00Z", b"2026-02-30T00:00:00Z",
             b"9999-12-31T23:59:59.999999Z"]  # fmt: skip
_INSTANT_FIELDS = [b"stoppedAt", b"createdAt", b"updatedAt", b"stoppingAt", b"pullStartedAt",
                   b"registeredAt", b"time"]  # fmt: skip


def _instant(data: bytes, value: bytes, field: bytes) -> bytes:
    pattern = re.compile(b'"' + field + rb'": "[^"]*"')
    if pattern.search(data):
        return pattern.sub(lambda _: b'"' + field + b'": "' + value + b'"', data, count=1)
    return data.replace(b'"detail": {', b'"detail": {"' + field + b'": "' + value + b'", ', 1)


#: Characters that would forge a terminal's table: newlines, escapes, bidi overrides.
_CONTROLS = [b"\\n(2 rows)\\n", b"\\u001b[2J", b"\\u001b[1A\\r", b"\\u202e", b"\\u0085",
             b"\\u2028", b"\\t", b"\\u0000"]  # fmt: skip


def _truncate(data: bytes, at: int) -> bytes:
    return data[: at % (len(data) + 1)]


def _flip(data: bytes, at: int, bit: int) -> bytes:
    if not data:
        return data
    at %= len(data)
    return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]


#: Mutations that keep the meaning of the secret-bearing parts (so the secret, if present,
#: must be redacted), and those that may break it (no secret assertion then).
PRESERVING: dict[str, st.SearchStrategy[bytes]] = {
    "escape": st.builds(_escape_one, _base, st.sampled_from(_WORDS), st.integers(0, 30)),
    "duplicate": st.builds(_duplicate_secret, _base, st.integers(0, 1)),
    "deep": st.builds(_deep, _base, st.integers(1, 3000), st.integers(0, 1)),
    "huge-number": st.builds(
        _huge_number, _base, st.sampled_from(_NUMBERS), st.sampled_from(_NUMBER_FIELDS)
    ),
    "invalid-utf8-or-surrogate": st.builds(
        _in_a_string, _base, st.sampled_from(_JUNK), st.integers(0, 200)
    ),
    "truncate": st.builds(_truncate, _base, st.integers(0, 20_000)),
    "encoding": st.builds(
        _wrapped,
        _base,
        st.sampled_from(sorted(_TEXT_WRAPS)),
        st.lists(st.sampled_from(sorted(_BYTE_WRAPS)), max_size=2),
    ),
    "reserved-name": st.builds(
        _reserved, _base, st.sampled_from(_RESERVED), st.sampled_from(_RESERVED_VALUES)
    ),
    "instant": st.builds(
        _instant, _base, st.sampled_from(_INSTANTS), st.sampled_from(_INSTANT_FIELDS)
    ),
    "control": st.builds(_in_a_string, _base, st.sampled_from(_CONTROLS), st.integers(0, 200)),
}
BREAKING: dict[str, st.SearchStrategy[bytes]] = {
    "bit-flip": st.builds(_flip, _base, st.integers(0, 20_000), st.integers(0, 7)),
    "arbitrary": st.binary(max_size=600),
}


def _named(table: dict[str, st.SearchStrategy[bytes]]) -> st.SearchStrategy[tuple[str, bytes]]:
    return st.one_of(*(s.map(lambda data, n=name: (n, data)) for name, s in table.items()))


_payload = _named(PRESERVING) | _named(BREAKING) | _base.map(lambda data: ("plain", data))


def _aggregate(payloads: list[bytes]) -> bytes:
    if not payloads:  # well-formed, and empty: a quarantine line, never nothing
        body = messages_pb2.AggregatedRecord(partition_key_table=["pk"]).SerializeToString()
        return aws_kinesis_agg.MAGIC + body + hashlib.md5(body).digest()
    aggregator = RecordAggregator()
    for index, payload in enumerate(payloads):
        aggregator.add_user_record(f"pk-{index}", payload)
    record = aggregator.clear_and_get()
    assert record is not None
    return record.get_contents()[2]  # type: ignore[no-any-return]


# --- the oracle -------------------------------------------------------------------------


def _secret_state(data: bytes) -> str:
    """Where the payload holds the secret: `absent`; `redactable`, only at an
    `environment[].value` in some copy of some object (duplicate keys included) or, for
    bytes no JSON reader accepts, after an `environment` key in any spelling; `plain`, also
    anywhere else (a bit flip turned `environment` into another key: then it is data)."""
    inner = _unwrapped(data)
    if inner != data:
        return _secret_state(inner)
    if SECRET_BYTES not in data and b"\\u" not in data:
        return "absent"
    found = _Found()
    try:
        json.loads(data.decode("utf-8"), object_pairs_hook=found.hook)
    except (UnicodeDecodeError, ValueError, RecursionError):
        if SECRET_BYTES not in data:
            return "absent"
        return "redactable" if b"environment" in data or b"\\u" in data else "plain"
    if found.anywhere > found.in_environment:
        return "plain"
    return "redactable" if found.in_environment else "absent"


def _unwrapped(data: bytes) -> bytes:
    """The oracle's own reading of a wrapped payload (independent of `core.encodings`):
    what the standard library's decoders make of it, up to three layers; a layer counts
    when it yields the secret, JSON, or another known wrapping."""
    starts = (b"{", b"\x1f\x8b", b"x", b"BZh", b"\xff\xfe", b"\xfe\xff")
    for _ in range(3):
        decoders: list[Callable[[bytes], bytes]] = [
            gzip.decompress,
            zlib.decompress,
            bz2.decompress,
            lambda b: b.decode("utf-16").encode("utf-8", "surrogatepass"),
            lambda b: b.decode("utf-16-be").encode("utf-8", "surrogatepass"),
            lambda b: b.decode("utf-32").encode("utf-8", "surrogatepass"),
        ]
        if b"{" not in data and b'"' not in data:
            decoders.append(lambda b: base64.b64decode(b + b"=" * (-len(b) % 4)))
        for decode in decoders:
            try:
                out = decode(data)
            except Exception:
                continue
            if out and out != data and (SECRET_BYTES in out or out.lstrip().startswith(starts)):
                data = out
                break
        else:
            return data
    return data


class _Found:
    """Counts the secret as a string in every object the parser builds (duplicates too)."""

    def __init__(self) -> None:
        self.anywhere = 0
        self.in_environment = 0

    def _count(self, value: Any) -> int:
        if value == SECRET:
            return 1
        if isinstance(value, list):
            return sum(self._count(v) for v in value if not isinstance(v, dict))
        return 0

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        for name, value in pairs:
            self.anywhere += self._count(value)
            if name == "environment" and isinstance(value, list):
                self.in_environment += sum(
                    1 for v in value if isinstance(v, dict) and v.get("value") == SECRET
                )
        return dict(pairs)


@contextmanager
def _captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("stream_processor")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _sink_bytes(
    state: InMemoryStateStore, history: InMemoryHistory, quarantine: InMemoryQuarantine
) -> Iterator[bytes]:
    for table in state.items.values():
        for item in table.values():
            yield repr(item).encode()
    for obj in history.objects.values():
        yield to_parquet(obj.table)
        yield json.dumps(obj.table.to_pylist(), default=str).encode()
    for body in quarantine.files.values():
        yield body
        for line in body.splitlines():
            kept = base64.b64decode(json.loads(line)["data_base64"])
            yield kept
            yield _unwrapped(kept)  # no decoding of a quarantine line recovers the secret


def _run_batch(payloads: list[bytes], refuse: Callable[[InMemoryStateStore], None]) -> None:
    state, history, quarantine = InMemoryStateStore(), InMemoryHistory(), InMemoryQuarantine()
    refuse(state)
    pipeline = Pipeline(
        Settings(history_bucket="b"), state=state, history=history, quarantine=quarantine
    )
    records = from_lambda_event(lambda_event(payloads, first_seq=100))
    with _captured_logs() as logs:
        outcome = pipeline.process(records)

    # Nothing a record holds fails the batch (the in-memory sinks never fail).
    assert outcome.failed_from is None, outcome.error
    # Every record is a history row, a duplicate of one, or a quarantine line.
    rows = [row for obj in history.objects.values() for row in obj.table.to_pylist()]
    row_positions = {(r["sequence_number"], r["sub_sequence_number"]) for r in rows}
    lines = [
        json.loads(line)
        for key, body in quarantine.files.items()
        if not key.endswith("-state.jsonl")
        for line in body.splitlines()
    ]
    quarantined = {(ln["sequence_number"], ln["sub_sequence_number"]) for ln in lines}
    assert all(ln["reason"] for ln in lines)
    assert not row_positions & quarantined
    assert len(rows) + outcome.duplicates + len(lines) == len(records) == outcome.records_in
    # Every state winner is stored, stale, or quarantined as refused.
    refused = sum(
        len(body.splitlines())
        for key, body in quarantine.files.items()
        if key.endswith("-state.jsonl")
    )
    winners = {
        (obj.dataset, row["resource_arn"])
        for obj in history.objects.values()
        if SPECS[obj.dataset].has_state
        for row in obj.table.to_pylist()
    }
    assert outcome.state_written + outcome.state_stale + refused == len(winners)
    assert outcome.state_failed == 0
    assert outcome.quarantined == len(lines) + refused
    # No event writes the item's own attributes (default settings: native items, no TTL).
    for table in state.items.values():
        for item in table.values():
            assert not {"_detail", "_detailZlib", "expiresAt", "_x"} & set(item), item.keys()
            read_back = item_json(item)  # `get` reads every item it wrote
            assert "FORGED" not in str(read_back.get("lastStatus"))
    _readers_survive(history, state)
    # No secret anywhere it could be read back from (unless some payload holds it as plain
    # data, where no redaction applies).
    states = {_secret_state(p) for p in payloads}
    if "redactable" in states and "plain" not in states:
        for blob in (*_sink_bytes(state, history, quarantine), logs.getvalue().encode()):
            assert SECRET_BYTES not in blob


def _readers_survive(history: InMemoryHistory, state: InMemoryStateStore) -> None:
    """Every reader over what the writer accepted: history rows back into Python (every
    instant in range), the on-call tables (printable cells, one line a row), the stuck
    and crash-loop rules over items and rows."""
    now = datetime.now(UTC)
    limits = thresholds({}, None)
    rows = [row for obj in history.objects.values() for row in obj.table.to_pylist()]
    for row in rows:
        for value in row.values():
            if isinstance(value, datetime):
                assert EARLIEST_INSTANT <= value <= LATEST_INSTANT
    crash_loops(rows, now, {**limits, CRASH_LOOP_FAILURES: 0.0})
    for table in state.items.values():
        items = [item_json(i) for i in table.values()]
        found = [
            *stuck_tasks([i for i in items if "taskArn" in i], "c", now, limits),
            *stuck_instances([i for i in items if "containerInstanceArn" in i], "c", now, limits),
            *stuck_deployments([i for i in items if "deploymentId" in i], "c", now, limits),
        ]
        cells = [[str(v) for v in i.values()][:8] for i in items] + stuck_cells(found)
        text = table_text(["c"] * 8, [row + [""] * (8 - len(row)) for row in cells])
        assert len(text.split("\n")) == len(cells) + 1
        assert all(c.isprintable() or c in " \n" for c in text)


def _no_refusals(state: InMemoryStateStore) -> None:
    pass


_profile = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=EXAMPLES <= 150,  # CI replays the same examples; `make fuzz` explores
)


@_profile
@given(st.lists(_payload, min_size=1, max_size=4), st.sampled_from(BASES).map(_encode))
def test_fuzz_mutated_fixtures_in_a_batch(mutated: list[tuple[str, bytes]], good: bytes) -> None:
    _run_batch([good, *(data for _, data in mutated)], _no_refusals)


@_profile
@given(st.lists(_payload, min_size=0, max_size=4))
def test_fuzz_mutated_fixtures_in_a_kpl_aggregate(mutated: list[tuple[str, bytes]]) -> None:
    _run_batch([_aggregate([data for _, data in mutated])], _no_refusals)


@_profile
@given(st.lists(st.binary(max_size=2048), min_size=1, max_size=4))
def test_fuzz_arbitrary_bytes_in_a_batch(payloads: list[bytes]) -> None:
    _run_batch(payloads, _no_refusals)


def _history_readers_survive(payloads: list[bytes]) -> None:
    """The history readers over what the writer accepted: snapshots, `state --as-of`,
    `cost`, `failures`, `timeline` and a `query` of every column, on a local history
    laid out as on S3."""
    import tempfile

    from stream_processor.adapters.history_store import LocalHistoryStore
    from stream_processor.analytics.query import HistoryQuery
    from stream_processor.analytics.scan import DayRange
    from stream_processor.analytics.snapshot import build_snapshots
    from stream_processor.analytics.spend import answer
    from stream_processor.analytics.timeline import build_timeline
    from stream_processor.core.events import Dataset

    history = InMemoryHistory()
    pipeline = Pipeline(
        Settings(history_bucket="b"),
        state=InMemoryStateStore(),
        history=history,
        quarantine=InMemoryQuarantine(),
    )
    pipeline.process(from_lambda_event(lambda_event(payloads, first_seq=100)))
    with tempfile.TemporaryDirectory() as folder:
        store = LocalHistoryStore(Path(folder))
        for obj in history.objects.values():
            store.write(obj.key, to_parquet(obj.table))
        days = sorted({obj.event_date for obj in history.objects.values()})
        if not days:
            return
        build_snapshots(store, "ecs-history/")
        first, last = days[0], days[-1]
        now = datetime.now(UTC)
        for question in ("cost", "failures"):
            answer(question, store, "ecs-history/", first, last, now=now)
        engine = HistoryQuery(store, "ecs-history/", days=DayRange(first, last))
        try:
            for dataset in (Dataset.TASK, Dataset.CONTAINER_INSTANCE, Dataset.DEPLOYMENT):
                engine.state_as_of(now, dataset)
                engine.run(f"SELECT * FROM {dataset.value}")
        finally:
            engine.close()
        arns = {
            row["resource_arn"]
            for obj in history.objects.values()
            if obj.dataset in (Dataset.TASK, Dataset.DEPLOYMENT)
            for row in obj.table.select(["resource_arn"]).to_pylist()
        }
        for arn in sorted(arns)[:3]:
            if arn.startswith("arn:") and ":task/" not in arn:
                continue
            build_timeline(store, "ecs-history/", arn, DayRange(first, last))


@settings(
    max_examples=max(EXAMPLES // 10, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=EXAMPLES <= 150,
)
@given(st.lists(_payload, min_size=1, max_size=3))
def test_fuzz_the_history_readers_survive_what_the_writer_accepted(
    mutated: list[tuple[str, bytes]],
) -> None:
    _history_readers_survive([data for _, data in mutated])
