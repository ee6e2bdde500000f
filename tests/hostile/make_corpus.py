"""Regenerate the hostile-input corpus: `python tests/hostile/make_corpus.py`.

Each file is one record's payload (`.bin`, `.kpl`: raw bytes; `.b64txt`: the Lambda
`kinesis.data` text itself); expected.json maps it to the quarantine reason it must get
(a prefix), "accepted", or "mixed:N" (a KPL aggregate of which N user records are good).
"""

import copy
import hashlib
import json
from pathlib import Path

import aws_kinesis_agg
from aws_kinesis_agg.aggregator import RecordAggregator

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
out = HERE
base = json.loads(
    (FIXTURES / "ecs-events/task_state_change__docs_fargate_running_2020.json").read_text()
)
base["detail"]["taskArn"] = "arn:aws:ecs:us-west-2:111122223333:task/hostile/base"
expected = {}


def event(**changes):
    e = copy.deepcopy(base)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        t = e
        for p in parents:
            t = t[p]
        if value is DEL:
            del t[leaf]
        else:
            t[leaf] = value
    return e


DEL = object()


def put(name, data, expect):
    (out / name).write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    expected[name] = expect


put("not_base64.b64txt", b"this is not base64!!", "invalid base64")
put("empty.bin", b"", "payload is not JSON")
put("whitespace_only.bin", b"   \n\t ", "payload is not JSON")
put("invalid_utf8.bin", b'\xff\xfe{"source": "aws.ecs"}', "payload is not JSON")
put("utf8_bom.bin", b"\xef\xbb\xbf" + json.dumps(base).encode(), "payload is not JSON")
put("truncated_json.bin", json.dumps(base).encode()[:200], "payload is not JSON")
put("trailing_garbage.bin", json.dumps(base).encode() + b"garbage", "payload is not JSON")
put("json_list.bin", b"[1, 2, 3]", "invalid event envelope: Expected `object`, got `array`")
put("json_number.bin", b"42", "invalid event envelope: Expected `object`, got `int`")
put("json_string.bin", b'"aws.ecs"', "invalid event envelope: Expected `object`, got `str`")
put("json_null.bin", b"null", "invalid event envelope: Expected `object`, got `null`")
put("json_true.bin", b"true", "invalid event envelope: Expected `object`, got `bool`")
put("nested_10000_deep.bin", b"[" * 10000 + b"]" * 10000, "invalid event envelope")
deep = json.dumps(event(detail__deep="X")).encode().replace(b'"X"', b"[" * 10000 + b"]" * 10000)
put("detail_nested_10000_deep.bin", deep, "payload is not JSON we accept: nested too deeply")
put("record_1mib_junk.bin", b"x" * (1024 * 1024), "payload is not JSON")
put(
    "record_1mib_valid_event.bin",
    event(detail__version=7, detail__padding="p" * (1024 * 1024 - 4000)),
    "accepted",
)
put(
    "duplicate_keys_last_wins.bin",
    json.dumps(base).encode().replace(b'"version": 4', b'"version": 3, "version": 4'),
    "accepted",
)
put("source_other.bin", event(source="aws.ec2"), "unsupported source 'aws.ec2'")
put(
    "source_missing.bin",
    event(source=DEL),
    "invalid event envelope: Object missing required field `source`",
)
put(
    "detail_type_unknown.bin",
    event(**{"detail-type": "ECS Mystery Event"}),
    # A well-formed aws.ecs event of a type ECS may add tomorrow: kept (other_event).
    "accepted",
)
put(
    "detail_type_missing.bin",
    event(**{"detail-type": DEL}),
    "invalid event envelope: Object missing required field `detail-type`",
)
put(
    "detail_missing.bin",
    event(detail=DEL),
    "invalid event envelope: Object missing required field `detail`",
)
put("detail_not_object.bin", event(detail=[1, 2]), "invalid detail: Expected `object`, got `array`")
put("id_missing.bin", event(id=DEL), "invalid event envelope: Object missing required field `id`")
put("id_empty.bin", event(id=""), "invalid event envelope: Expected `str` of length >= 1")
put(
    "time_missing.bin",
    event(time=DEL),
    "invalid event envelope: Object missing required field `time`",
)
put(
    "time_malformed.bin",
    event(time="23/01/2020 17:57"),
    "invalid event envelope: Invalid RFC3339 encoded datetime",
)
put(
    "time_far_future.bin",
    event(time="9999-01-01T00:00:00Z"),
    "event time must be a UTC instant in 1970..2099",
)
put(
    "time_before_epoch.bin",
    event(time="1969-07-20T20:17:00Z"),
    "event time must be a UTC instant in 1970..2099",
)
put(
    "account_wrong_type.bin",
    event(account=111122223333),
    "invalid event envelope: Expected `str`, got `int` - at `$.account`",
)
put(
    "task_arn_missing.bin",
    event(detail__taskArn=DEL),
    "invalid detail: Object missing required field `taskArn`",
)
put(
    "task_arn_number.bin",
    event(detail__taskArn=12345),
    "invalid detail: Expected `str`, got `int` - at `$.detail.taskArn`",
)
put(
    "task_arn_empty.bin", event(detail__taskArn=""), "invalid detail: Expected `str` of length >= 1"
)
put(
    "task_arn_too_long.bin",
    event(detail__taskArn="arn:aws:ecs:us-west-2:1:task/" + "x" * 5000),
    "resource key longer than 2048 bytes",
)
put(
    "version_missing.bin",
    event(detail__version=DEL),
    "invalid detail: Object missing required field `version`",
)
put(
    "version_negative.bin",
    event(detail__version=-1),
    "invalid detail: Expected `int` >= 0 - at `$.detail.version`",
)
put(
    "version_float.bin",
    event(detail__version=4.5),
    "invalid detail: Expected `int`, got `float` - at `$.detail.version`",
)
put(
    "version_string.bin",
    event(detail__version="4"),
    "invalid detail: Expected `int`, got `str` - at `$.detail.version`",
)
put(
    "version_bool.bin",
    event(detail__version=True),
    "invalid detail: Expected `int`, got `bool` - at `$.detail.version`",
)
put(
    "version_null.bin",
    event(detail__version=None),
    "invalid detail: Expected `int`, got `null` - at `$.detail.version`",
)
put(
    "version_over_2_63.bin",
    event(detail__version=2**63),
    "invalid detail: Expected `int` <= 9223372036854775807",
)
dep = json.loads((FIXTURES / "ecs-events/deployment_state_change__docs_completed.json").read_text())
put(
    "deployment_updated_at_malformed.bin",
    {**dep, "detail": {**dep["detail"], "updatedAt": "yesterday"}},
    "invalid detail: Invalid RFC3339 encoded datetime - at `$.detail.updatedAt`",
)
put(
    "deployment_id_missing.bin",
    {**dep, "detail": {k: v for k, v in dep["detail"].items() if k != "deploymentId"}},
    "invalid detail: Object missing required field `deploymentId`",
)
sa = json.loads(
    (FIXTURES / "ecs-events/service_action__docs_info_service_steady_state.json").read_text()
)
put(
    "service_action_without_resources.bin",
    {**sa, "resources": []},
    "service action without a resources[0] ARN",
)
put(
    "service_action_resource_not_string.bin",
    {**sa, "resources": [{"arn": "x"}]},
    "service action without a resources[0] ARN",
)
put(
    "nul_and_control_chars.bin",
    event(detail__group="a\u0000b\u0007c\u001bd", detail__stoppedReason="\u202etxet\u0000"),
    "accepted",
)
put(
    "unicode_everywhere.bin",
    event(detail__group="svc-日本語-🚀", detail__stoppedReason="Ünïcödé ✓"),
    "accepted",
)
put(
    "huge_number.bin",
    json.dumps(event(detail__version=5))
    .encode()
    .replace(
        b'"cpu": "256"',
        b'"cpu": "256", "huge": 1e400, "tiny": 1e-400, "long": '
        + b"123456789012345678901234567890123456789012345",
    ),
    "accepted",
)
put(
    "item_over_400kb.bin",
    event(
        detail__version=9,
        detail__containers=[{"name": f"c{i}", "reason": "r" * 1000} for i in range(450)],
    ),
    "accepted",
)
put(
    "wide_array_100k.bin",
    event(detail__version=6, detail__attachments=[{"id": str(i)} for i in range(20000)]),
    "accepted",
)


