"""Glue / Athena table and view definitions derived from the Parquet schemas (one source of
truth), and the SQL of the deduplicating views that DuckDB and Athena share.

Each dataset's files are the Glue table `<dataset>_raw`; the name analysts query,
`<dataset>`, is a view over it that deduplicates on read and computes `valid_from` /
`valid_to`, so the same SQL gives the same answers before, during and after compaction.
`infra/template.yaml` declares the same tables and views; a test keeps them in step, and
`stream-processor athena-ddl` prints the DDL for people who create them by hand.
"""

from __future__ import annotations

import base64
import json

import pyarrow as pa

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.failures import FAILURES_SQL
from stream_processor.core.history import COMPACTED_SCHEMAS, SCHEMAS, VALIDITY_DATASETS
from stream_processor.core.layout import SNAPSHOT_DATE
from stream_processor.core.pricing import USAGE_SQL

#: Hive partition column of every dataset (from the object key, not stored in the files).
PARTITION_COLUMN = ("event_date", "string")
#: First day partition projection enumerates; ECS events predate nothing older.
PROJECTION_START = "2015-01-01"


def glue_type(arrow_type: pa.DataType) -> str:
    """The Glue/Athena type that reads an Arrow/Parquet column exactly."""
    if pa.types.is_string(arrow_type):
        return "string"
    if pa.types.is_int64(arrow_type):
        return "bigint"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    raise ValueError(f"no Glue type for {arrow_type}")


def glue_columns(dataset: Dataset) -> list[tuple[str, str]]:
    """(name, type) of every data column, in file order (compacted files have them all)."""
    return [(field.name, glue_type(field.type)) for field in COMPACTED_SCHEMAS[dataset]]


def table_name(dataset: Dataset) -> str:
    """Athena name analysts query: the deduplicating view (the dataset name itself)."""
    return dataset.value


def raw_table_name(dataset: Dataset) -> str:
    """Glue table over the dataset's Parquet files, duplicates and all."""
    return f"{dataset.value}_raw"


def dedupe_key(dataset: Dataset) -> str:
    """The columns that identify one history row."""
    return "resource_arn, version" if SPECS[dataset].versioned else "event_id"


#: Among duplicates of one row, keep this one, whatever the file order. Duplicates of one
#: key are redeliveries of one event; (sequence, sub-sequence) tell records apart.
DUPLICATE_ORDER = "event_time DESC, event_id DESC, sequence_number, sub_sequence_number"

#: Columns the dedupe and validity windows read, whatever a query selects.
WINDOW_COLUMNS = (
    "resource_arn",
    "version",
    "event_id",
    "event_time",
    "sequence_number",
    "sub_sequence_number",
)


def view_columns(dataset: Dataset) -> list[str]:
    """Columns of a dataset's view, in order: the file columns, then the partition, then
    the validity computed on read."""
    names = [f.name for f in SCHEMAS[dataset]] + ["event_date"]
    if dataset in VALIDITY_DATASETS:
        names += ["valid_from", "valid_to"]
    return names


def view_sql(dataset: Dataset, source: str, columns: list[str] | None = None) -> str:
    """The view's SELECT over `source` (raw rows), valid in Athena (Trino) and DuckDB.

    Deduplicates (one row per history key) and computes validity from the next version,
    wherever it lies, so stored `valid_to` values never matter to the answer. `columns`
    narrows the file columns to those a query reads (DuckDB); None selects them all."""
    wanted = [f.name for f in SCHEMAS[dataset]] if columns is None else columns
    selected = ", ".join(f'"{c}"' for c in [*wanted, "event_date"])
    validity = ""
    if dataset in VALIDITY_DATASETS:
        validity = (
            ", event_time AS valid_from, lead(event_time) OVER "
            "(PARTITION BY resource_arn ORDER BY version) AS valid_to"
        )
    # Identifiers come from our schemas and `source` from our code, never from input.
    return (
        f"SELECT {selected}{validity} FROM (SELECT *, row_number() OVER "  # noqa: S608
        f"(PARTITION BY {dedupe_key(dataset)} ORDER BY {DUPLICATE_ORDER}) AS rn "
        f"FROM {source}) deduplicated WHERE rn = 1"
    )


def athena_view_ddl(dataset: Dataset, database: str) -> str:
    """`CREATE OR REPLACE VIEW` of a dataset over its raw table."""
    source = f'"{database}"."{raw_table_name(dataset)}"'
    return f'CREATE OR REPLACE VIEW "{database}"."{table_name(dataset)}" AS\n' + (
        view_sql(dataset, source) + ";\n"
    )


#: Views that answer the operators' questions over the dataset views: the SQL `cost` and
#: `failures` run locally is the SQL of these views (`core.pricing`, `core.failures`).
ANSWER_VIEWS: dict[str, str] = {"task_usage": USAGE_SQL, "task_failures": FAILURES_SQL}
#: Their columns, (name, Glue type), in order (a test runs the SQL and compares).
ANSWER_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "task_usage": [
        *[(name, "string") for name in ("task_arn", "cluster_arn", "group", "family")],
        *[(name, "string") for name in ("deployment", "launch_type")],
        *[(name, "string") for name in ("container_instance_arn", "capacity_provider")],
        *[(name, "string") for name in ("cpu_architecture", "platform_family", "region")],
        *[(name, "double") for name in ("vcpu", "gb", "storage_gb")],
        ("billing_start", "timestamp"),
        ("billing_end", "timestamp"),
    ],
    "task_failures": [
        *[(name, "string") for name in ("task_arn", "cluster_arn", "group", "family")],
        *[(name, "string") for name in ("deployment", "stop_code", "stopped_reason")],
        ("stopped_at", "timestamp"),
        ("category", "string"),
    ],
}


