"""The `stream-processor` command line: a thin shell of argument parsing over the library.

One module per command group: `demo`, `ingest` (setup, consume, reconcile), `state` (tasks,
instances, deployments, get: the current state), `oncall` (timeline, stuck) and
`analytics` (query, state, cost, failures, compact, rebuild-state, report, athena-ddl: the
history).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence

from stream_processor.cli import analytics, demo, ingest, oncall, state
from stream_processor.errors import StreamProcessorError


def parser() -> argparse.ArgumentParser:
    """The whole command line: every group's subcommands under one program."""
    top = argparse.ArgumentParser(
        prog="stream-processor",
        description="Current state and full history of an ECS fleet from its event stream.",
    )
    top.add_argument("-v", "--verbose", action="store_true", help="log every batch")
    sub = top.add_subparsers(dest="command", required=True)
    demo.add_commands(sub)
    ingest.add_commands(sub)
    state.add_commands(sub)
    oncall.add_commands(sub)
    analytics.add_commands(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build settings from the environment, run the command."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.command == "consume":
        # Its progress and lease log lines, not every library's INFO.
        logging.getLogger("stream_processor").setLevel(logging.INFO)
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as Unix tools do, and keep
        # the interpreter's final flush of stdout from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except Exception as exc:  # one line per failure; the traceback only with -v
        return _failed(exc, verbose=args.verbose)
    return code


def _failed(exc: Exception, *, verbose: bool) -> int:
    """Say what went wrong in one line on stderr, and exit with its class's status: a
    setup mistake (`adapters.botocore_errors.explain`: 3-9), another error of ours (2),
    anything else (1, a bug: `-v` shows where)."""
    from stream_processor.adapters.botocore_errors import explain
    from stream_processor.core.tables import printable

    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    mistake = explain(exc)
    if mistake is not None:
        print(f"stream-processor: {printable(mistake.line)}", file=sys.stderr)
        return mistake.status
    if isinstance(exc, StreamProcessorError):
        print(f"stream-processor: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    hint = "" if verbose else " (run with -v for the traceback)"
    said = printable(f"{type(exc).__name__}: {exc}")
    print(f"stream-processor: internal error: {said}{hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