# Issue #27: a record must not stall its shard, and no spelling keeps a secret.
def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


for depth in (31, 32, 300):
    put(
        f"detail_field_{depth}_deep.bin",
        event(detail__version=20 + depth, detail__deep=nested(depth)),
        "accepted",
    )
put(
    "invalid_utf8_in_unread_field.bin",
    json.dumps(event(detail__version=11, detail__extra="X")).encode().replace(b'"X"', b'"\xff"'),
    "payload is not JSON: invalid UTF-8",
)
put(
    "lone_surrogate_in_unread_field.bin",
    json.dumps(event(detail__version=12, detail__extra="X")).encode().replace(b'"X"', b'"\\ud800"'),
    "payload is not JSON",
)
put(
    "cpu_1e400.bin",
    json.dumps(event(detail__version=13)).encode().replace(b'"cpu": "256"', b'"cpu": 1e400'),
    "accepted",
)
put(
    "cpu_integer_5000_digits.bin",
    json.dumps(event(detail__version=14))
    .encode()
    .replace(b'"cpu": "256"', b'"cpu": ' + b"7" * 5000),
    "accepted",
)
SECRET_OVERRIDES = {
    "containerOverrides": [
        {"name": "app", "environment": [{"name": "DB_PASSWORD", "value": "hunter2-hostile"}]}
    ]
}
put(
    "secret_escaped_key.bin",
    json.dumps(event(detail__version=15, detail__overrides=SECRET_OVERRIDES))
    .encode()
    .replace(b'"environment"', b'"\\u0065nvironment"'),
    "accepted",
)
put(
    "secret_duplicate_overrides.bin",
    json.dumps(event(detail__version=16))
    .encode()
    .replace(
        b'"overrides": {',
        b'"overrides": ' + json.dumps(SECRET_OVERRIDES).encode() + b', "overrides": {',
        1,
    ),
    "accepted",
)
put(
    "secret_with_invalid_version.bin",
    event(detail__version="17", detail__overrides=SECRET_OVERRIDES),
    "invalid detail: Expected `int`, got `str` - at `$.detail.version`",
)
put(
    "secret_truncated.bin",
    json.dumps(event(detail__version=18, detail__overrides=SECRET_OVERRIDES)).encode()[:-40],
    "payload is not JSON",
)


# KPL cases
def aggregate(payloads):
    agg = RecordAggregator()
    for i, p in enumerate(payloads):
        agg.add_user_record(f"pk-{i}", p)
    return agg.clear_and_get().get_contents()[2]


good = json.dumps(
    event(
        detail__taskArn="arn:aws:ecs:us-west-2:111122223333:task/hostile/kpl-good",
        detail__version=2,
    )
).encode()
bad_md5 = bytearray(aggregate([good]))
bad_md5[-1] ^= 0xFF
put("kpl_bad_md5.kpl", bytes(bad_md5), "KPL aggregate: MD5 digest mismatch")
body = aggregate([good])[4:-16][:-5]
put(
    "kpl_truncated_protobuf.kpl",
    aws_kinesis_agg.MAGIC + body + hashlib.md5(body).digest(),
    "KPL aggregate: invalid protobuf",
)
put("kpl_magic_only.kpl", aws_kinesis_agg.MAGIC + b"\x00\x01", "KPL aggregate: truncated")
put("kpl_mixed_good_and_bad.kpl", aggregate([good, b"not json", b"[]"]), "mixed:1")
(out / "expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")
print(len(expected), "cases")
