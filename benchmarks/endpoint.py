"""A local AWS endpoint in its own process for benchmarks: moto's server behind a proxy that
adds a fixed latency per request and counts requests per service and operation.

    python benchmarks/endpoint.py --delay-ms 2     # prints the URL, serves until killed
    GET <control>/  returns the counts as JSON; GET <control>/reset also clears them

With `--meter-dynamodb URL` it also serves a metering proxy in front of that DynamoDB
endpoint (dynalite) and prints its URL third: GET <control>/bill returns the bill
(`benchmarks.meter`) and starts a new one; GET <control>/tables reloads the tables' index
definitions (call it after creating tables).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3

from benchmarks.meter import Meter, TableDef
from stream_processor.demo.run import local_aws
from tests import moto_fidelity
from tests.fault_proxy import FaultPolicy, FaultProxy


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=float, default=2.0)
    parser.add_argument("--meter-dynamodb", metavar="URL", default=None)
    args = parser.parse_args()
    policy = FaultPolicy(delay_s=args.delay_ms / 1000)
    meter = Meter({})

    def bill() -> dict[str, object]:
        done = meter.reset()
        return {**asdict(done), "requests": dict(done.requests), "wru": done.wru}

    def tables() -> dict[str, object]:
        client = boto3.client("dynamodb", endpoint_url=args.meter_dynamodb)
        for name in client.list_tables()["TableNames"]:
            described = client.describe_table(TableName=name)["Table"]
            meter.tables[name] = TableDef.from_description(described)  # type: ignore[arg-type]
        return {"tables": sorted(meter.tables)}

    class Counts(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/bill":
                body = json.dumps(bill()).encode()
            elif self.path == "/tables":
                body = json.dumps(tables()).encode()
            else:
                body = json.dumps(dict(policy.forwarded)).encode()
            if self.path == "/reset":
                policy.forwarded.clear()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    control = ThreadingHTTPServer(("127.0.0.1", 0), Counts)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    moto_fidelity.apply()  # atomic, O(items) DynamoDB transactions (see the module)
    with contextlib.ExitStack() as stack:
        moto_url = stack.enter_context(local_aws())
        print(stack.enter_context(FaultProxy(moto_url, policy)), flush=True)
        print(f"http://127.0.0.1:{control.server_address[1]}", flush=True)
        if args.meter_dynamodb:
            metering = FaultPolicy(
                observe=lambda _s, op, req, st, ans: meter.observe(op, req, st, ans)
            )
            print(stack.enter_context(FaultProxy(args.meter_dynamodb, metering)), flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
