"""`stream-processor demo --serve` (`make playground`): a local fleet that stays up.

The demo's embedded AWS (moto's server) and a fleet that lives in real time: tasks of
three services start, run and stop at a human pace; `worker`'s tasks crash a few
seconds after they start (a crash loop); `api` rolls out a deployment now and then; a few
tasks never get past PENDING (created long enough ago to count as stuck). The events go
to the stream as EventBridge would put them, and a consumer reads every shard, so
`tasks`, `get`, `stuck`, `timeline`, `leases`, `query`/`report` (on the live bucket),
`consume` in a second terminal (it shares the shards) and `FleetState` answer from
another terminal, on a fleet that changes while they watch.

The environment to use is printed on stdout, one `export NAME=value` per line; progress
goes to stderr. SIGINT or SIGTERM stops everything within seconds, exit status 0.
"""

from __future__ import annotations

import os
import random
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, TextIO

import msgspec

from stream_processor.adapters.clients import kinesis_client
from stream_processor.adapters.kinesis_stream import KinesisPublisher
from stream_processor.config import Settings
from stream_processor.core.events import TASK_STATUSES
from stream_processor.demo.run import local_aws
from stream_processor.demo.simulation import (
    ACCOUNT,
    ARN_PREFIX,
    EventBuilder,
    partition_key,
    task_detail,
)
from stream_processor.ingest.options import ConsumerOptions
from stream_processor.ingest.setup import ensure_all
from stream_processor.ingest.wiring import build_consumer
from stream_processor.progress import Progress

CLUSTER = f"{ARN_PREFIX}:cluster/demo"
STREAM = "ecs-events-demo"
BUCKET = "stream-processor-demo"
#: Seconds between two steps of a task's life, and between two new tasks of a service.
STEP_S = 3.0
#: How long a task of each service runs before it stops (worker: crash loop).
RUN_S = {"web": 90.0, "api": 60.0, "worker": 8.0}
#: Running tasks each service keeps (ECS's desired count, as the scheduler would).
DESIRED = {"web": 4, "api": 3, "worker": 2}
#: How it ends, per service: (stop code, stopped reason, exit code of the app).
ENDINGS: dict[str, tuple[str, str, int]] = {
    "web": ("ServiceSchedulerInitiated", "Scaling activity initiated by (deployment)", 0),
    "api": ("EssentialContainerExited", "Essential container in task exited", 0),
    "worker": ("EssentialContainerExited", "Essential container in task exited", 1),
}
#: Tasks that never get past PENDING, created this long ago (past `stuck`'s threshold).
STUCK_AGE = timedelta(minutes=20)
DEPLOY_EVERY_S = 120.0


@dataclass
class _Task:
    arn: str
    family: str
    created: datetime
    status_index: int = -1
    version: int = 0
    next_at: float = 0.0
    stuck: bool = False


class LiveFleet:
    """Decides what happens at each tick (monotonic seconds) and returns the events."""

    def __init__(self, seed: int = 7, now: Callable[[], datetime] | None = None) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - a simulation, not secrets
        self._now = now or (lambda: datetime.now(UTC))
        self._b = EventBuilder(self._rng, CLUSTER)
        self.tasks: dict[str, _Task] = {}
        self._next_deploy = 0.0
        self._stuck_made = False
        #: The rollout in progress: (deployment id, when it completes).
        self._rollout: tuple[str, float] | None = None

    def _new_task(self, family: str, clock: float, *, stuck: bool = False) -> None:
        arn = f"{ARN_PREFIX}:task/demo/{self._b.uid().replace('-', '')}"
        created = self._now() - (STUCK_AGE if stuck else timedelta())
        self.tasks[arn] = _Task(arn, family, created, next_at=clock, stuck=stuck)

    def tick(self, clock: float) -> list[dict[str, Any]]:
        """Every event due by `clock`: tasks stepping through their lives, new tasks to
        keep each service's desired count, a deployment of `api` now and then."""
        self._b.timed.clear()
        if not self._stuck_made:
            for _ in range(2):
                self._new_task("api", clock, stuck=True)
            self._stuck_made = True
        for family, desired in DESIRED.items():
            alive = [t for t in self.tasks.values() if t.family == family and not t.stuck]
            for _ in range(desired - len(alive)):
                self._new_task(family, clock + self._rng.uniform(0, STEP_S))
        self._finish_rollout(clock)
        if clock >= self._next_deploy:
            self._deploy(clock)
            self._next_deploy = clock + DEPLOY_EVERY_S
        for task in list(self.tasks.values()):
            while task.next_at <= clock:
                if not self._step(task, clock):
                    break
        events = [event for _, _, event in self._b.timed]
        self._b.timed.clear()
        return events

    def _step(self, task: _Task, clock: float) -> bool:
        """Move a task one status on; False when it rests (stuck, or gone)."""
        last = len(TASK_STATUSES) - 1
        if task.stuck and task.status_index >= TASK_STATUSES.index("PENDING"):
            return False
        task.status_index += 1
        task.version += 1
        status = TASK_STATUSES[task.status_index]
        now = self._now()
        detail = task_detail(
            self._b, task.arn, None, status, task.version, now, task.created, task.family
        )
        if status == "STOPPED" or TASK_STATUSES.index(status) >= TASK_STATUSES.index(
            "DEACTIVATING"
        ):
            code, reason, exit_code = ENDINGS[task.family]
            detail.update(stopCode=code, stoppedReason=reason)
            if status == "STOPPED":
                detail["containers"][0]["exitCode"] = exit_code
        self._b.emit(now, "ECS Task State Change", task.arn, detail)
        if task.status_index == last:
            del self.tasks[task.arn]
            return False
        running = status == "RUNNING"
        task.next_at = clock + (RUN_S[task.family] if running else STEP_S)
        return True

    def _deploy(self, clock: float) -> None:
        """A rollout of `api`: in progress now, completed half an interval later."""
        if self._rollout is not None:
            return
        deployment = f"ecs-svc/{self._rng.randrange(10**18, 10**19)}"
        self._deployment_event(deployment, "SERVICE_DEPLOYMENT_IN_PROGRESS")
        self._rollout = (deployment, clock + DEPLOY_EVERY_S / 2)

    def _finish_rollout(self, clock: float) -> None:
        if self._rollout is not None and clock >= self._rollout[1]:
            self._deployment_event(self._rollout[0], "SERVICE_DEPLOYMENT_COMPLETED")
            self._rollout = None

    def _deployment_event(self, deployment: str, name: str) -> None:
        now = self._now()
        self._b.emit(
            now,
            "ECS Deployment State Change",
            f"{ARN_PREFIX}:service/demo/api",
            {
                "eventType": "INFO",
                "eventName": name,
                "deploymentId": deployment,
                "updatedAt": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "reason": f"ECS deployment {deployment} {name.lower()}.",
            },
        )


