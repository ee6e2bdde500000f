"""Glue / Athena table definitions derived from the Parquet schemas (one source of truth).

`infra/template.yaml` declares the same columns; a test keeps the two in step, and
`stream-processor athena-ddl` prints the DDL for people who create tables by hand.
"""

from __future__ import annotations

import pyarrow as pa

from stream_processor.core.events import Dataset
from stream_processor.core.history import COMPACTED_SCHEMAS

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
    """Athena table name of a dataset (the dataset name itself)."""
    return dataset.value


def projection_properties(location: str) -> dict[str, str]:
    """Partition projection: no crawler, no MSCK REPAIR; `location` ends with '/'."""
    return {
        "projection.enabled": "true",
        "projection.event_date.type": "date",
        "projection.event_date.format": "yyyy-MM-dd",
        "projection.event_date.range": f"{PROJECTION_START},NOW",
        "projection.event_date.interval": "1",
        "projection.event_date.interval.unit": "DAYS",
        "storage.location.template": location + "event_date=${event_date}/",
        "parquet.compression": "ZSTD",
        "classification": "parquet",
    }


def athena_ddl(dataset: Dataset, *, bucket: str, prefix: str, database: str) -> str:
    """`CREATE EXTERNAL TABLE` for one dataset, with partition projection."""
    location = f"s3://{bucket}/{prefix}{dataset.value}/"
    columns = ",\n".join(f"  `{name}` {kind}" for name, kind in glue_columns(dataset))
    properties = ",\n".join(
        f"  '{key}' = '{value}'" for key, value in projection_properties(location).items()
    )
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table_name(dataset)}` (\n"
        f"{columns}\n)\n"
        f"PARTITIONED BY (`{PARTITION_COLUMN[0]}` {PARTITION_COLUMN[1]})\n"
        "STORED AS PARQUET\n"
        f"LOCATION '{location}'\n"
        f"TBLPROPERTIES (\n{properties}\n);\n"
    )
