"""The bill meter's rules against items computed by hand (DynamoDB's documented sizes)."""

from __future__ import annotations

import base64
import json

from benchmarks.meter import (
    IndexDef,
    Meter,
    TableDef,
    index_write_units,
    item_size,
    read_units,
    write_units,
)


def test_item_size_by_hand() -> None:
    item = {
        "taskArn": {"S": "arn:x"},  # 7 + 5
        "version": {"N": "120"},  # 7 + (2 digits "12" -> (2+1)//2 + 1 = 2)
        "cpu": {"N": "-0.0050"},  # 3 + ("5" -> 1 + 1 = 2)
        "ok": {"BOOL": True},  # 2 + 1
        "gone": {"NULL": True},  # 4 + 1
        "blob": {"B": base64.b64encode(b"\x00" * 10).decode()},  # 4 + 10
        "tags": {"L": [{"S": "ab"}, {"N": "7"}]},  # 4 + 3 + (1 + 2) + (1 + 2)
        "m": {"M": {"k": {"S": "v"}}},  # 1 + 3 + (1 + 1 + 1)
    }
    assert item_size(item) == 12 + 9 + 5 + 3 + 5 + 14 + 13 + 7


def test_a_kilobyte_boundary_costs_a_whole_unit() -> None:
    def sized(total: int) -> dict[str, dict[str, str]]:
        return {"k": {"S": "x"}, "pad": {"S": "y" * (total - 2 - 3)}}

    assert item_size(sized(1024)) == 1024 and write_units(1024) == 1
    assert item_size(sized(1025)) == 1025 and write_units(1025) == 2
    assert read_units(4096, consistent=True) == 1 and read_units(4097, consistent=False) == 1.0
    assert read_units(10, consistent=False) == 0.5


def _task(status: str, version: int) -> dict[str, dict[str, str]]:
    return {
        "taskArn": {"S": "arn:t"},
        "version": {"N": str(version)},
        "lastStatus": {"S": status},
        "_cluster": {"S": "arn:c#1"},
        "_status": {"S": f"{status}#arn:t"},
        "_phase": {"S": "live#service:web"},
    }


def test_a_status_change_costs_the_old_layout_a_delete_and_a_put_and_the_new_none() -> None:
    keys = ("taskArn",)
    old_layout = IndexDef("cluster-status", ("_cluster", "_status"), "INCLUDE", ("version",))
    new_layout = IndexDef("cluster-phase", ("_cluster", "_phase"), "KEYS_ONLY")
    pending, running = _task("PENDING", 2), _task("RUNNING", 3)
    # entry = keys + table key + projected + 100 bytes: well under 1 KB, so 1 unit each.
    assert index_write_units(old_layout, keys, pending, running) == 2
    assert index_write_units(new_layout, keys, pending, running) == 0
    assert index_write_units(new_layout, keys, None, pending) == 1  # enters the index
    # Same keys, a projected attribute changed: one put.
    same_status = {**pending, "version": {"N": "9"}}
    assert index_write_units(old_layout, keys, pending, same_status) == 1
    ended = {**running, "_phase": {"S": "ended#service:web"}}
    assert index_write_units(new_layout, keys, running, ended) == 2
    assert index_write_units(new_layout, keys, running, {"taskArn": {"S": "arn:t"}}) == 1


def test_the_meter_reads_puts_failures_and_reads_off_the_wire() -> None:
    table = TableDef(
        ("taskArn",), (IndexDef("cluster-phase", ("_cluster", "_phase"), "KEYS_ONLY"),)
    )
    meter = Meter({"T": table})
    big = {**_task("RUNNING", 3), "pad": {"S": "z" * 1100}}  # crosses 1 KB: 2 units

    def put(item: dict[str, object], status: int = 200, reply: object = None) -> None:
        request = json.dumps({"TableName": "T", "Item": item}).encode()
        meter.observe("PutItem", request, status, json.dumps(reply or {}).encode())

    put(_task("PENDING", 2))
    assert (meter.bill.item_wru, meter.bill.index_wru) == (1, 1)
    put(big)  # replaces a 1-unit item with a 2-unit one; index keys unchanged
    assert (meter.bill.item_wru, meter.bill.index_wru) == (3, 1)
    failure = {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}
    put(_task("PENDING", 2), 400, failure)  # costs the larger: the stored 2-unit item
    assert meter.bill.failed_wru == 2 and meter.bill.failed_writes == 1
    put(_task("RUNNING", 4), 500, {"__type": "InternalFailure"})  # not applied: not billed
    assert meter.bill.wru == 3 + 1 + 2 and meter.bill.writes == 2
    # A projected BatchGetItem still pays for the whole stored item.
    request = {"RequestItems": {"T": {"Keys": [{"taskArn": {"S": "arn:t"}}]}}}
    reply = {"Responses": {"T": [{"taskArn": {"S": "arn:t"}}]}}
    meter.observe("BatchGetItem", json.dumps(request).encode(), 200, json.dumps(reply).encode())
    assert meter.bill.rru == 0.5
    assert meter.reset().requests["PutItem"] == 4 and meter.bill.wru == 0