def exports(settings: Settings, endpoint: str) -> list[str]:
    """The `export` lines another terminal needs to talk to the playground."""
    names = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_SESSION_TOKEN": os.environ["AWS_SESSION_TOKEN"],
        "AWS_DEFAULT_REGION": os.environ["AWS_DEFAULT_REGION"],
        "AWS_REGION": os.environ["AWS_REGION"],
        "TASK_STATE_TABLE": settings.task_state_table,
        "CONTAINER_INSTANCE_STATE_TABLE": settings.container_instance_state_table,
        "DEPLOYMENT_STATE_TABLE": settings.deployment_state_table,
        "DAEMON_DEPLOYMENT_STATE_TABLE": settings.daemon_deployment_state_table,
        "CHECKPOINT_TABLE": settings.checkpoint_table,
        "HISTORY_BUCKET": settings.history_bucket,
        "STREAM_NAME": STREAM,
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in names.items()]


def serve(
    *,
    shards: int = 2,
    seed: int = 7,
    out: TextIO = sys.stdout,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run the playground until SIGINT or SIGTERM (or `stop`); exit status 0."""
    progress = progress or Progress(sys.stderr)
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    # The embedded AWS answers as the simulated fleet's account, so a cluster name
    # (`tasks --cluster demo`) resolves to the fleet's ARNs from another terminal.
    account = os.environ.get("MOTO_ACCOUNT_ID")
    os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT
    try:
        with local_aws() as endpoint:
            settings = Settings.from_env(os.environ, history_bucket=BUCKET)
            ensure_all(settings, stream=STREAM, shards=shards, region="us-east-1")
            for line in exports(settings, endpoint):
                out.write(line + "\n")
            out.write(
                "# in another terminal: paste the lines above, then e.g.\n"
                "#   stream-processor tasks --cluster demo\n"
                "#   stream-processor stuck --cluster demo\n"
                f"#   stream-processor consume --stream {STREAM}\n"
            )
            out.flush()
            options = ConsumerOptions(
                stream=STREAM, max_records=100, max_wait_s=0.5, idle_poll_s=0.5
            )
            built = build_consumer(settings, options)
            consumer = threading.Thread(target=built.run, name="consumer", daemon=True)
            consumer.start()
            publisher = KinesisPublisher(kinesis_client(settings), STREAM)
            fleet = LiveFleet(seed)
            started = datetime.now(UTC)
            sent = 0
            clock = 0.0
            try:
                while not stop.wait(1.0):
                    clock = (datetime.now(UTC) - started).total_seconds()
                    events = fleet.tick(clock)
                    if events:
                        publisher.put([(partition_key(e), msgspec.json.encode(e)) for e in events])
                        sent += len(events)
                    progress.step(
                        f"playground at {endpoint}: {len(fleet.tasks)} tasks alive, "
                        f"{sent} events sent | {built.consumer.progress_line()}"
                    )
            finally:
                built.consumer.stop()
                consumer.join(timeout=30)
                progress.done(f"playground stopped after {sent} events")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if account is None:
            os.environ.pop("MOTO_ACCOUNT_ID", None)
        else:
            os.environ["MOTO_ACCOUNT_ID"] = account
    return 0
