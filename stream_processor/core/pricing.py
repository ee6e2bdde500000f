"""What a task's resources cost: a dated price table, and the usage it prices.

Fargate bills "from the time you start to download your container image until the Amazon
ECS Task … terminates, rounded up to the nearest second", with a one-minute minimum
(https://aws.amazon.com/fargate/pricing/). A task event says when the pull started
(`pullStartedAt`) and when the task stopped (`stoppedAt`, when it reached STOPPED and
released its resources; `executionStoppedAt`, when its containers stopped, can be
earlier). We bill to `stoppedAt`: the task terminates then. A task without
`pullStartedAt` never began pulling and costs nothing.

`USAGE_SQL` is the `task_usage` view (Athena and DuckDB): one row per task with what its
bill needs. The prices are applied to its sums in Python, so a price file changes the
answer without touching the history.

Prices shipped (`PRICES`, dated `PRICE_DATE`): Fargate on-demand in us-east-1. AWS's
pricing page renders its rates in the browser; the figures are those it showed as
transcribed by two independent sources in 2026 (vantage.sh, cloudburn.io, March 2026),
and agree with the issue's. Fargate Spot, Savings Plans, other regions and EC2 instance
types come from a `--prices` file (`load_prices`, format in `docs/cost.md`).

An EC2 task's dollars are its share of its container instance: the mean of its share of
the instance's registered vCPUs and of its memory, times the instance's hourly price
(`instance_share`), for the hours the task held them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_processor.errors import ConfigError

PRICE_DATE = "2026-03-01"
#: Ephemeral storage each Fargate task gets without charge.
INCLUDED_STORAGE_GB = 20.0
#: Fargate's minimum charge per task.
MINIMUM_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Rate:
    """USD per vCPU-hour, per GB-hour of memory, per GB-hour of storage above the
    included 20 GB; `os_vcpu` is an OS licence fee per vCPU-hour (Windows)."""

    vcpu: float
    gb: float
    storage: float = 0.000111
    os_vcpu: float = 0.0

    def of(self, vcpu_hours: float, gb_hours: float, storage_gb_hours: float) -> float:
        return (
            vcpu_hours * (self.vcpu + self.os_vcpu)
            + gb_hours * self.gb
            + storage_gb_hours * self.storage
        )


@dataclass(frozen=True)
class Prices:
    """Rates by (region, capacity, architecture, OS family); `capacity` is `FARGATE` or
    `FARGATE_SPOT`, the architecture `x86_64` or `arm64`, the OS `linux` or
    `windows`."""

    date: str
    fargate: dict[tuple[str, str, str, str], Rate] = field(default_factory=dict)
    #: USD per hour of an EC2 instance, by (region, instance type): none shipped.
    ec2: dict[tuple[str, str], float] = field(default_factory=dict)

    def fargate_rate(self, region: str, capacity: str, arch: str, os: str) -> Rate | None:
        return self.fargate.get((region, capacity, arch, os))


PRICES = Prices(
    PRICE_DATE,
    {
        ("us-east-1", "FARGATE", "x86_64", "linux"): Rate(0.04048, 0.004445),
        ("us-east-1", "FARGATE", "arm64", "linux"): Rate(0.03238, 0.00356),
        # The vCPU rate plus the Windows licence fee ($0.046 per vCPU-hour), as billed.
        ("us-east-1", "FARGATE", "x86_64", "windows"): Rate(0.09148, 0.01005, os_vcpu=0.046),
    },
)


def os_family(platform_family: str | None) -> str:
    """`windows` for a Windows platform family (`WINDOWS_SERVER_2019_CORE`, ...), else
    `linux`."""
    return "windows" if platform_family and "windows" in platform_family.lower() else "linux"


def architecture(value: str | None) -> str:
    """`arm64` or `x86_64` (ECS writes `ecs.cpu-architecture` as either; absent: x86)."""
    return "arm64" if value and value.lower() in ("arm64", "aarch64") else "x86_64"


def load_prices(path: Path) -> Prices:
    """A price file: `{"date": "YYYY-MM-DD", "fargate": [{"region": …, "capacity":
    "FARGATE" | "FARGATE_SPOT", "architecture": "x86_64" | "arm64", "os": "linux" |
    "windows", "vcpu": …, "gb": …, "storage": …, "os_vcpu": …}]}`; its rates replace or
    add to the shipped ones."""
    try:
        body: Any = json.loads(path.read_text())
        rates = dict(PRICES.fargate)
        for entry in body.get("fargate", []):
            key = (
                str(entry["region"]),
                str(entry.get("capacity", "FARGATE")),
                architecture(entry.get("architecture")),
                os_family(entry.get("os")),
            )
            rates[key] = Rate(
                float(entry["vcpu"]),
                float(entry["gb"]),
                float(entry.get("storage", 0.000111)),
                float(entry.get("os_vcpu", 0.0)),
            )
        instances = {
            (str(entry["region"]), str(entry["instance_type"])): float(entry["usd_per_hour"])
            for entry in body.get("ec2", [])
        }
        return Prices(str(body.get("date", PRICE_DATE)), rates, instances)
    except OSError as exc:
        raise ConfigError(f"--prices {path}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"--prices {path}: not a price file ({type(exc).__name__}: {exc})"
        ) from exc


def _ts(expression: str) -> str:
    return f"CAST(from_iso8601_timestamp({expression}) AS timestamp)"


#: One row per task (its latest version): what its bill needs. The `task_usage` view.
USAGE_SQL = f"""
WITH latest AS (
  SELECT *, row_number() OVER (PARTITION BY resource_arn ORDER BY version DESC) AS rn
  FROM task_state_change
)
SELECT resource_arn AS task_arn, cluster_arn, "group",
       regexp_extract(task_definition_arn, 'task-definition/([^:]+)', 1) AS family,
       nullif(regexp_extract(detail, '"startedBy"\\s*:\\s*"(ecs-svc/[0-9]+)"', 1), '')
         AS deployment,
       launch_type, container_instance_arn,
       json_extract_scalar(detail, '$.capacityProviderName') AS capacity_provider,
       nullif(regexp_extract(
         detail, '"ecs.cpu-architecture"\\s*,\\s*"value"\\s*:\\s*"([^"]+)"', 1), '')
         AS cpu_architecture,
       json_extract_scalar(detail, '$.platformFamily') AS platform_family,
       region,
       try_cast(cpu AS double) / 1024 AS vcpu,
       try_cast(memory AS double) / 1024 AS gb,
       coalesce(try_cast(json_extract_scalar(detail, '$.ephemeralStorage.sizeInGiB')
         AS double), {INCLUDED_STORAGE_GB}) AS storage_gb,
       {_ts("json_extract_scalar(detail, '$.pullStartedAt')")} AS billing_start,
       coalesce(stopped_at,
         {_ts("json_extract_scalar(detail, '$.executionStoppedAt')")}) AS billing_end