def answer_view_sql(name: str, database: str) -> str:
    """One answer view's SELECT, its datasets qualified by `database`."""
    sql = ANSWER_VIEWS[name]
    for dataset in Dataset:
        sql = sql.replace(
            f"FROM {table_name(dataset)}\n", f'FROM "{database}"."{table_name(dataset)}"\n'
        )
    return sql.strip()


def answer_view_ddl(name: str, database: str) -> str:
    """`CREATE OR REPLACE VIEW` of one answer view."""
    return f'CREATE OR REPLACE VIEW "{database}"."{name}" AS\n{answer_view_sql(name, database)};\n'


_PRESTO_TYPES = {
    "string": "varchar",
    "bigint": "bigint",
    "boolean": "boolean",
    "timestamp": "timestamp(3)",
    "double": "double",
}


def glue_view_columns(dataset: Dataset) -> list[tuple[str, str]]:
    """(name, Glue type) of a dataset's view columns."""
    types = dict(glue_columns(dataset)) | {"event_date": "string"}
    return [(name, types[name]) for name in view_columns(dataset)]


def _presto_view(sql: str, database: str, columns: list[tuple[str, str]]) -> str:
    """`ViewOriginalText` of a Glue table that Athena shows as a view: Athena's own
    format, a base64 JSON document after "Presto View:" (what `CREATE VIEW` stores)."""
    document = {
        "originalSql": sql,
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": [{"name": n, "type": _PRESTO_TYPES[t]} for n, t in columns],
    }
    encoded = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
    return f"/* Presto View: {encoded} */"


def glue_view_text(dataset: Dataset, database: str) -> str:
    """The `ViewOriginalText` of a dataset's view."""
    sql = view_sql(dataset, f'"{database}"."{raw_table_name(dataset)}"')
    return _presto_view(sql, database, glue_view_columns(dataset))


def answer_view_text(name: str, database: str) -> str:
    """The `ViewOriginalText` of an answer view."""
    return _presto_view(answer_view_sql(name, database), database, ANSWER_COLUMNS[name])


def projection_properties(location: str, column: str = "event_date") -> dict[str, str]:
    """Partition projection: no crawler, no MSCK REPAIR; `location` ends with '/'."""
    return {
        "projection.enabled": "true",
        f"projection.{column}.type": "date",
        f"projection.{column}.format": "yyyy-MM-dd",
        f"projection.{column}.range": f"{PROJECTION_START},NOW",
        f"projection.{column}.interval": "1",
        f"projection.{column}.interval.unit": "DAYS",
        "storage.location.template": f"{location}{column}=${{{column}}}/",
        "parquet.compression": "ZSTD",
        "classification": "parquet",
    }


def _external_table(
    name: str, columns: list[tuple[str, str]], location: str, partition: str, database: str
) -> str:
    listed = ",\n".join(f"  `{column}` {kind}" for column, kind in columns)
    properties = ",\n".join(
        f"  '{key}' = '{value}'"
        for key, value in projection_properties(location, partition).items()
    )
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{name}` (\n"
        f"{listed}\n)\n"
        f"PARTITIONED BY (`{partition}` string)\n"
        "STORED AS PARQUET\n"
        f"LOCATION '{location}'\n"
        f"TBLPROPERTIES (\n{properties}\n);\n"
    )


def athena_ddl(dataset: Dataset, *, bucket: str, prefix: str, database: str) -> str:
    """`CREATE EXTERNAL TABLE` for one dataset's files, with partition projection."""
    location = f"s3://{bucket}/{prefix}{dataset.value}/"
    return _external_table(
        raw_table_name(dataset), glue_columns(dataset), location, PARTITION_COLUMN[0], database
    )


#: Snapshot datasets: the state of every keyed resource at the start of each day (a
#: deployment's row is its latest event; the snapshot also keeps its first, which says
#: when it started: `SNAPSHOT_KEEPS_FIRST`).
SNAPSHOT_DATASETS: dict[Dataset, str] = {
    Dataset.TASK: "task_state_snapshot",
    Dataset.CONTAINER_INSTANCE: "container_instance_state_snapshot",
    Dataset.DEPLOYMENT: "deployment_state_snapshot",
}
SNAPSHOT_PARTITION = SNAPSHOT_DATE
#: Snapshot datasets that keep each resource's earliest row beside its latest: a
#: deployment's start (its first `updatedAt`) is what tells a rollout from a scale-in
#: (`core.failures`), however long before a window it began.
SNAPSHOT_KEEPS_FIRST = frozenset({Dataset.DEPLOYMENT})
#: The column that says when a resource ended (null while it lives). Snapshot files are
#: sorted by it, newest first and the living before all, in row groups of
#: `SNAPSHOT_ROW_GROUP_ROWS`, so a reader that needs only what lived at a window's start
#: (`cost`, `failures`) skips the row groups of resources that ended before it by their
#: statistics: what it reads follows the fleet's size, not the history's age.
SNAPSHOT_ENDED_AT: dict[Dataset, str] = {Dataset.TASK: "stopped_at"}
SNAPSHOT_ROW_GROUP_ROWS = 8192


def snapshot_columns(dataset: Dataset) -> list[tuple[str, str]]:
    """(name, Glue type) of a snapshot dataset's columns: the history row of each
    resource's latest version before the snapshot date."""
    return [(field.name, glue_type(field.type)) for field in SCHEMAS[dataset]]


def snapshot_ddl(dataset: Dataset, *, bucket: str, prefix: str, database: str) -> str:
    """`CREATE EXTERNAL TABLE` for one snapshot dataset."""
    name = SNAPSHOT_DATASETS[dataset]
    location = f"s3://{bucket}/{prefix}{name}/"
    return _external_table(name, snapshot_columns(dataset), location, SNAPSHOT_PARTITION, database)
