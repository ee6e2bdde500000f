"""Local SQL over the history with DuckDB: one view per dataset, named like the Athena table,
deduplicated on read (so uncompacted cross-batch duplicates never show) and with validity
intervals computed on read (so `valid_from`/`valid_to` work before compaction too).

S3 histories are read through boto3 (so `AWS_ENDPOINT_URL` works, and no DuckDB extension
has to be downloaded): the Parquet objects are copied into a local cache directory first.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from stream_processor.adapters.history_store import HistoryStore, LocalHistoryStore
from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.history import COMPACTED_SCHEMAS, SCHEMAS, VALIDITY_DATASETS

#: Athena functions the example queries use, defined in DuckDB so the same SQL runs on both.
_MACROS = (
    "CREATE OR REPLACE MACRO approx_percentile(x, p) AS quantile_cont(x, p)",
    "CREATE OR REPLACE MACRO date_format(ts, fmt) AS strftime(ts, fmt)",
    "CREATE OR REPLACE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)",
)


def dedupe_key(dataset: Dataset) -> str:
    """The columns that identify one history row."""
    return "resource_arn, version" if SPECS[dataset].versioned else "event_id"


#: Among duplicates of one row, keep this one (deterministic whatever the file order).
DUPLICATE_ORDER = "event_time DESC, event_id DESC, detail DESC, sequence_number"


def view_sql(dataset: Dataset, source: str) -> str:
    """`CREATE VIEW` for a dataset over `source` (a DuckDB table expression)."""
    columns = ", ".join(f'"{f.name}"' for f in SCHEMAS[dataset])
    validity = ""
    if dataset in VALIDITY_DATASETS:
        validity = (
            ", event_time AS valid_from, lead(event_time) OVER "
            "(PARTITION BY resource_arn ORDER BY version) AS valid_to"
        )
    return (
        f'CREATE OR REPLACE VIEW "{dataset.value}" AS '
        f"SELECT {columns}, CAST(event_date AS VARCHAR) AS event_date{validity} FROM ("
        f"SELECT *, row_number() OVER (PARTITION BY {dedupe_key(dataset)} "
        f"ORDER BY {DUPLICATE_ORDER}) AS _rn FROM {source}) WHERE _rn = 1"
    )


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class HistoryQuery:
    """A DuckDB connection with the history's views."""

    def __init__(self, store: HistoryStore, prefix: str) -> None:
        self._prefix = prefix
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if isinstance(store, LocalHistoryStore):
            root = store.root
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="stream-processor-history-")
            root = Path(self._tmp.name)
            cache = LocalHistoryStore(root)
            for key in store.keys(prefix):
                if key.endswith(".parquet"):
                    cache.write(key, store.read(key))
        self.connection = duckdb.connect()
        self.connection.execute("SET TimeZone = 'UTC'")
        for macro in _MACROS:
            self.connection.execute(macro)
        for dataset in Dataset:
            directory = root / prefix / dataset.value
            files = sorted(directory.glob("event_date=*/*.parquet"))
            if files:
                paths = ", ".join(f"'{p.as_posix()}'" for p in files)
                source = f"read_parquet([{paths}], hive_partitioning = true, union_by_name = true)"
            else:
                empty = pa.Table.from_pylist([], schema=COMPACTED_SCHEMAS[dataset]).append_column(
                    "event_date", pa.array([], pa.string())
                )
                self.connection.register(f"_empty_{dataset.value}", empty)
                source = f'"_empty_{dataset.value}"'
            self.connection.execute(view_sql(dataset, source))

    def run(self, sql: str, parameters: Sequence[Any] = ()) -> QueryResult:
        cursor = self.connection.execute(sql, list(parameters))
        columns = [d[0] for d in cursor.description or []]
        return QueryResult(columns, cursor.fetchall())

    def state_as_of(
        self, moment: datetime, dataset: Dataset = Dataset.TASK, cluster: str | None = None
    ) -> QueryResult:
        """Every resource's state at `moment`: its highest version with event_time <= T."""
        if not SPECS[dataset].has_state:
            raise ValueError(f"{dataset.value} has no state (history only)")
        order = "version DESC" if SPECS[dataset].versioned else "updated_at DESC"
        where = "event_time <= ?"
        parameters: list[Any] = [moment]
        if cluster:
            column = "cluster_arn" if dataset is not Dataset.DEPLOYMENT else "service_arn"
            where += f" AND {column} LIKE ?"
            parameters.append(f"%{cluster}%" if not cluster.startswith("arn:") else cluster)
        sql = (
            f"SELECT * EXCLUDE (_rn) FROM (SELECT *, row_number() OVER (PARTITION BY resource_arn "
            f'ORDER BY {order}, event_time DESC, event_id DESC) AS _rn FROM "{dataset.value}" '
            f"WHERE {where}) WHERE _rn = 1 ORDER BY resource_arn"
        )
        return self.run(sql, parameters)

    def close(self) -> None:
        self.connection.close()
        if self._tmp is not None:
            self._tmp.cleanup()