FROM latest
WHERE rn = 1
"""  # noqa: S608 - constants only, no input


#: The product AWS's Price List (`pricing:GetProducts`, service `AmazonEC2`) prices an
#: ECS container instance as: Linux, shared tenancy, no pre-installed software, capacity
#: in use (not reserved), on demand.
PRICE_LIST_FILTERS: dict[str, str] = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
    "licenseModel": "No License required",
}


def price_list_filters(region: str, instance_type: str) -> list[dict[str, str]]:
    """`GetProducts` filters for one instance type in one region."""
    fields = {"regionCode": region, "instanceType": instance_type, **PRICE_LIST_FILTERS}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in fields.items()]


def on_demand_hourly(product: str) -> float | None:
    """The on-demand USD per hour of one Price List product (a `GetProducts` entry, JSON
    text): its `terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD` in `Hrs`. None when
    it has none, or a value that is not a positive number."""
    try:
        body = json.loads(product)
        terms = body["terms"]["OnDemand"]
        for term in terms.values():
            for dimension in term["priceDimensions"].values():
                if dimension.get("unit") != "Hrs":
                    continue
                usd = float(dimension["pricePerUnit"]["USD"])
                if usd > 0 and usd < float("inf"):
                    return usd
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


def instance_share(
    vcpu_hours: float, gb_hours: float, instance_vcpu: float, instance_gb: float
) -> float:
    """Instance-hours a task's reservations amount to: the mean of its vCPU and memory
    shares of the instance (what split cost allocation weighs), over the hours held."""
    return (vcpu_hours / instance_vcpu + gb_hours / instance_gb) / 2
