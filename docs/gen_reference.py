"""Render the reference pages that must not drift from the code: every command and option
(from the argument parsers), every setting (from `Settings`, `ENV_NAMES` and
`DESCRIPTIONS`), every metric the code publishes and every alarm the stacks create (from
`ingest.metrics.CATALOGUE` and the templates).

    python docs/gen_reference.py          # write docs/reference/{commands,settings,metrics}.md
    python docs/gen_reference.py --check  # exit 1 when a page differs from the code

`make docs` writes them before building; tests/test_docs.py fails when a committed page
and the code disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream_processor.cli import parser as cli_parser  # noqa: E402
from stream_processor.config import DESCRIPTIONS, ENV_NAMES, OTHER_VARIABLES, Settings  # noqa: E402
from stream_processor.ingest.metrics import CATALOGUE, NAMESPACE, SERVICE  # noqa: E402

REFERENCE = ROOT / "docs" / "reference"
NOTE = "Generated from the code by `docs/gen_reference.py` (`make docs`): do not edit by hand."


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _subcommands(top: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (helps.get(name, ""), p) for name, p in action.choices.items()}
    return {}


def _option_rows(command: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in command._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            name = ", ".join(f"`{o}`" for o in action.option_strings)
        else:
            name = f"`{action.metavar or action.dest}`"
        if action.nargs == 0:
            value = ""
        elif action.choices is not None:
            value = "|".join(str(c) for c in action.choices)
        else:
            value = str(action.metavar or action.dest.upper())
        default = action.default
        if default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0:
            shown = ""
        else:
            shown = f"`{default}`"
        text = (action.help or "") % {"default": action.default, "prog": command.prog}
        if action.required:
            text = f"(required) {text}".strip()
        if isinstance(action, argparse._AppendAction):
            text = f"{text} (repeatable)".strip() if "repeatable" not in text else text
        rows.append([name, f"`{value}`" if value else "", shown, text])
    return rows


def commands_page() -> str:
    top = cli_parser()
    lines = [
        "# Commands",
        "",
        NOTE,
        "",
        "`stream-processor [-v] COMMAND [OPTIONS]`: `-v` logs every batch and shows a "
        "traceback on a failure. Exit statuses: [When a command cannot run](errors.md).",
        "",
    ]
    for name, (summary, command) in _subcommands(top).items():
        lines += [f"## `{name}`", "", summary[:1].upper() + summary[1:] + ".", ""]
        rows = _option_rows(command)
        if rows:
            lines += _table(["option", "value", "default", "meaning"], rows)
        else:
            lines.append("No options.")
        lines.append("")
    return "\n".join(lines)


def settings_page() -> str:
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    rows = []
    for field, variable in ENV_NAMES.items():
        default = defaults[field]
        shown = (
            "—"
            if default in ("", None)
            else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        )
        if field == "history_bucket":
            shown = "— (required)"
        rows.append([f"`{variable}`", shown, DESCRIPTIONS[field]])
    rows += [[f"`{name}`", f"`{default}`", meaning] for name, default, meaning in OTHER_VARIABLES]
    lines = [
        "# Settings",
        "",
        NOTE,
        "",
        "Read once at the entry point into a frozen `Settings` object; library code never",
        "reads the environment. boto3's own variables (`AWS_ENDPOINT_URL` and",
        "`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_DEFAULT_REGION` (Lambda sets it), the credential",
        "chain) work as usual. A value of the wrong type fails at the entry point with the",
        "variable's name.",
        "",
        *_table(["variable", "default", "meaning"], rows),
        "",
    ]
    return "\n".join(lines)


def _alarms(path: Path) -> list[tuple[str, dict[str, Any]]]:
    resources = yaml.safe_load(path.read_text())["Resources"]
    return [
        (name, r["Properties"])
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    ]


def _metric_of(properties: dict[str, Any]) -> str:
    if "MetricName" in properties:
        return f"`{properties['Namespace']}` `{properties['MetricName']}`"
    expressions = [m.get("Expression", "") for m in properties.get("Metrics", [])]
    return "Metrics Insights: `" + "; ".join(e for e in expressions if e) + "`"


_OPERATORS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
}


def metrics_page() -> str:
    rows = [
        [f"`{name}`", source, f"`{dims}`" if dims else "", meaning]
        for name, (source, dims, meaning) in CATALOGUE.items()
    ]
    lines = [
        "# Metrics and alarms",
        "",
        NOTE,
        "",
        "## Metrics",
        "",
        f"Namespace `{NAMESPACE}`, dimension `service={SERVICE}` on every one, in CloudWatch",
        "Embedded Metric Format through the functions' logs (no `cloudwatch:PutMetricData`",
        "needed; `consume --emf` prints the same for a log shipper). The extra dimensions",
        "are published beside the service-only series.",
        "",
        *_table(["metric", "published by", "extra dimensions", "what it counts"], rows),
        "",
        "## Alarms",
        "",
        "Each alarm has its entry in the [runbook](../operations/runbook.md): what it means,",
        "what to look at, which command answers it.",
        "",
    ]
    for stack in ("template.yaml", "member.yaml"):
        alarms = []
        for name, p in _alarms(ROOT / "infra" / stack):
            condition = f"{_OPERATORS[p['ComparisonOperator']]} {p['Threshold']:g}"
            period = p.get("Period") or next(
                (m["Period"] for m in p.get("Metrics", []) if "Period" in m), ""
            )
            window = f"{period} s x {p['EvaluationPeriods']}" if period else ""
            alarms.append(
                [
                    f"[`{name}`](../operations/runbook.md#{name.lower()})",
                    _metric_of(p),
                    condition,
                    window,
                    " ".join(str(p.get("AlarmDescription", "")).split()),
                ]
            )
        where = "the stream's account" if stack == "template.yaml" else "each member account"
        lines += [f"### `infra/{stack}` ({where})", ""]
        lines += _table(["alarm", "metric", "fires when", "period", "meaning"], alarms)
        lines.append("")
    return "\n".join(lines)


PAGES = {"commands.md": commands_page, "settings.md": settings_page, "metrics.md": metrics_page}


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for name, render in PAGES.items():
        path = REFERENCE / name
        text = render()
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale reference pages (run `make docs`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
