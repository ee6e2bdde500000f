"""Deploy or tear down the stack with boto3 (real credentials; never run in CI).

    python infra/deploy.py deploy --code-bucket BUCKET [--stack stream-processor] [-p Key=Value ...]
    python infra/deploy.py teardown [--stack stream-processor]

`deploy` uploads dist/stream-processor-lambda-arm64.zip (from `make package`) to the code
bucket under a key that contains its SHA-256, so a new build always updates the function,
then creates or updates the stack and prints its outputs. `teardown` deletes the stack; the
state tables and the history bucket are retained on purpose (DeletionPolicy: Retain), and
the command prints how to delete them too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import boto3
from botocore.exceptions import ClientError, WaiterError

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "template.yaml"
ARTIFACT = ROOT / "dist" / "stream-processor-lambda-arm64.zip"


def deploy(stack: str, code_bucket: str, overrides: list[str]) -> int:
    if not ARTIFACT.exists():
        print(f"{ARTIFACT} is missing: run `make package` first", file=sys.stderr)
        return 2
    digest = (ARTIFACT.parent / (ARTIFACT.name + ".sha256")).read_text().strip()
    key = f"stream-processor/{digest}/{ARTIFACT.name}"
    print(f"uploading {ARTIFACT.name} to s3://{code_bucket}/{key}")
    boto3.client("s3").upload_file(str(ARTIFACT), code_bucket, key)
    parameters = [
        {"ParameterKey": "CodeBucket", "ParameterValue": code_bucket},
        {"ParameterKey": "CodeKey", "ParameterValue": key},
    ]
    for item in overrides:
        name, _, value = item.partition("=")
        parameters.append({"ParameterKey": name, "ParameterValue": value})
    cfn = boto3.client("cloudformation")
    kwargs = {
        "StackName": stack,
        "TemplateBody": TEMPLATE.read_text(),
        "Parameters": parameters,
        "Capabilities": ["CAPABILITY_IAM"],
    }
    try:
        cfn.describe_stacks(StackName=stack)
        exists = True
    except ClientError:
        exists = False
    try:
        if exists:
            print(f"updating stack {stack} ...")
            cfn.update_stack(**kwargs)
            cfn.get_waiter("stack_update_complete").wait(StackName=stack)
        else:
            print(f"creating stack {stack} ...")
            cfn.create_stack(**kwargs)
            cfn.get_waiter("stack_create_complete").wait(StackName=stack)
    except ClientError as exc:
        if "No updates are to be performed" in str(exc):
            print("no changes")
        else:
            raise
    except WaiterError as exc:
        print(f"stack {stack} failed: {exc}", file=sys.stderr)
        return 1
    for output in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", []):
        print(f"{output['OutputKey']}: {output['OutputValue']}")
    return 0


def teardown(stack: str) -> int:
    cfn = boto3.client("cloudformation")
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    retained = [
        (r["ResourceType"], r.get("PhysicalResourceId", ""))
        for r in resources
        if r["ResourceType"] in ("AWS::DynamoDB::Table", "AWS::S3::Bucket")
    ]
    print(f"deleting stack {stack} ...")
    cfn.delete_stack(StackName=stack)
    cfn.get_waiter("stack_delete_complete").wait(StackName=stack)
    print("deleted. Kept on purpose (data), delete them yourself if you mean it:")
    for kind, name in retained:
        if kind == "AWS::S3::Bucket":
            print(
                f"  aws s3 rm s3://{name} --recursive && aws s3api delete-bucket --bucket {name}"
                "   (versioned: delete object versions too)"
            )
        else:
            print(f"  aws dynamodb delete-table --table-name {name}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("deploy")
    up.add_argument("--stack", default="stream-processor")
    up.add_argument("--code-bucket", required=True)
    up.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE")
    down = sub.add_parser("teardown")
    down.add_argument("--stack", default="stream-processor")
    args = parser.parse_args()
    if args.command == "deploy":
        return deploy(args.stack, args.code_bucket, args.parameter)
    return teardown(args.stack)


if __name__ == "__main__":
    sys.exit(main())
