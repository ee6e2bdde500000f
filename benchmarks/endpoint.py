"""A local AWS endpoint in its own process for benchmarks: moto's server behind a proxy that
adds a fixed latency per request and counts requests per service and operation.

    python benchmarks/endpoint.py --delay-ms 2     # prints the URL, serves until killed
    GET <url>/__counts  (on the control port printed second) returns the counts as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream_processor.demo.run import local_aws
from tests import moto_fidelity
from tests.fault_proxy import FaultPolicy, FaultProxy


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=float, default=2.0)
    args = parser.parse_args()
    policy = FaultPolicy(delay_s=args.delay_ms / 1000)

    class Counts(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
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
    with local_aws() as moto_url, FaultProxy(moto_url, policy) as url:
        print(url, flush=True)
        print(f"http://127.0.0.1:{control.server_address[1]}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
