"""`demo --serve`: a fleet that lives at a human pace, answering every command from
another process, and stopping cleanly on SIGTERM (exit 0, nothing left behind)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stream_processor.core.failures import classify
from stream_processor.demo.playground import DESIRED, LiveFleet

ROOT = Path(__file__).parents[2]


def test_the_live_fleet_starts_runs_crash_loops_and_deploys() -> None:
    fleet = LiveFleet(seed=3)
    events = [e for second in range(0, 120) for e in fleet.tick(float(second))]
    tasks = [e for e in events if e["detail-type"] == "ECS Task State Change"]
    stopped = [e["detail"] for e in tasks if e["detail"]["lastStatus"] == "STOPPED"]
    worker = [d for d in stopped if d["group"] == "service:worker"]
    assert len(worker) >= 3  # a crash loop: started, crashed, replaced, again
    assert {classify(d["stopCode"], d["stoppedReason"], json.dumps(d)) for d in worker} == {
        "app-error"
    }
    running = {e["resources"][0] for e in tasks if e["detail"]["lastStatus"] == "RUNNING"}
    assert len(running) >= sum(DESIRED.values())
    pending_forever = [t for t in fleet.tasks.values() if t.stuck]
    assert len(pending_forever) == 2
    rollouts = [e["detail"]["eventName"] for e in events if e["detail-type"].startswith("ECS Dep")]
    assert rollouts[:2] == ["SERVICE_DEPLOYMENT_IN_PROGRESS", "SERVICE_DEPLOYMENT_COMPLETED"]
    versions: dict[str, list[int]] = {}
    for event in tasks:
        versions.setdefault(event["resources"][0], []).append(event["detail"]["version"])
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_processor", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_answers_another_terminal_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "stream_processor", "demo", "--serve", "--shards", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        exported: dict[str, str] = {}
        for line in server.stdout:
            if line.startswith("#"):
                break
            name, _, value = line.removeprefix("export ").strip().partition("=")
            exported[name] = value
        assert {"AWS_ENDPOINT_URL", "TASK_STATE_TABLE", "HISTORY_BUCKET"} <= set(exported)
        other = {**env, **exported}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = _cli(other, "tasks", "--cluster", "demo", "--format", "json")
            if listed.returncode == 0 and '"RUNNING"' in listed.stdout:
                break
            time.sleep(1)
        assert '"RUNNING"' in listed.stdout, listed.stderr
        # The two back-dated tasks walk PROVISIONING -> PENDING at the fleet's pace and rest
        # there: stuck from the start, PENDING once their second event is consumed.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stuck = _cli(other, "stuck", "--cluster", "demo")
            if stuck.returncode == 0 and stuck.stdout.count(" PENDING ") >= 2:
                break
            time.sleep(1)
        assert stuck.returncode == 0 and stuck.stdout.count(" PENDING ") >= 2, stuck.stdout
        leases = _cli(other, "leases", "--stream", exported["STREAM_NAME"])
        assert leases.returncode == 0 and "shardId-" in leases.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=30)
    assert status == 0
